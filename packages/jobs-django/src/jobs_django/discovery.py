"""Autodiscovery: the ``tasks.py`` and ``jobs.py`` modules of the installed apps.

A worker imports these modules (and no module named in a stored job), which
defines their Django ``@task`` functions and their jobs (``@job`` functions
and ``Job`` classes) in the worker, as Django's ``admin.py`` discovery does
for the admin.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The submodules of each installed app that are imported.
MODULE_NAMES = ("tasks", "jobs")


def autodiscover(names: tuple[str, ...] = MODULE_NAMES) -> list[ModuleType]:
    """Import the ``tasks`` and ``jobs`` submodules of every installed app; return them.

    An app without them is skipped; an error raised while importing one that
    exists is raised (as Django's own autodiscovery does), not hidden.
    """
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    modules = []
    for app_config in apps.get_app_configs():
        for name in names:
            if module_has_submodule(app_config.module, name):
                modules.append(importlib.import_module(f"{app_config.name}.{name}"))
    return modules
