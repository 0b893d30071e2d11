"""Settings: the ``JOBS`` setting and the ``OPTIONS`` of a ``TASKS`` backend.

Both are dicts with the same keys; a backend's ``OPTIONS`` win over ``JOBS``::

    JOBS = {"URL": "postgresql+psycopg://app@db/app"}        # or nothing at all
    TASKS = {"default": {"BACKEND": "jobs_django.JobsBackend", "OPTIONS": {"MAX_RETRIES": 2}}}

``URL``
    The jobs backend (``sqlite:///...``, ``postgresql+psycopg://...``,
    ``kafka://...``). Without it, the URL of the Django database ``DATABASE``
    is used (SQLite, PostgreSQL and MySQL/MariaDB databases), so that jobs
    live beside the project's tables.
``DATABASE``
    The alias of the Django database that holds the jobs tables (``"default"``
    when ``URL`` is not given). Inside ``transaction.atomic()`` on that
    database, a task is stored in the same transaction as the caller's writes.
``TRANSACTIONAL``
    Whether to enqueue in the caller's transaction (``True`` when ``DATABASE``
    is set).
``DRIVER_OPTIONS``
    Further driver options (``{"table_prefix": "jobs_"}``).
``MAX_RETRIES``
    Retries of a task that raised (``0``: the task fails at once, as Django's
    own backends do).
``TIMEOUT``
    Seconds a task may run before it is stopped (``None``: no limit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jobs_core import options as job_options
from jobs_core.errors import ConfigurationError

from jobs_django.errors import DjangoConfigurationError

#: The keys of ``JOBS`` and of a backend's ``OPTIONS``.
KEYS = frozenset({"URL", "DATABASE", "TRANSACTIONAL", "DRIVER_OPTIONS", "MAX_RETRIES", "TIMEOUT"})


@dataclass(frozen=True)
class JobsSettings:
    """The checked settings of one backend (see the module docstring)."""

    url: str
    database: str | None = None
    transactional: bool = False
    driver_options: Mapping[str, Any] = field(default_factory=dict)
    max_retries: int = 0
    timeout: float | None = None


def jobs_setting() -> dict[str, Any]:
    """The ``JOBS`` setting (``{}`` when absent); a value that is not a dict raises."""
    from django.conf import settings

    value = getattr(settings, "JOBS", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DjangoConfigurationError(f"the JOBS setting must be a dict, got {type(value).__name__}")
    return dict(value)


def load(options: Mapping[str, Any] | None = None, where: str = "JOBS") -> JobsSettings:
    """The settings of ``JOBS`` overlaid with ``options`` (a backend's ``OPTIONS``).

    Raises :class:`~jobs_django.errors.DjangoConfigurationError` naming
    ``where`` and the key for an unknown key or a bad value.
    """
    merged = {**jobs_setting(), **(options or {})}
    unknown = sorted(str(key) for key in merged if key not in KEYS)
    if unknown:
        raise DjangoConfigurationError(
            f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(KEYS))}"
        )
    url = merged.get("URL")
    database = merged.get("DATABASE")
    if database is not None and (not isinstance(database, str) or not database):
        raise DjangoConfigurationError(f"{where}: DATABASE must be a database alias, got {database!r}")
    if url is None:
        database = database or "default"
        url = database_url(database, where)
    elif not isinstance(url, str) or not url:
        raise DjangoConfigurationError(f"{where}: URL must be a jobs backend URL, got {url!r}")
    transactional = merged.get("TRANSACTIONAL", database is not None)
    if not isinstance(transactional, bool):
        raise DjangoConfigurationError(f"{where}: TRANSACTIONAL must be True or False, got {transactional!r}")
    if transactional and database is None:
        raise DjangoConfigurationError(
            f"{where}: TRANSACTIONAL needs DATABASE, the alias of the Django database "
            "that holds the jobs tables"
        )
    driver_options = merged.get("DRIVER_OPTIONS") or {}
    if not isinstance(driver_options, Mapping):
        raise DjangoConfigurationError(
            f"{where}: DRIVER_OPTIONS must be a dict, got {type(driver_options).__name__}"
        )
    try:
        max_retries = job_options.retries(f"{where} MAX_RETRIES", merged.get("MAX_RETRIES", 0))
        timeout = job_options.timeout(f"{where} TIMEOUT", merged.get("TIMEOUT"))
    except ConfigurationError as exc:
        raise DjangoConfigurationError(str(exc)) from None
    return JobsSettings(
        url=url,
        database=database,
        transactional=transactional,
        driver_options=dict(driver_options),
        max_retries=max_retries,
        timeout=timeout,
    )


def database_url(alias: str, where: str = "JOBS") -> str:
    """The jobs URL of the Django database ``alias`` (SQLite, PostgreSQL, MySQL/MariaDB).

    A MySQL or MariaDB database gives a ``mysql+pymysql://`` URL (the jobs
    driver's, with ``jobs-database[mysql]``), on its host and port or its
    socket (``HOST`` starting with ``/``).

    Raises :class:`~jobs_django.errors.DjangoConfigurationError` for an
    unknown alias, an in-memory SQLite database (a worker process could not
    see it), a MySQL database configured by an option file
    (``read_default_file``) or another engine (give ``URL`` then).
    """
    from django.conf import settings

    databases = getattr(settings, "DATABASES", {}) or {}
    if alias not in databases:
        raise DjangoConfigurationError(
            f"{where}: DATABASE {alias!r} is not in DATABASES ({', '.join(sorted(databases)) or 'none'})"
        )
    db = databases[alias]
    engine = str(db.get("ENGINE", ""))
    name = str(db.get("NAME") or "")
    if engine == "django.db.backends.sqlite3":
        if not name or name == ":memory:" or "mode=memory" in name:
            raise DjangoConfigurationError(
                f"{where}: the database {alias!r} is an in-memory SQLite database, which a worker process "
                "cannot see; give a file NAME, or a URL"
            )
        return f"sqlite:///{os.path.abspath(name)}"
    if engine in ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"):
        return _server_url(_postgresql_scheme(), db)
    if engine in ("django.db.backends.mysql", "django.contrib.gis.db.backends.mysql"):
        options = db.get("OPTIONS") or {}
        if "read_default_file" in options:
            raise DjangoConfigurationError(
                f"{where}: the MySQL database {alias!r} is configured by an option file "
                "(OPTIONS['read_default_file']), which a jobs URL cannot name; give URL"
            )
        host = str(db.get("HOST") or "")
        if host.startswith("/"):  # a socket, as Django reads HOST
            return _server_url("mysql+pymysql", {**db, "HOST": ""}) + f"?unix_socket={quote(host)}"
        return _server_url("mysql+pymysql", db)
    raise DjangoConfigurationError(
        f"{where}: cannot derive a jobs URL from the {engine or 'unnamed'} database {alias!r}; "
        "give URL (SQLite, PostgreSQL and MySQL/MariaDB databases are derived)"
    )


def _postgresql_scheme() -> str:
    try:
        import psycopg  # noqa: F401

        return "postgresql+psycopg"
    except ImportError:
        return "postgresql+psycopg2"


def _server_url(scheme: str, db: Mapping[str, Any]) -> str:
    user = quote(str(db.get("USER") or ""), safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(db.get("HOST") or "")
    host = f"[{host}]" if ":" in host else host
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{credentials}{host}{port}/{quote(str(db.get('NAME') or ''), safe='')}"
