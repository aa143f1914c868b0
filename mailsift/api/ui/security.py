"""Security plumbing of the review pages: response headers, signed sessions, CSRF tokens.

Every response of the UI router carries a strict Content-Security-Policy (nothing but our own
CSS and script, no inline script or style, no framing, forms post only to us) and the usual
hardening headers; the route class adds them to every response, error pages included.

Sessions live in the store (``store.sessions``): the cookie holds 256 random bits, the store
the sha256 of that value, the user, a per-session CSRF token that every state-changing form
posts back (compared in constant time), a fingerprint of the account's password hash, and
an expiry (``settings.ui.session_max_age``). Logging out deletes the row, so a copy of the
cookie is worth nothing afterwards; so does a password change (the fingerprint no longer
matches), disabling the account or its expiry. The cookie is ``HttpOnly``,
``SameSite=Strict``, ``Secure`` per ``settings.ui.secure_cookies``. The login form gets its
own CSRF token in a short-lived signed cookie (login CSRF, itsdangerous).

``LoginThrottle`` counts failed logins in the store too, so every worker sees the same
counts: a hard limit per (client address, account) pair, and soft limits per address, per
account and in all that slow attempts down instead of refusing them (a password sprayer
behind a NAT must not lock out the other users behind it).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
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

from mailsift.config import Settings, UiSettings
from mailsift.store.base import Store, WebSession

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
    credential: str = ""  # the account's password fingerprint when the session began
    sid: str = ""  # sha256 of the cookie value: the session's key in the store


def cookie_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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
    """Sessions in the store, their cookie, and the login form's CSRF cookie. The session
    methods query the store: call them from a worker thread, not the event loop."""

    def __init__(self, settings: Settings, store: Store) -> None:
        key = secret_key(settings)
        self._login = URLSafeTimedSerializer(key, salt="mailsift-ui-login")
        self.store = store
        self.max_age = settings.ui.session_max_age
        self.secure = settings.ui.secure_cookies

    # ---- the session --------------------------------------------------------------------
    def load(self, request: Request) -> Session | None:
        """The live session the request's cookie names (None: none, unknown, ended, expired)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 128:
            return None
        ws = self.store.sessions.get(cookie_sha256(token))
        if ws is None:
            return None
        return Session(ws.user, False, ws.csrf, ws.created, ws.credential, ws.session_sha256)

    def start(
        self,
        request: Request | None,
        response: Response,
        user: str,
        admin: bool,
        credential: str,
        client_ip: str = "",
    ) -> Session:
        """A new session for ``user`` (a new cookie value: the one the browser held before,
        if any, is ended, so a planted cookie cannot be logged into)."""
        old = request.cookies.get(SESSION_COOKIE) if request is not None else None
        if old and len(old) <= 128:
            self.store.sessions.delete(cookie_sha256(old))
        token = secrets.token_urlsafe(32)
        now = time.time()
        ws = WebSession(
            session_sha256=cookie_sha256(token),
            user=user,
            csrf=secrets.token_urlsafe(32),
            credential=credential,
            created=now,
            expires=now + self.max_age,
            client_ip=client_ip,
        )
        self.store.sessions.create(ws)
        self.store.sessions.purge(now)  # expired sessions of anyone
        self._set(response, SESSION_COOKIE, token, self.max_age)
        return Session(user, admin, ws.csrf, now, credential, ws.session_sha256)

    def revoke(self, session: Session) -> None:
        """End ``session`` in the store (its cookie, wherever copied, no longer works)."""
        if session.sid:
            self.store.sessions.delete(session.sid)

    def end(self, response: Response, session: Session | None = None) -> None:
        """Log out: end ``session`` in the store and delete the browser's cookie."""
        if session is not None:
            self.revoke(session)
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
    """Failed web logins, counted in the store over ``ui.login_window`` seconds.

    Hard limit: after ``ui.login_failures`` failures of one account from one client address,
    that (address, account) pair is refused until the window passes; the same account from
    elsewhere and other accounts from the same address are not. Soft limits: past
    ``login_soft_per_address`` failures from one address, ``login_soft_per_account`` of one
    account or ``login_soft_total`` in all, every attempt they cover waits
    ``login_slow_delay`` seconds before its password is checked: a sprayer (many accounts
    from one address, or one account from many) is slowed down, while a real user behind the
    same address still gets in. Limits are read from ``ui`` at each call.
    """

    def __init__(self, store: Store, ui: UiSettings) -> None:
        self.store = store
        self.ui = ui

    def check(self, client_ip: str, user: str) -> tuple[bool, float]:
        """(refused, seconds to wait first) for an attempt to log in as ``user``."""
        since = time.time() - self.ui.login_window
        failures = self.store.sessions.failures
        if failures(since, client_ip=client_ip, user=user) >= self.ui.login_failures:
            return True, 0.0
        slow = (
            failures(since, client_ip=client_ip) >= self.ui.login_soft_per_address
            or failures(since, user=user) >= self.ui.login_soft_per_account
            or failures(since) >= self.ui.login_soft_total
        )
        return False, self.ui.login_slow_delay if slow else 0.0

    def fail(self, client_ip: str, user: str) -> None:
        now = time.time()
        self.store.sessions.record_failure(client_ip, user, now)
        self.store.sessions.purge_failures(now - self.ui.login_window)

    def succeeded(self, client_ip: str, user: str) -> None:
        """The pair logged in: its earlier failures (typos) no longer count."""
        self.store.sessions.clear_failures(client_ip, user)


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
