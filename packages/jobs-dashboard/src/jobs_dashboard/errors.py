"""The errors of the dashboard: each a :class:`DashboardError` (a :class:`~jobs_core.errors.JobsError`)."""

from __future__ import annotations

from jobs_core.errors import ConfigurationError, JobsError


class DashboardError(JobsError):
    """Base class of the errors the dashboard raises."""


class DashboardSettingError(DashboardError, ConfigurationError):
    """A dashboard setting is not valid (``jobs dashboard`` exits with status 2)."""


class InsecureBind(DashboardSettingError):
    """The dashboard was asked to listen beyond this machine without a token or basic-auth setting."""
