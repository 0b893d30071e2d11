"""Connection settings: URL forms, jobs options and the table prefix.

The database driver accepts the URL forms users already know from SQLAlchemy
and normalises them to the DBAPI drivers it supports::

    sqlite:///jobs.db            sqlite:///:memory:
    postgresql://user@host/db    postgres://...     postgresql+psycopg://...
    mysql://user@host/db         mariadb://...      mysql+pymysql://...

Query-string parameters that are jobs settings (``table_prefix``,
``poll_interval``, ...) are removed before SQLAlchemy sees the URL; any other
parameter (``sslmode=require``, ``charset=utf8mb4``) goes to the DBAPI driver.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

import sqlalchemy as sa
from jobs_core.errors import ConfigurationError, InvalidName, InvalidURL
from jobs_core.status import DEFAULT_RESULTS_TTL, results_ttl
from jobs_core.urls import is_secret_key, redact_text, redact_url, split_credentials, url_secrets
from sqlalchemy.engine import URL, make_url

Backend = Literal["sqlite", "postgresql", "mysql"]

#: Table prefixes: lower-case letters, digits and ``_``, starting with a letter, at most 30 characters.
PREFIX_PATTERN = re.compile(r"\A(?:[a-z][a-z0-9_]{0,29})?\Z")

DEFAULT_PREFIX = "jobs_"

_DIALECTS: dict[str, tuple[Backend, str]] = {
    "sqlite": ("sqlite", "sqlite+pysqlite"),
    "sqlite+pysqlite": ("sqlite", "sqlite+pysqlite"),
    "postgresql": ("postgresql", "postgresql+psycopg"),
    "postgres": ("postgresql", "postgresql+psycopg"),
    "postgresql+psycopg": ("postgresql", "postgresql+psycopg"),
    "postgres+psycopg": ("postgresql", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mysql+pymysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mysql+pymysql"),
    "mariadb+pymysql": ("mysql", "mysql+pymysql"),
}

#: Defaults of the jobs settings, by name.
DEFAULTS: dict[str, Any] = {
    "table_prefix": DEFAULT_PREFIX,
    "poll_interval": None,  # per backend, see default_poll_interval
    "pool_size": 5,
    "connect_timeout": 5.0,
    "max_message_bytes": None,  # per backend, see default_max_message_bytes
    "busy_timeout": 30.0,
    "synchronous": "normal",
    "create_schema": True,
    "notify": True,
    "results_ttl": DEFAULT_RESULTS_TTL,
    "pooler": "none",
}

#: Values of the ``pooler`` setting: what sits between the driver and PostgreSQL.
POOLERS = ("none", "session", "transaction")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a safe table prefix, else raise :class:`InvalidName`."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix):
        raise InvalidName(
            f"invalid table prefix {prefix!r}: use up to 30 lower-case letters, digits or '_', "
            "starting with a letter (for example 'jobs_' or 'myapp_jobs_')"
        )
    return prefix


def default_poll_interval(backend: Backend, notify: bool = True) -> float:
    """Seconds between polls when nothing wakes a waiting reserve.

    PostgreSQL is woken by LISTEN/NOTIFY and MySQL by interrupting the
    worker's waiting statement (see :mod:`jobs_database.wakeup`), so their
    poll is only a fallback; with ``notify`` off, MySQL polls every 50 ms.
    SQLite is woken by watching the database file, which costs no query.
    """
    if backend == "mysql" and not notify:
        return 0.05
    return 1.0


def default_max_message_bytes(backend: Backend) -> int:
    """The largest encoded message accepted: 1 MiB everywhere (well inside each backend's limits)."""
    return 1_048_576


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"setting {name!r} must be true or false, got {value!r}")


def _as_float(name: str, value: object, minimum: float = 0.0) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"setting {name!r} must be a number, got {value!r}") from exc
    if number < minimum or math.isnan(number):
        raise ConfigurationError(f"setting {name!r} must be at least {minimum}, got {value!r}")
    return number


def _as_int(name: str, value: object, minimum: int = 1) -> int:
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"setting {name!r} must be an integer, got {value!r}") from exc
    if number < minimum:
        raise ConfigurationError(f"setting {name!r} must be at least {minimum}, got {value!r}")
    return number


