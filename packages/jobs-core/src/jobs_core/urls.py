"""Connection URLs: which driver a URL names, and how to show it safely.

:func:`redact_url` is the one way a URL is shown anywhere (reprs, the CLI's
text and JSON output, the worker's and scheduler's start lines, logs and
error messages). It hides:

* the password of the userinfo: everything from the first ``:`` after the
  user name to the **last** ``@`` of the URL. A password written with an
  unencoded ``@``, ``:``, ``/``, ``?`` or ``#`` is hidden whole, even where
  the URL is otherwise unparseable (an ``@`` in a query value after a
  password-like ``host:port`` therefore hides the host too: write it
  ``%40``);
* the value of every query parameter whose name names a secret (see
  :func:`is_secret_key`), up to the next ``&``.

:func:`redact_text` scrubs the same secrets out of any text, such as an
error message a database client wrote. :func:`split_credentials` is how the
first-party drivers find the user and password in a URL whose password is
not percent-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from jobs_core.errors import InvalidURL

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*)://")

#: What a hidden secret is shown as.
REDACTED = "***"

#: A query key or client setting containing one of these (case-insensitive) names a secret.
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "credential", "key")
#: A key with one of these as a whole word (between ``.``, ``_`` or ``-``) names a secret.
SECRET_PARTS = frozenset({"pass"})

#: Secrets shorter than this are not searched for in free text (they would
#: garble it); they are still hidden wherever a URL is shown.
MIN_SCRUBBED = 3

_HOST = r"(?:\[[0-9A-Za-z:.%]*\]|[0-9A-Za-z._%~!$'()*+;=-]*)"
_CLEAN_NETLOC = re.compile(rf"^{_HOST}(?::\d+)?(?:,{_HOST}(?::\d+)?)*$")
_HOST_LIST = re.compile(r"^[0-9A-Za-z._%\[\]:,~-]+$")


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


def is_secret_key(name: str) -> bool:
    """Whether a query parameter or client setting called ``name`` holds a secret.

    True for names containing ``password``, ``passwd``, ``pwd``, ``secret``,
    ``token``, ``credential`` or ``key`` (``sasl.password``,
    ``ssl.key.password``, ``ssl.keystore.password``,
    ``sasl.oauthbearer.client.secret``, ``api_key``, ``ssl.key.pem``), and for
    names with ``pass`` as a word; case-insensitive, after percent-decoding.
    """
    lowered = unquote_plus(name).strip().lower()
    if any(word in lowered for word in SECRET_WORDS):
        return True
    return any(part in SECRET_PARTS for part in re.split(r"[._\-\s]+", lowered))


class Credentials(NamedTuple):
    """The userinfo of a URL as written (still percent-encoded), and the URL without it."""

    #: The user name, or ``""``.
    user: str
    #: The password, or ``None`` when the userinfo has no ``:``.
    password: str | None
    #: The URL with the userinfo and its ``@`` removed (``scheme://host:port/...``).
    url: str


def _split_scheme(url: str) -> tuple[str, str]:
    match = _SCHEME.match(url)
    if match is None:
        return "", url
    return url[: match.end()], url[match.end() :]


def split_credentials(url: str) -> Credentials | None:
    """The user and password of ``url``, also when the password is not percent-encoded.

    A URL that parses by the standard (``user:p%40ss@host``, or ``@`` and
    ``:`` in the password, which the standard allows before the last ``@`` of
    the authority) is split as :func:`urllib.parse.urlsplit` splits it. When
    the authority is not a plain ``host:port`` list because the password
    holds an unencoded ``/``, ``?`` or ``#``, the userinfo runs to the last
    ``@`` that is not inside a query value (``?name=...@...``). ``None`` when
    the URL has no userinfo.
    """
    prefix, rest = _split_scheme(url)
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in rest or ("@" not in netloc and _CLEAN_NETLOC.match(netloc)):
        return None
    at = len(rest)
    while True:
        at = rest.rfind("@", 0, at)
        if at < 0:
            return None
        before = rest[:at]
        query = before.find("?")
        in_query_value = query >= 0 and "=" in before[query:]
        host = re.split(r"[/?#]", rest[at + 1 :], maxsplit=1)[0]
        if not in_query_value and (not host or _HOST_LIST.match(host)):
            break
    user, colon, password = before.partition(":")
    return Credentials(user, password if colon else None, prefix + rest[at + 1 :])


def _secret_values(text: str) -> list[tuple[int, int]]:
    """The spans of the values of every secret ``?name=`` / ``&name=`` parameter in ``text``.

    A secret value runs to the next ``&``: a ``?`` or ``#`` inside it is part of it.
    """
    spans: list[tuple[int, int]] = []
    for match in re.finditer(r"[?&]([^&=?]*)=", text):
        if is_secret_key(match.group(1)) and not (spans and match.start() < spans[-1][1]):
            end = text.find("&", match.end())
            spans.append((match.end(), len(text) if end < 0 else end))
    return spans


def _redact_query(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``***``."""
    for start, end in reversed(_secret_values(text)):
        text = text[:start] + REDACTED + text[end:]
    return text


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``.

    Safe for logs, output and error messages, whatever the URL holds; see the
    module documentation for exactly what is hidden.
    """
    prefix, rest = _split_scheme(url)
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at] and not rest.startswith("/"):
        user = rest[: rest.index(":")]
        shown_user = f"{user}:" if not re.search(r"[/?#@\s]", user) else ""
        rest = f"{shown_user}{REDACTED}@{rest[at + 1 :]}"
    return prefix + _redact_query(rest)


def url_secrets(url: str) -> tuple[str, ...]:
    """Every string in ``url`` that :func:`redact_url` hides, as written and decoded.

    Longest first, for :func:`redact_text`.
    """
    found: set[str] = set()
    _, rest = _split_scheme(url)
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        found.add(rest[rest.index(":") + 1 : at])
        first = rest.find("@")
        found.add(rest[rest.index(":") + 1 : first] if rest.index(":") < first else "")
    credentials = split_credentials(url)
    if credentials is not None and credentials.password:
        found.add(credentials.password)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    for start, end in _secret_values(rest):
        found.add(rest[start:end])
        found.add(re.split(r"[?#]", rest[start:end], maxsplit=1)[0])
    decoded = {unquote(s) for s in found} | {unquote_plus(s) for s in found}
    secrets = {s for s in found | decoded if len(s) >= MIN_SCRUBBED}
    return tuple(sorted(secrets, key=len, reverse=True))


def redact_text(text: str, url: str | None = None, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``url`` shown redacted and every secret of it (and ``secrets``) replaced by ``***``.

    For messages written by others (a database client's error, an exception
    that quotes the URL) before they are shown.
    """
    hidden = set(secrets)
    if url:
        text = text.replace(url, redact_url(url))
        hidden.update(url_secrets(url))
    for secret in sorted((s for s in hidden if len(s) >= MIN_SCRUBBED), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def query_options(url: str) -> dict[str, str]:
    """The query parameters of ``url`` as a dict (last value wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
