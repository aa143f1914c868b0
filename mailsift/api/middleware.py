"""Pure ASGI middleware of the HTTP API: the body size limit and request observation.

``BodyLimitMiddleware`` refuses a body larger than ``max_bytes`` with 413 before reading
it when ``Content-Length`` says so, and otherwise counts bytes while the application reads
the stream (chunked uploads), so a 1 GB body is never held in memory. A body that has not
fully arrived ``body_timeout`` seconds after the request's headers is answered 408 and the
connection closed: a client that stops half-way does not hold a request open for good.

``RecycleMiddleware`` asks the client to close a keep-alive connection after it has carried
``max_requests`` requests (``Connection: close``, as nginx's ``keepalive_requests``). With
several uvicorn workers sharing one listening socket, whichever worker wakes first accepts
a new connection (often all of a burst of them), and a keep-alive connection stays with it
for good: one worker could serve every client while the other idles. Recycling connections
lets the less busy worker (the one quicker to accept) pick up the reconnections, so the load
evens out within seconds; a reconnect costs a TCP handshake per ``max_requests`` requests.

``ObserveMiddleware`` counts requests and latency per route template (Prometheus) and
writes one JSON access-log line per request, with the verdict id of a scoring request
(``request.state.verdict_ids``); never a message body. A client that disconnects before
its response (mid-body, say) is counted and logged with status 499 (nginx's "client
closed request"), one line without a traceback: the error it causes in the application
(``ClientDisconnect``) is the client's doing, not a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsift.api import metrics
from mailsift.api.logs import ACCESS_LOGGER, log_event

_access = logging.getLogger(ACCESS_LOGGER)

# the status logged and counted for a request whose client left before its response
CLIENT_CLOSED = 499


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit (FastAPI renders it as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"request body too large: the limit is {limit} bytes",
        )


class BodyTimeout(HTTPException):
    """Raised from ``receive`` once the body is overdue (rendered as 408; the connection is
    closed after it, the rest of the body unread)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"request body not received within {timeout:g} s",
            headers={"Connection": "close"},
        )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Enforce a request body size limit while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 0.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout  # seconds for the whole body; 0: no limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # refuse before reading a byte; the connection is closed afterwards
            await _send_json(send, 413, {"detail": BodyTooLarge(limit).detail})
            return

        received = 0
        started = False
        timeout = self.body_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if deadline is None or body_done:  # after the body: waits for a disconnect
                message = await receive()
            else:
                try:  # a timer on this task (asyncio.wait_for would start a task per call)
                    async with asyncio.timeout(deadline - time.monotonic()):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if started:
                raise
            await _send_json(send, exc.status_code, {"detail": exc.detail})


class RecycleMiddleware:
    """Close a keep-alive connection after ``max_requests`` requests (see above)."""

    def __init__(self, app: ASGIApp, max_requests: int = 100) -> None:
        self.app = app
        self.max_requests = max_requests
        self._served: dict[tuple[str, int], int] = {}  # client (host, port) -> requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or scope.get("http_version") == "2":
            await self.app(scope, receive, send)
            return
        key = (client[0], client[1])
        served = self._served
        n = served.pop(key, 0) + 1
        if n < self.max_requests:
            if len(served) >= 4096:  # connections the clients closed themselves
                served.clear()
            served[key] = n
            await self.app(scope, receive, send)
            return

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class ObserveMiddleware:
    """Prometheus request metrics and the JSON access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False
        left = False  # the client disconnected before the response started

        async def status_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        async def watching_receive() -> Message:
            nonlocal left
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                left = True
            return message

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, watching_receive, status_send)
        except ClientDisconnect:
            # nobody to answer; the client's doing: no traceback, no 500 (logged below)
            if started:
                raise
            left = True
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            if left:  # whatever the application answered, nobody received it
                status = CLIENT_CLOSED
            route = _route_template(scope)
            method = scope["method"]
            metrics.observe_request(method, route, status, elapsed)
            state = scope.get("state") or {}
            client = scope.get("client")
            log_event(
                _access,
                "request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
                client=client[0] if client else None,
                key_id=state.get("key_id"),
                verdict_ids=state.get("verdict_ids"),
            )
