"""The Django app: ``"jobs_django"`` in ``INSTALLED_APPS``.

It brings the ``jobs_worker`` management command, configures the ``Jobs``
facade from the settings (``JOBS``, else the ``OPTIONS`` of the ``TASKS``
backend that is a ``JobsBackend``; ``JOBS_URL`` wins over both), and creates
the jobs tables after ``migrate`` when they live in a Django database.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig

from jobs_django import conf


class JobsDjangoConfig(AppConfig):
    """The app of jobs-django."""

    name = "jobs_django"
    verbose_name = "Jobs"

    def ready(self) -> None:
        """Configure ``Jobs`` from the settings; create the jobs tables after ``migrate``."""
        import os

        from django.db.models.signals import post_migrate
        from jobs_core import Jobs
        from jobs_core.config import ENV_URL

        from jobs_django import worker

        if not os.environ.get(ENV_URL) and (conf.jobs_setting() or worker.jobs_backends()):
            settings = worker.backend_settings()
            Jobs.configure(settings.url, **settings.driver_options)
        post_migrate.connect(create_jobs_tables, sender=self)


def create_jobs_tables(using: str = "default", **kwargs: Any) -> None:
    """After ``migrate`` on a database that holds jobs tables: create or upgrade them.

    The jobs backend's own schema step (``jobs db upgrade``) is run for each
    ``JobsBackend`` whose ``DATABASE`` is the migrated one, and for ``JOBS``.
    """
    from jobs_django import conf
    from jobs_django.worker import jobs_backends

    seen: set[str] = set()
    candidates = [conf.load(params.get("OPTIONS")) for params in jobs_backends().values()]
    if not candidates:
        candidates = [conf.load()]
    for settings in candidates:
        if settings.database != using or settings.url in seen:
            continue
        seen.add(settings.url)
        from jobs_core import JobsApp

        with JobsApp(settings.url, load_plugins=False, **settings.driver_options) as app:
            upgrade = getattr(app.driver, "upgrade_schema", None)
            if upgrade is not None:
                upgrade()
