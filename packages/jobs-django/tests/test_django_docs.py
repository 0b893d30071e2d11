"""The Python examples of docs/guide/django.md run, in order, against the test project's backend.

They are Django's own task examples (the django-tasks README and Django's
Tasks documentation) with this backend: on Django 5.2 the page's
``django.tasks`` imports are read as ``django_tasks``, as the page says. The
tasks run in this process (``default_task_backend.app.work()``, as the page
shows for tests); worker processes run them in test_django_tasks.py.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

from jobs_django import compat
from jobs_django.backend import JobsBackend

PAGE = pathlib.Path(__file__).resolve().parents[3] / "docs" / "guide" / "django.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_django_guide_examples_run(project: pathlib.Path) -> None:
    blocks = FENCE.findall(PAGE.read_text())
    assert len(blocks) >= 6
    code = "\n\n".join(blocks)
    if compat.FRAMEWORK == "django_tasks":
        code = re.sub(r"\bdjango\.tasks\b", "django_tasks", code)
    module = types.ModuleType("django_guide_examples")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(PAGE), "exec"), module.__dict__)
        # The settings block is a valid backend configuration.
        backend = JobsBackend("guide", module.TASKS["default"])
        assert (backend.settings.max_retries, backend.settings.timeout) == (2, 300)
        assert backend.queues == {"default", "emails"}
    finally:
        del sys.modules[module.__name__]
        for queue in ("default", "emails"):
            compat.task_backends()["default"].app.purge(queue)


def test_the_package_readme_examples_run(project: pathlib.Path) -> None:
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    code = "\n\n".join(FENCE.findall(readme.read_text()))
    if compat.FRAMEWORK == "django_tasks":
        code = re.sub(r"\bdjango\.tasks\b", "django_tasks", code)
    module = types.ModuleType("django_readme_examples")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(readme), "exec"), module.__dict__)
        backend = JobsBackend("readme", module.TASKS["default"])
        assert backend.settings.database == "default" and backend.settings.transactional
        assert module.send_receipt.queue_name == "emails" and module.send_receipt.priority == 10
    finally:
        del sys.modules[module.__name__]
