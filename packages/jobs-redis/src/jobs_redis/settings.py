"""The Redis driver's URL and options.

``redis://[user:password@]host[:port][/db][?option=value&...]`` (``rediss://``
for TLS), ``redis+sentinel://[user:password@]host[:port][,host:port...][/db]?service=NAME``
and ``redis+cluster://[user:password@]host[:port][,host:port...]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from jobs_core.errors import ConfigurationError, InvalidURL
from jobs_core.status import DEFAULT_RESULTS_TTL, results_ttl
from jobs_core.urls import query_options, redact_url, split_credentials, url_scheme

#: Key prefixes: letters, digits, ``.``, ``_``, ``-`` and ``:`` (no spaces, no braces: the
#: prefix becomes the hash tag ``{prefix}`` of every key).
PREFIX_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")

#: Every option the URL's query (or the dict form) may set, with its meaning.
OPTIONS: dict[str, str] = {
    "prefix": "key prefix, also the hash tag of every key (default 'jobs')",
    "wait_replicas": "after each enqueue, WAIT for this many replicas to acknowledge it (default 0)",
    "wait_timeout": "seconds WAIT may take before the enqueue fails (default 1)",
    "service": "Sentinel: the monitored master's name (default 'mymaster')",
    "socket_timeout": "seconds a command may take before OperationTimedOut (default 10)",
    "connect_timeout": "seconds to connect (default 5)",
    "max_connections": "connections in the pool (default 50)",
    "max_message_bytes": "largest encoded message accepted (default 1 MiB)",
    "results_ttl": "seconds finished jobs' status and results are kept (default 86400; 0 keeps none)",
}

_SCHEMES = {"redis": "single", "rediss": "single", "redis+sentinel": "sentinel", "redis+cluster": "cluster"}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    """The parsed URL: where the server is and how the driver uses it."""

    mode: str
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None
    prefix: str
    wait_replicas: int
    wait_timeout: float
    service: str
    socket_timeout: float
    connect_timeout: float
    max_connections: int
    max_message_bytes: int
    shown: str
    results_ttl: float = DEFAULT_RESULTS_TTL

    @property
    def base(self) -> str:
        """The start of every key: ``{prefix}:``."""
        return "{" + self.prefix + "}:"

    @property
    def where(self) -> str:
        """``host:port`` of the first server, for messages."""
        host, port = self.hosts[0]
        return f"{host}:{port}"


def _number(name: str, text: Any, kind: type[int] | type[float], low: float) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ConfigurationError(f"redis option {name}={text!r}: expected a number") from None
    if not value >= low:  # NaN included
        raise ConfigurationError(f"redis option {name}={text!r}: must be at least {low}")
    return value


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise :class:`ConfigurationError`."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.match(prefix):
        raise ConfigurationError(
            f"redis key prefix {prefix!r}: use 1 to 64 letters, digits, '.', '_', '-' or ':', "
            "starting with a letter or digit (no spaces or braces: the prefix is the keys' hash tag)"
        )
    return prefix


def _hosts(netloc: str, default_port: int, shown: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for part in netloc.split(","):
        if not part:
            raise InvalidURL(f"redis URL {shown!r}: empty host in the host list")
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise InvalidURL(f"redis URL {shown!r}: no host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise InvalidURL(f"redis URL {shown!r}: port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise InvalidURL(f"redis URL {shown!r}: port {port} out of range")
        hosts.append((host, port))
    return tuple(hosts)


def parse(url: str, options: Mapping[str, Any]) -> RedisSettings:
    """Parse a Redis URL and the options given beside it (the URL's query wins)."""
    shown = redact_url(url)
    scheme = url_scheme(url)
    mode = _SCHEMES.get(scheme)
    if mode is None:
        raise InvalidURL(
            f"not a Redis URL: {shown!r} (expected redis://, rediss://, redis+sentinel:// or redis+cluster://)"
        )
    credentials = split_credentials(url)
    bare = credentials.url if credentials else url
    parts = urlsplit(bare)
    merged: dict[str, Any] = {**options, **query_options(bare)}
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for the redis driver: {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
        )
    netloc = parts.netloc
    if not netloc:
        raise InvalidURL(f"redis URL {shown!r}: no host (expected e.g. redis://localhost:6379/0)")
    default_port = DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT
    hosts = _hosts(netloc, default_port, shown)
    if mode == "single" and len(hosts) > 1:
        raise InvalidURL(f"redis URL {shown!r}: several hosts need redis+sentinel:// or redis+cluster://")
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise InvalidURL(f"redis URL {shown!r}: database {path!r} is not a number") from None
    if db < 0:
        raise InvalidURL(f"redis URL {shown!r}: database {db} is negative")
    if mode == "cluster" and db != 0:
        raise InvalidURL(f"redis URL {shown!r}: a Redis Cluster has only database 0")
    wait_replicas = _number("wait_replicas", merged.get("wait_replicas", 0), int, 0)
    if wait_replicas and mode == "cluster":
        raise ConfigurationError(
            "redis option wait_replicas is not available with redis+cluster:// "
            "(WAIT must follow the write on the same connection)"
        )
    username = unquote(credentials.user) if credentials and credentials.user else None
    password = unquote(credentials.password) if credentials and credentials.password is not None else None
    return RedisSettings(
        mode=mode,
        tls=scheme == "rediss",
        hosts=hosts,
        db=db,
        username=username,
        password=password,
        prefix=check_prefix(merged.get("prefix", "jobs")),
        wait_replicas=wait_replicas,
        wait_timeout=_number("wait_timeout", merged.get("wait_timeout", 1.0), float, 0.001),
        service=str(merged.get("service", "mymaster")),
        socket_timeout=_number("socket_timeout", merged.get("socket_timeout", 10.0), float, 0.01),
        connect_timeout=_number("connect_timeout", merged.get("connect_timeout", 5.0), float, 0.01),
        max_connections=_number("max_connections", merged.get("max_connections", 50), int, 1),
        max_message_bytes=_number("max_message_bytes", merged.get("max_message_bytes", 1_048_576), int, 1),
        shown=shown,
        results_ttl=results_ttl(merged.get("results_ttl", DEFAULT_RESULTS_TTL), "redis option results_ttl"),
    )
