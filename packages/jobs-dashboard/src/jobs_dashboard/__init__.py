"""A web dashboard for jobs: queues, throughput, the failed store and schedules, on any driver.

``jobs dashboard --url URL`` serves it (see :mod:`jobs_dashboard.cli`);
:func:`create_app` builds the ASGI application for a server of your own.
Pages and buttons appear only where the driver declares the capability
they need (:mod:`jobs_dashboard.pages`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from jobs_dashboard.app import create_app
from jobs_dashboard.errors import DashboardError, DashboardSettingError, InsecureBind
from jobs_dashboard.settings import DashboardSettings

__all__ = [
    "DashboardError",
    "DashboardSettingError",
    "DashboardSettings",
    "InsecureBind",
    "__version__",
    "create_app",
]
