"""The dashboard's settings: where it listens, who may use it, how often it samples the queues.

Anything but a loopback address (``127.0.0.1``, ``localhost``, ``::1``)
needs a ``token`` or a ``basic_auth`` setting: :meth:`DashboardSettings.check`
refuses to start without one (:class:`~jobs_dashboard.errors.InsecureBind`).

Example::

    settings = DashboardSettings(host="0.0.0.0", port=8080, token="a-long-random-token")
    settings.check()
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from jobs_dashboard.errors import DashboardSettingError, InsecureBind

#: The shortest token accepted: a guessable token protects nothing.
MIN_TOKEN_LENGTH = 16

#: Environment variables read by ``jobs dashboard`` (so a secret need not be on the command line).
ENV_TOKEN = "JOBS_DASHBOARD_TOKEN"
ENV_BASIC_AUTH = "JOBS_DASHBOARD_BASIC_AUTH"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard runs.

    ``token`` (at least :data:`MIN_TOKEN_LENGTH` characters) is typed once on
    the login page; ``basic_auth`` (``"user:password"``) makes the browser ask
    with its own dialog. ``sample_interval`` is the seconds between two reads
    of the queue counts for the throughput chart, ``samples`` how many are kept
    (the chart's width in time is their product).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    basic_auth: str | None = None
    sample_interval: float = 5.0
    samples: int = 120

    @property
    def local(self) -> bool:
        """Whether the dashboard listens on a loopback address only."""
        return is_loopback(self.host)

    @property
    def authenticated(self) -> bool:
        """Whether a token or basic-auth setting protects the pages."""
        return bool(self.token or self.basic_auth)

    @property
    def basic_credentials(self) -> tuple[str, str] | None:
        """``basic_auth`` split into user and password, or ``None``."""
        if not self.basic_auth:
            return None
        user, _, password = self.basic_auth.partition(":")
        return user, password

    def check(self) -> None:
        """Refuse settings that would expose the dashboard or cannot work.

        Raises :class:`~jobs_dashboard.errors.InsecureBind` for a non-loopback
        ``host`` without ``token`` or ``basic_auth``, and
        :class:`~jobs_dashboard.errors.DashboardSettingError` for a short
        token, a ``basic_auth`` without ``user:password``, a port or sampling
        setting out of range.
        """
        if not self.local and not self.authenticated:
            raise InsecureBind(
                f"the dashboard would listen on {self.host!r}, beyond this machine, with no authentication: "
                f"give --token (or ${ENV_TOKEN}) or --basic-auth USER:PASSWORD (or ${ENV_BASIC_AUTH}), "
                "or listen on 127.0.0.1"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise DashboardSettingError(
                f"the dashboard token must have at least {MIN_TOKEN_LENGTH} characters "
                f"(it has {len(self.token)}); e.g. python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        if self.basic_auth is not None:
            user, sep, password = self.basic_auth.partition(":")
            if not sep or not user or not password:
                raise DashboardSettingError("the basic-auth setting must be USER:PASSWORD, both non-empty")
        if not 0 <= self.port <= 65535:
            raise DashboardSettingError(f"the port must be between 0 and 65535, got {self.port}")
        if self.sample_interval <= 0:
            raise DashboardSettingError(
                f"the sample interval must be > 0 seconds, got {self.sample_interval}"
            )
        if self.samples < 2:
            raise DashboardSettingError(f"at least 2 samples must be kept, got {self.samples}")
