"""A raw ASGI fast path for ``POST /v1/score``, the one hot route.

FastAPI's routing, per-request dependency injection (``solve_dependencies``, with a thread
hop for each plain ``def`` dependency), request wrappers and exception plumbing were most of
the API's own CPU per scoring request. Measured in-process (the scorer answered from a
cache, the verdict commit left out): ~770 us a request through the route as it was, ~235 us
with this path and the shared helpers it uses (hand-built response JSON, one loop wake-up
for scoring and commit, cached metric children).
``ScoreFastPath`` is the innermost of the app's middleware (inside
the body limit, the metrics and access log and the keep-alive recycling, which all still
apply): it answers ``POST /v1/score`` itself, doing what the FastAPI route
(``mailsift.api.routes.score.score`` and its dependencies) does, in the same order, with the
same shared helpers:

1. the scoring service, or 503 (``get_service``);
2. the bearer token, as ``HTTPBearer(auto_error=False)`` reads it, checked for the ``score``
   scope (``authorize``: 401 with a challenge, 403 ``insufficient_scope``; the key id goes
   into the access log);
3. the media type (415), the envelope from the query or the rspamd-style headers (422),
   the body read as it streams (the body limit middleware's 413), an empty body (400);
4. scoring and the durable verdict commit on the app's thread pools, the verdict metrics,
   and the JSON ``ScoreResponse`` (``score_json``: the same bytes as the model's
   ``model_dump_json()``) with the same headers as the route's ``Response``.

Errors are rendered by a Starlette ``ExceptionMiddleware`` holding the app's own exception
handlers (FastAPI's ``HTTPException`` and validation handlers, the store's 503), so every
4xx/503 has the body and headers the route would give; anything else propagates to the
outer middleware and the app's 500 handler, as from the route. ``scope["route"]`` is set to
the route's ``APIRoute``, so metrics and logs name the route template as before. Any other
method, path or a mounted app (``root_path``) goes through FastAPI unchanged; the route stays
in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsift.api.deps import authorize, bearer_token, service_or_503
from mailsift.api.routes import score as score_route

PATH = "/v1/score"
_MESSAGE_TYPES = frozenset(score_route.MESSAGE_TYPES)
# request headers read here: the first value of each (as starlette's Headers.get), and
# every Rcpt (Headers.getlist)
_WANTED = frozenset(
    (b"authorization", b"content-type", b"ip", b"helo", b"from", b"user", b"hostname")
)
_JSON = b"application/json"


def _the_route() -> Any:
    for route in score_route.router.routes:
        if getattr(route, "endpoint", None) is score_route.score:
            return route
    raise RuntimeError("POST /v1/score is not in mailsift.api.routes.score.router")


class ScoreFastPath:
    """Pure ASGI middleware: ``POST /v1/score`` without FastAPI's router (see above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _the_route()
        self._handled: ASGIApp | None = None  # _score wrapped in the app's error handlers

    def _error_handling(self, fastapi_app: Any) -> ASGIApp:
        """``_score`` inside an ``ExceptionMiddleware`` with the handlers FastAPI gives its
        own (``FastAPI.build_middleware_stack``: all but the 500 / Exception handler)."""
        handlers = {
            key: value
            for key, value in fastapi_app.exception_handlers.items()
            if key not in (500, Exception)
        }
        return ExceptionMiddleware(self._score, handlers=handlers, debug=fastapi_app.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        handled = self._handled
        if handled is None:
            handled = self._handled = self._error_handling(scope["app"])
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = {}
        await handled(scope, receive, send)

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        req_state: dict[str, Any] = scope.setdefault("state", {})
        service = service_or_503(state)

        first: dict[bytes, bytes] = {}
        rcpt_headers: list[str] = []
        for name, value in scope["headers"]:
            if name in _WANTED:
                if name not in first:
                    first[name] = value
            elif name == b"rcpt":
                rcpt_headers.append(value.decode("latin-1"))

        def header(name: bytes) -> str | None:
            value = first.get(name)
            return None if value is None else value.decode("latin-1")

        await authorize(state, bearer_token(header(b"authorization")), "score", req_state)

        ctype = header(b"content-type") or ""
        if ctype.split(";", 1)[0].strip().lower() not in _MESSAGE_TYPES:
            raise score_route.unsupported_media()
        query = scope.get("query_string", b"")
        if query:
            q = QueryParams(query)
            env = score_route.envelope_from(
                ip=q.get("ip") or header(b"ip"),
                helo=q.get("helo") or header(b"helo"),
                mail_from=q.get("from") or header(b"from"),
                rcpt=q.getlist("rcpt") or score_route.split_rcpt(rcpt_headers),
                user=q.get("user") or header(b"user"),
                hostname=q.get("hostname") or header(b"hostname"),
            )
        else:
            env = score_route.envelope_from(
                ip=header(b"ip"),
                helo=header(b"helo"),
                mail_from=header(b"from"),
                rcpt=score_route.split_rcpt(rcpt_headers),
                user=header(b"user"),
                hostname=header(b"hostname"),
            )

        data = await _read_body(receive)  # the body limit middleware caps what is read
        if not data.strip():
            raise score_route.empty_body()
        verdict = await score_route.score_and_record(state, service, data, env)
        score_route.count_verdicts(req_state, [verdict])
        body = score_route.score_json(verdict)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    """The whole request body, as ``Request.stream()`` reads it (``ClientDisconnect`` when
    the client goes away first)."""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    if len(chunks) == 1:
        return bytes(chunks[0])
    return b"".join(chunks)
