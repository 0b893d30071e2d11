"""Django's test runner, closing the jobs connections before the test databases are destroyed.

``TEST_RUNNER = "jobs_django.testing.DiscoverRunner"``: a jobs backend in the
test database (PostgreSQL) holds pooled connections to it, which would keep
Django from dropping it at the end of the run.
"""

from __future__ import annotations

from typing import Any

from django.test.runner import DiscoverRunner as DjangoDiscoverRunner


class DiscoverRunner(DjangoDiscoverRunner):
    """Django's ``DiscoverRunner`` that closes the jobs backends and ``Jobs`` before tearing down."""

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        """Close every jobs connection, then let Django drop the test databases."""
        close_jobs_connections()
        super().teardown_databases(old_config, **kwargs)


def close_jobs_connections() -> None:
    """Close the drivers of the ``TASKS`` backends that are ``JobsBackend`` and of ``Jobs``."""
    from jobs_core import Jobs

    from jobs_django import compat
    from jobs_django.worker import jobs_backends

    for alias in jobs_backends():
        compat.task_backends()[alias].close()
    Jobs.app().close()