@dataclass(frozen=True)
class DatabaseSettings:
    """Everything the driver needs to connect, parsed and validated."""

    url: URL
    backend: Backend
    table_prefix: str
    poll_interval: float
    pool_size: int
    connect_timeout: float
    max_message_bytes: int
    busy_timeout: float
    synchronous: str
    create_schema: bool
    notify: bool
    #: Seconds finished jobs' status and results are kept (0: none).
    results_ttl: float = DEFAULT_RESULTS_TTL
    #: Strings to scrub from any text shown (the password and secret query values, as written and parsed).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: What sits between the driver and PostgreSQL (:data:`POOLERS`). Behind a pooler in
    #: ``transaction`` mode (PgBouncer's) no statement is prepared, no session setting made
    #: and no ``LISTEN`` held: each transaction may run on another server connection.
    pooler: str = "none"

    def __repr__(self) -> str:
        return f"DatabaseSettings({self.display!r}, prefix={self.table_prefix!r})"

    @property
    def in_memory(self) -> bool:
        """Whether this is a private in-memory SQLite database."""
        return self.backend == "sqlite" and (self.url.database or ":memory:") == ":memory:"

    @property
    def display(self) -> str:
        """The URL with its password and secret query values hidden (:func:`jobs_core.urls.redact_url`)."""
        return redact_url(self.url.render_as_string(hide_password=True))

    @property
    def location(self) -> str:
        """``host:port`` (or the SQLite file) for error messages."""
        if self.backend == "sqlite":
            return f"SQLite file {self.url.database or ':memory:'}"
        port = self.url.port or {"postgresql": 5432, "mysql": 3306}[self.backend]
        return f"{self.url.host or 'localhost'}:{port}"

    @classmethod
    def parse(cls, url: str | URL | None, options: Mapping[str, Any] | None = None) -> DatabaseSettings:
        """Parse a URL (or ``connection=`` in ``options``) and the jobs settings.

        Settings come from the URL's query string and from ``options``; the
        latter win. Raises :class:`~jobs_core.errors.InvalidURL` or
        :class:`~jobs_core.errors.ConfigurationError` naming the problem.
        """
        opts = dict(options or {})
        connection = opts.pop("connection", None)
        opts.pop("driver", None)
        if url is None:
            url = connection
        if url is None:
            raise ConfigurationError(
                "the database driver needs a connection URL, for example "
                "connection='sqlite:///jobs.db' or 'postgresql://user@host/db'"
            )
        raw = url if isinstance(url, str) else None
        try:
            parsed = _parse_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            shown = redact_url(url) if isinstance(url, str) else _display(url)
            detail = redact_text(str(exc), raw, _secrets(raw, url if not isinstance(url, str) else None))
            raise InvalidURL(f"invalid database URL {shown!r}: {detail}") from None
        dialect = parsed.drivername.lower()
        if dialect not in _DIALECTS:
            raise InvalidURL(
                f"unsupported database URL scheme {parsed.drivername!r} in "
                f"{_display(parsed)!r}: use sqlite://, "
                "postgresql:// (psycopg 3) or mysql:// / mariadb:// (PyMySQL)"
            )
        backend, drivername = _DIALECTS[dialect]
        query = dict(parsed.query)
        settings: dict[str, Any] = {}
        for key in DEFAULTS:
            if key in query:
                value = query.pop(key)
                settings[key] = value[-1] if isinstance(value, tuple) else value
        for key, value in opts.items():
            if key not in DEFAULTS:
                raise ConfigurationError(
                    f"unknown database driver setting {key!r}; known settings: {', '.join(sorted(DEFAULTS))}"
                )
            settings[key] = value
        merged = {**DEFAULTS, **settings}
        clean = parsed.set(drivername=drivername).set(query=query)
        if backend != "sqlite" and not clean.database:
            raise InvalidURL(
                f"database URL {_display(clean)!r} names no database; "
                "add it after the host, for example postgresql://user@host/mydb"
            )
        poll = merged["poll_interval"]
        notify = _as_bool("notify", merged["notify"])
        pooler = _pooler(backend, merged["pooler"])
        if pooler == "transaction":
            if "notify" in settings and notify:
                raise ConfigurationError(
                    "setting 'notify' cannot be true with pooler=transaction: LISTEN needs a session of its "
                    "own; leave notify out (workers then poll) or connect the workers without the pooler"
                )
            notify = False
        max_bytes = merged["max_message_bytes"]
        synchronous = str(merged["synchronous"]).lower()
        if synchronous not in ("off", "normal", "full", "extra"):
            raise ConfigurationError(
                f"setting 'synchronous' must be off, normal, full or extra, got {synchronous!r}"
            )
        return cls(
            url=clean,
            backend=backend,
            table_prefix=validate_prefix(merged["table_prefix"]),
            poll_interval=default_poll_interval(backend, notify)
            if poll is None
            else _as_float("poll_interval", poll, 0.001),
            pool_size=_as_int("pool_size", merged["pool_size"]),
            connect_timeout=_as_float("connect_timeout", merged["connect_timeout"], 0.1),
            max_message_bytes=default_max_message_bytes(backend)
            if max_bytes is None
            else _as_int("max_message_bytes", max_bytes, 256),
            busy_timeout=_as_float("busy_timeout", merged["busy_timeout"]),
            synchronous=synchronous,
            create_schema=_as_bool("create_schema", merged["create_schema"]),
            notify=notify,
            results_ttl=results_ttl(merged["results_ttl"]),
            secrets=_secrets(raw, parsed),
            pooler=pooler,
        )


def _pooler(backend: Backend, value: object) -> str:
    pooler = str(value).lower()
    if pooler not in POOLERS:
        raise ConfigurationError(f"setting 'pooler' must be none, session or transaction, got {value!r}")
    if pooler != "none" and backend != "postgresql":
        raise ConfigurationError(
            f"setting 'pooler' is for PostgreSQL (a PgBouncer in front of it), not {backend}"
        )
    return pooler


def _display(url: URL) -> str:
    return redact_url(url.render_as_string(hide_password=True))


def _parse_url(url: str | URL) -> URL:
    """``make_url``, also for a password with an unencoded ``@``.

    SQLAlchemy ends the password at its first ``@`` and reads the rest of it
    as the host, database and query. The password runs to the last ``@``
    before the host instead (:func:`jobs_core.urls.split_credentials`), so a
    database name holding an ``@`` in a URL with a password must be written
    ``%40``.
    """
    if not isinstance(url, str):
        return url
    credentials = split_credentials(url)
    if credentials is None or credentials.password is None:
        return make_url(url)
    scheme, _, location = credentials.url.partition("://")
    user = quote(unquote(credentials.user), safe="")
    password = quote(unquote(credentials.password), safe="")
    return make_url(f"{scheme}://{user}:{password}@{location}")


def _secrets(raw: str | None, parsed: URL | None) -> tuple[str, ...]:
    """What to scrub from error texts: the secrets of the URL as written and as parsed."""
    found = set(url_secrets(raw)) if raw is not None else set()
    if parsed is not None:
        if parsed.password:
            found.add(str(parsed.password))
        for key, value in parsed.query.items():
            if is_secret_key(key):
                found.update([value] if isinstance(value, str) else value)
    return tuple(sorted(found, key=len, reverse=True))
