"""Security plumbing of the review pages: response headers, signed sessions, CSRF tokens.

Every response of the UI router carries a strict Content-Security-Policy (nothing but our own
CSS and script, no inline script or style, no framing, forms post only to us) and the usual
hardening headers; the route class adds them to every response, error pages included.

Sessions are a signed cookie (itsdangerous, HMAC-SHA1 over the JSON payload with a timestamp;
``settings.ui.session_max_age``), ``HttpOnly``, ``SameSite=Strict``, ``Secure`` per
``settings.ui.secure_cookies``. The payload holds the user, whether they are an admin, and a
per-session CSRF token that every state-changing form posts back (compared in constant
time). The login form gets its own CSRF token in a short-lived signed cookie (login CSRF).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsift.config import Settings

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-store",
}
SESSION_COOKIE = "mailsift_session"
LOGIN_COOKIE = "mailsift_login"
LOGIN_MAX_AGE = 900


class SecureRoute(APIRoute):
    """An APIRoute whose responses always carry ``SECURITY_HEADERS``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except HTTPException as exc:
                response = error_response(exc.status_code, str(exc.detail), exc.headers)
            add_security_headers(response)
            return response

        return secured


def error_response(code: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """A plain, escaped error page (or the redirect an HTTPException asked for)."""
    if 300 <= code < 400 and headers and "Location" in headers:
        return RedirectResponse(headers["Location"], status_code=code)
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Error</title>"
        '<link rel="stylesheet" href="/ui/static/ui.css"></head><body><main>'
        f"<h1>{code}</h1><p class=error>{escape(detail)}</p>"
        '<p><a href="/ui/quarantine">Back to the quarantine</a></p></main></body></html>'
    )
    return HTMLResponse(body, status_code=code, headers=dict(headers or {}))


def add_security_headers(response: Response) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    admin: bool
    csrf: str
    issued: float


def secret_key(settings: Settings) -> str:
    """``settings.ui.secret_key``, else a random key generated once into the var dir."""
    if settings.ui.secret_key:
        return settings.ui.secret_key
    path = Path(settings.paths.var_dir) / "ui-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".ui-secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))
        fh.flush()
        os.fsync(fh.fileno())
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)  # first writer wins; every process then reads the same key
    tmp.unlink()
    return path.read_text().strip()


class SessionCodec:
    def __init__(self, settings: Settings) -> None:
        key = secret_key(settings)
        self._session = URLSafeTimedSerializer(key, salt="mailsift-ui-session")
        self._login = URLSafeTimedSerializer(key, salt="mailsift-ui-login")
        self.max_age = settings.ui.session_max_age
        self.secure = settings.ui.secure_cookies

    # ---- the session --------------------------------------------------------------------
    def load(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            data = self._session.loads(token, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not all(k in data for k in ("u", "a", "c", "t")):
            return None
        return Session(str(data["u"]), bool(data["a"]), str(data["c"]), float(data["t"]))

    def start(self, response: Response, user: str, admin: bool) -> Session:
        s = Session(user, admin, secrets.token_urlsafe(32), time.time())
        token = self._session.dumps({"u": s.user, "a": s.admin, "c": s.csrf, "t": s.issued})
        self._set(response, SESSION_COOKIE, token, self.max_age)
        return s

    def end(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/ui", secure=self.secure, httponly=True, samesite="strict"
        )

    # ---- login CSRF ---------------------------------------------------------------------
    def login_token(self, request: Request) -> tuple[str, str | None]:
        """The login form's CSRF token (re-used while its cookie is valid) and, when new,
        the cookie value to set with ``set_login_cookie``."""
        current = self._login_value(request)
        if current:
            return current, None
        value = secrets.token_urlsafe(32)
        return value, self._login.dumps(value)

    def set_login_cookie(self, response: Response, cookie: str | None) -> None:
        if cookie:
            self._set(response, LOGIN_COOKIE, cookie, LOGIN_MAX_AGE)

    def end_login(self, response: Response) -> None:
        response.delete_cookie(
            LOGIN_COOKIE, path="/ui", secure=self.secure, httponly=True, samesite="strict"
        )

    def check_login_token(self, request: Request, posted: str) -> bool:
        current = self._login_value(request)
        return bool(current) and hmac.compare_digest(current or "", posted or "")

    def _login_value(self, request: Request) -> str | None:
        token = request.cookies.get(LOGIN_COOKIE)
        if not token:
            return None
        try:
            v = self._login.loads(token, max_age=LOGIN_MAX_AGE)
        except (BadSignature, ValueError, TypeError):
            return None
        return v if isinstance(v, str) else None

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/ui",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )


def csrf_ok(session: Session, posted: str | None) -> bool:
    return bool(posted) and hmac.compare_digest(session.csrf, posted or "")


class LoginThrottle:
    """Failed logins per user name and per client address: after ``limit`` failures in
    ``window`` seconds, further attempts are refused until the window passes."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._fails[k] = [*self._recent(k, now), now]

    def clear(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._fails.get(key, []) if now - t < self.window]


class UiHeadersMiddleware:
    """Pure ASGI middleware: ``SECURITY_HEADERS`` on every response under ``/ui``, including
    the ones no UI route produced (unknown paths, framework errors)."""

    def __init__(self, app: ASGIApp, prefix: str = "/ui") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    if k not in headers:
                        headers[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)
