"""Connection URLs: which driver a URL names, and how to show it safely."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from jobs_core.errors import InvalidURL

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*)://")


def url_scheme(url: str) -> str:
    """The full scheme of ``url`` (``postgresql+psycopg``), lower-cased.

    Raises :class:`InvalidURL` when there is none.
    """
    if not isinstance(url, str):
        raise InvalidURL(f"a connection URL must be a string, got {type(url).__name__}")
    match = _SCHEME.match(url.strip())
    if not match:
        raise InvalidURL(
            f"invalid connection URL {redact_url(url)!r}: expected 'scheme://...', "
            "for example 'sqlite:///jobs.db', 'postgresql://host/db', 'kafka://host:9092' or 'memory://'"
        )
    return match.group(1).lower()


def base_scheme(scheme: str) -> str:
    """The scheme without its ``+dialect`` suffix (``postgresql+psycopg`` -> ``postgresql``)."""
    return scheme.split("+", 1)[0]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; safe for logs and output."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)
    if parts.password is None:
        return url
    netloc = parts.netloc
    userinfo, _, hostinfo = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def query_options(url: str) -> dict[str, str]:
    """The query parameters of ``url`` as a dict (last value wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
