"""The test project (tests/project) set up in this process, on SQLite or PostgreSQL.

``JOBS_DJANGO_TEST_DATABASE=postgresql`` runs the tests on PostgreSQL
(``JOBS_TEST_POSTGRESQL_URL``, else the local ``test`` database); the default
is a SQLite file in a temporary folder. Workers are real processes
(``python manage.py jobs_worker`` and ``jobs worker --plugin jobs_django.worker:setup``).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

PROJECT = pathlib.Path(__file__).parent / "project"
QUEUES = ("default", "emails", "special")


def pytest_configure(config: pytest.Config) -> None:
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    if os.environ.get("JOBS_DJANGO_TEST_DATABASE", "sqlite") == "sqlite":
        folder = tempfile.mkdtemp(prefix="jobs-django-")
        os.environ["JOBS_DJANGO_TEST_SQLITE"] = os.path.join(folder, "project.sqlite3")
    import django

    django.setup()


def pytest_report_header(config: pytest.Config) -> str:
    import django
    from django.conf import settings
    from jobs_django import compat

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"jobs-django: Django {django.get_version()}, {compat.FRAMEWORK}, database {engine}"


@pytest.fixture(scope="session")
def project() -> Iterator[pathlib.Path]:
    """The project, migrated (jobs tables included), its queues emptied."""
    from django.core.management import call_command
    from jobs_django import compat

    call_command("migrate", verbosity=0)
    backend = compat.task_backends()["default"]
    for queue in QUEUES:
        backend.app.purge(queue)
    yield PROJECT
    backend.close()


def run_worker(
    *args: str, command: str = "manage", until: str = "--stop-when-empty"
) -> subprocess.CompletedProcess[str]:
    """Run a worker process until no job is due (or ``until``); fail the test on a non-zero exit."""
    if command == "manage":
        argv = [sys.executable, "manage.py", "jobs_worker"]
    else:  # the jobs CLI itself, with the Django plugin
        argv = [sys.executable, "-m", "jobs_core", "worker", "--plugin", "jobs_django.worker:setup"]
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    done = subprocess.run(
        [*argv, *until.split(), "--progress", "0", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
