"""Who may see the dashboard and act on it.

- **Authentication**: with a token, a browser signs in once on ``/login``
  and gets a cookie bound to its session; with basic auth, the browser asks
  with its own dialog and sends the credentials on every request. Without
  either (allowed on a loopback address only) every request from this
  machine is let in, but only with a ``Host`` header naming this machine, so
  a web page elsewhere cannot reach the dashboard by DNS rebinding.
- **CSRF**: every action is a ``POST`` carrying a token derived from the
  browser's session cookie (``SameSite=Strict``, ``HttpOnly``); a ``POST``
  without it, or with another session's, is refused with 403 and changes
  nothing.
- **Headers**: a Content-Security-Policy that allows scripts, styles and
  images from the dashboard itself only (no inline script), no framing, no
  referrer, no caching of pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs_dashboard.settings import DashboardSettings, is_loopback

#: The cookie that names the browser's session (random; the CSRF token is derived from it).
SESSION_COOKIE = "jobs_dashboard_session"
#: The cookie that proves a token sign-in for that session.
AUTH_COOKIE = "jobs_dashboard_auth"
#: The form field (or header) that carries the CSRF token of an action.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: The largest form accepted, in bytes.
MAX_FORM = 64 * 1024

#: Paths served to a visitor who has not signed in yet.
PUBLIC_PREFIXES = ("/login", "/static/")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Guard:
    """Session, sign-in and CSRF checks for one running dashboard (its secret lives in memory)."""

    def __init__(self, settings: DashboardSettings, secret: bytes | None = None) -> None:
        self.settings = settings
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _sign(self, purpose: str, session: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}:{session}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @staticmethod
    def new_session() -> str:
        """A fresh random session id."""
        return secrets.token_urlsafe(32)

    def csrf_token(self, session: str) -> str:
        """The CSRF token of ``session``."""
        return self._sign("csrf", session)

    def auth_cookie(self, session: str) -> str:
        """The value of :data:`AUTH_COOKIE` after a token sign-in in ``session``."""
        return self._sign("auth", session)

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the dashboard's token (compared in constant time)."""
        token = self.settings.token
        return token is not None and hmac.compare_digest(given.encode(), token.encode())

    def valid_csrf(self, session: str | None, given: str | None) -> bool:
        """Whether ``given`` is the CSRF token of ``session`` (both present)."""
        if not session or not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def signed_in(self, request: Request) -> bool:
        """Whether ``request`` may see the pages (see the module documentation)."""
        settings = self.settings
        if not settings.authenticated:
            return True
        credentials = settings.basic_credentials
        if credentials is not None and self._basic_ok(request.headers.get("authorization", ""), credentials):
            return True
        if settings.token:
            session = request.cookies.get(SESSION_COOKIE)
            cookie = request.cookies.get(AUTH_COOKIE)
            if (
                session
                and cookie
                and hmac.compare_digest(cookie.encode(), self.auth_cookie(session).encode())
            ):
                return True
        return False

    @staticmethod
    def _basic_ok(header: str, credentials: tuple[str, str]) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        expected_user, expected_password = credentials
        user_ok = hmac.compare_digest(user.encode(), expected_user.encode())
        password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
        return user_ok and password_ok


def root_of(scope: Scope) -> str:
    """The path the dashboard is mounted at (``""`` at the root of its server)."""
    return str(scope.get("root_path", "")).rstrip("/")


def route_path(scope: Scope) -> str:
    """The request's path below :func:`root_of`."""
    path: str = scope["path"]
    root = root_of(scope)
    return path[len(root) :] if root and path.startswith(root) else path


def _host_is_local(host_header: str) -> bool:
    host = host_header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return bool(host) and is_loopback(host)


class SecurityMiddleware:
    """ASGI middleware: the ``Host`` check, sign-in, the session cookie and the security headers.

    A request that is not signed in gets 401 with a basic-auth challenge
    (basic auth) or a redirect to ``/login`` (token). Every response gets
    :data:`SECURITY_HEADERS`, and a session cookie if the browser has none.
    """

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with the headers added to the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        settings = self.guard.settings
        if not settings.authenticated and not _host_is_local(request.headers.get("host", "")):
            await self._respond(
                PlainTextResponse(
                    "this dashboard has no sign-in, so it answers to localhost only; to serve it "
                    "under another name (behind a proxy, say), start it with --token or --basic-auth",
                    status_code=403,
                ),
                scope,
                receive,
                send,
            )
            return
        session = request.cookies.get(SESSION_COOKIE)
        new_session = None
        if not session:
            new_session = session = Guard.new_session()
        scope.setdefault("state", {})["session"] = session
        path = route_path(scope)  # read before routing changes the scope's root_path
        public = path.startswith(PUBLIC_PREFIXES)
        static = path.startswith("/static/")
        if not public and not self.guard.signed_in(request):
            response: Response
            if settings.basic_credentials is not None and not settings.token:
                response = PlainTextResponse(
                    "sign in to see the jobs dashboard",
                    status_code=401,
                    headers={"www-authenticate": 'Basic realm="jobs dashboard", charset="UTF-8"'},
                )
            elif request.headers.get("hx-request"):
                # A refresh by htmx after the sign-in was lost: the whole page goes to the sign-in form.
                response = PlainTextResponse("sign in first", status_code=401)
                response.headers["hx-redirect"] = f"{root_of(scope)}/login"
            elif request.method == "GET":
                response = RedirectResponse(f"{root_of(scope)}/login", status_code=303)
            else:
                response = PlainTextResponse("sign in first", status_code=401)
            if new_session:
                set_session_cookie(response, new_session, secure=scope.get("scheme") == "https")
            await self._respond(response, scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if static:
                    # The script and the style sheet may be cached (they change with the package).
                    present.add(b"cache-control")
                    headers.append((b"cache-control", b"public, max-age=3600"))
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if new_session:
                    probe = Response()
                    set_session_cookie(probe, new_session, secure=scope.get("scheme") == "https")
                    headers += [(k, v) for k, v in probe.raw_headers if k == b"set-cookie"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _respond(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await response(scope, receive, send)


def set_session_cookie(response: Response, session: str, *, secure: bool = False) -> None:
    """Set :data:`SESSION_COOKIE` (``HttpOnly``, ``SameSite=Strict``, the browser's session only;
    ``Secure`` when the page came over HTTPS).
    """
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/", secure=secure)


def session_of(request: Request) -> str:
    """The session id the middleware gave ``request``."""
    return str(request.state.session)


async def read_form(request: Request) -> dict[str, str]:
    """The ``application/x-www-form-urlencoded`` body of ``request`` (first value of each field).

    Bodies over :data:`MAX_FORM` bytes, or of another type, read as empty.
    """
    content_type = Headers(scope=request.scope).get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


Action = Callable[[Request, dict[str, str]], Awaitable[Response]]


def csrf_protected(guard: Guard, action: Action) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that runs ``action(request, form)`` only for a ``POST`` with the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        form = await read_form(request)
        given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not guard.valid_csrf(request.cookies.get(SESSION_COOKIE), given):
            return PlainTextResponse(
                "refused: this action needs the page's CSRF token (reload the page and try again)",
                status_code=403,
            )
        return await action(request, form)

    return endpoint
