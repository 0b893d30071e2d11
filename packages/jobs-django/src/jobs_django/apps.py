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

#: The URL ``ready()`` configured ``Jobs`` with (none when it left ``Jobs`` alone).
_configured: list[str] = []


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
            _configured.append(settings.url)
        post_migrate.connect(create_jobs_tables, sender=self)


def create_jobs_tables(using: str = "default", **kwargs: Any) -> None:
    """After ``migrate`` on a database that holds jobs tables: create or upgrade them.

    The jobs backend's own schema step (``jobs db upgrade``) is run for each
    ``JobsBackend`` whose ``DATABASE`` is the migrated one, and for ``JOBS``.
    The ``Jobs`` facade follows the database when its URL changed since the
    app was ready (Django's test runner migrates a test database).
    """
    import os

    from jobs_core import Jobs, JobsApp
    from jobs_core.config import ENV_URL

    from jobs_django.worker import backend_settings, jobs_backends

    seen: set[str] = set()
    candidates = [conf.load(params.get("OPTIONS")) for params in jobs_backends().values()]
    if not candidates:
        candidates = [conf.load()] if conf.jobs_setting() else []
    for settings in candidates:
        if settings.database != using or settings.url in seen:
            continue
        seen.add(settings.url)
        with JobsApp(settings.url, load_plugins=False, **settings.driver_options) as app:
            upgrade = getattr(app.driver, "upgrade_schema", None)
            if upgrade is not None:
                upgrade()
    if seen and _configured and not os.environ.get(ENV_URL):
        facade = backend_settings()
        if Jobs.app().config.url == _configured[-1] != facade.url and facade.database == using:
            Jobs.configure(facade.url, **facade.driver_options)
            _configured.append(facade.url)
