"""``POST /v1/score`` (one raw message) and ``POST /v1/score/batch`` (many).

Envelope facts come as query parameters or as headers, the way rspamd's ``/checkv2`` takes
them: ``IP``, ``Helo``, ``From``, ``Rcpt`` (repeatable), ``User``, ``Hostname``. Scoring is
CPU work: it runs in the threadpool so the event loop keeps accepting requests.

``POST /v1/score``, the one hot route, is a ``ScoreRoute``: FastAPI routes to it and
documents it (OpenAPI) from its declaration like any other route, and ``answer_score``, a
raw ASGI handler, answers it without FastAPI's request wrapper and per-request dependency
injection (``solve_dependencies``, request objects, response validation), which were most
of the API's own CPU per scoring request. ``answer_score`` takes the steps the
dependencies would, in their order:

1. the scoring service, or 503 (``service_or_503``);
2. the bearer token, as ``HTTPBearer(auto_error=False)`` reads it, checked for the ``score``
   scope (``authorize``: 401 with a challenge, 403 ``insufficient_scope``; the key id goes
   into the access log);
3. the media type (415), the envelope from the query or the rspamd-style headers (422),
   the body read as it streams (the body limit middleware's 413), an empty body (400);
4. scoring on the app's scoring thread, the verdict record queued with the worker's
   verdict writer (written in batches off the answer's path; 503 when the writer refuses),
   the verdict metrics, and the verdict's JSON (``mailsift.verdict.encode_verdict``).

Its errors are exceptions, rendered by the app's exception handlers as every route's are.
``POST /v1/score/batch`` queues its verdicts' records with the same writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams, UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from mailsift.api import metrics
from mailsift.api.deps import (
    ScoreKey,
    ServiceDep,
    SettingsDep,
    authorize,
    bearer_token,
    service_or_503,
)
from mailsift.api.schemas import (
    BatchRequest,
    BatchResponse,
    EnvelopeIn,
    ErrorResponse,
    ScoreResponse,
    decode_b64,
)
from mailsift.service import ScoringService
from mailsift.store import StoreError
from mailsift.verdict import Envelope, Verdict, encode_verdict

router = APIRouter(prefix="/v1", tags=["score"])
T = TypeVar("T")

MESSAGE_TYPES = ("message/rfc822", "application/octet-stream")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 415, 422, 503)
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _bad_input(exc: ValidationError) -> RequestValidationError:
    # without the input: for invalid JSON it is the whole body (see app.validation_details)
    return RequestValidationError(
        exc.errors(include_url=False, include_context=False, include_input=False)
    )


def count_verdicts(req_state: dict[str, Any], verdicts: list[Verdict]) -> None:
    """Verdict metrics, and the verdict ids for the access log (``scope["state"]``)."""
    req_state["verdict_ids"] = [v.verdict_id for v in verdicts]
    for v in verdicts:
        metrics.verdict_counter(v.action.value).inc()
        metrics.SCORE_SECONDS.observe(v.elapsed_ms / 1000.0)


def _record(request: Request, verdicts: list[Verdict]) -> None:
    count_verdicts(request.scope.setdefault("state", {}), verdicts)


# Envelope query parameters: read by hand in ``answer_score`` (one dict lookup each instead of a
# FastAPI dependency per parameter) and documented here. (name, title, description, list)
_ENVELOPE_QUERY = (
    ("ip", "Ip", "Client IP address", False),
    ("helo", "Helo", "HELO/EHLO name", False),
    ("from", "From", "MAIL FROM", False),
    ("rcpt", "Rcpt", "RCPT TO (repeatable)", True),
    ("user", "User", "Authenticated user", False),
    ("hostname", "Hostname", "Verified client host name", False),
)


def _query_doc(name: str, title: str, description: str, many: bool) -> dict[str, Any]:
    item: dict[str, Any] = (
        {"type": "array", "items": {"type": "string"}} if many else {"type": "string"}
    )
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"anyOf": [item, {"type": "null"}], "description": description, "title": title},
        "description": description,
    }


_NO_ENVELOPE = Envelope()


def envelope_from(
    ip: str | None,
    helo: str | None,
    mail_from: str | None,
    rcpt: list[str],
    user: str | None,
    hostname: str | None,
) -> Envelope:
    """The envelope of these facts, validated as ``EnvelopeIn`` (422 when invalid); none at
    all (the common case) needs no validation."""
    if (
        ip is None
        and helo is None
        and mail_from is None
        and not rcpt
        and user is None
        and hostname is None
    ):
        return _NO_ENVELOPE
    try:
        return EnvelopeIn(
            ip=ip, helo=helo, mail_from=mail_from, rcpt=rcpt, user=user, hostname=hostname
        ).to_envelope()
    except ValidationError as exc:
        raise _bad_input(exc) from None


async def run_on(state: Any, pool: str, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work off the event loop: on the app's thread pool ``pool`` when it has
    it (``app.state.score_executor`` for CPU-bound scoring: a plain executor, cheaper than
    anyio's threadpool), else on anyio's."""
    executor = getattr(state, pool, None)
    if executor is None:
        return await run_in_threadpool(fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


async def run_scoring(
    request: Request, fn: Callable[..., T], *args: Any, pool: str = "score_executor"
) -> T:
    return await run_on(request.app.state, pool, fn, *args)


def refuse_when_writer_refuses(writer: Any) -> None:
    """``StoreError`` (503) before scoring when the verdict writer refuses records."""
    why = writer.refusal()
    if why is not None:
        raise StoreError(f"could not record a verdict: {why}")


def evaluate_and_queue(service: ScoringService, writer: Any, data: bytes, env: Envelope) -> Verdict:
    """Score one message and queue its record with the writer (on a scoring thread)."""
    verdict = service.evaluate(data, env)
    writer.submit(*service.verdict_record(verdict, data, env))
    return verdict


async def score_and_record(
    state: Any, service: ScoringService, data: bytes, env: Envelope
) -> Verdict:
    """Score on the few scoring threads and queue the verdict's record with the worker's
    ``VerdictWriter`` (``state.verdict_writer``), which commits it within milliseconds, in a
    batch, off the answer's path; a lookup of the verdict id waits for that commit
    (``mailsift.store.verdicts.find_verdict``). When the writer refuses records (the store
    is down, or too many records wait for it) the request fails with ``StoreError`` (503)
    before scoring, as it does when the store fails during scoring.

    The scoring thread queues the record itself and the event loop wakes once, when the
    verdict is ready. Without a writer (an app run without its lifespan) the verdict is
    committed before the answer, on anyio's threads."""
    scoring, writer = state.score_executor, state.verdict_writer
    if scoring is None or writer is None:
        verdict = await run_on(state, "score_executor", service.evaluate, data, env)
        await run_in_threadpool(service.record, verdict, data, env)
        return verdict
    refuse_when_writer_refuses(writer)

    loop = asyncio.get_running_loop()
    done: asyncio.Future[Verdict] = loop.create_future()

    def settle(verdict: Verdict | None, exc: BaseException | None) -> None:  # on the loop
        if done.done():  # the request was cancelled meanwhile
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(verdict)  # type: ignore[arg-type]

    def report(verdict: Verdict | None, exc: BaseException | None) -> None:  # any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, verdict, exc)

    def evaluate() -> None:
        try:
            verdict = evaluate_and_queue(service, writer, data, env)
        except BaseException as exc:  # scoring failed, the writer refused, or shut down
            report(None, exc)
        else:
            report(verdict, None)

    scoring.submit(evaluate)
    return await done


def unsupported_media() -> HTTPException:
    return HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        f"send the raw message as {' or '.join(MESSAGE_TYPES)}",
    )


def empty_body() -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, "the request body (the message) is empty")


_MESSAGE_TYPES = frozenset(MESSAGE_TYPES)
# request headers answer_score reads: the first value of each (as starlette's Headers.get),
# and every Rcpt (Headers.getlist)
_WANTED = frozenset(
    (b"authorization", b"content-type", b"ip", b"helo", b"from", b"user", b"hostname")
)
_JSON_HEADER = (b"content-type", b"application/json")


async def answer_score(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/score``, as a raw ASGI application (the steps: see the module docstring)."""
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
        raise unsupported_media()
    query = scope.get("query_string", b"")
    if query:  # query parameters win over the headers
        q = QueryParams(query)
        env = envelope_from(
            ip=q.get("ip") or header(b"ip"),
            helo=q.get("helo") or header(b"helo"),
            mail_from=q.get("from") or header(b"from"),
            rcpt=q.getlist("rcpt") or split_rcpt(rcpt_headers),
            user=q.get("user") or header(b"user"),
            hostname=q.get("hostname") or header(b"hostname"),
        )
    else:
        env = envelope_from(
            ip=header(b"ip"),
            helo=header(b"helo"),
            mail_from=header(b"from"),
            rcpt=split_rcpt(rcpt_headers),
            user=header(b"user"),
            hostname=header(b"hostname"),
        )

    data = await _read_body(receive)  # the body limit middleware caps what is read
    if not data.strip():
        raise empty_body()
    verdict = await score_and_record(state, service, data, env)
    count_verdicts(req_state, [verdict])
    body = encode_verdict(verdict)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode("latin-1")), _JSON_HEADER],
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


class ScoreRoute(APIRoute):
    """An ``APIRoute`` answered by ``answer_score``: FastAPI matches and documents it from
    its declaration (the endpoint's signature, summary, responses, ``openapi_extra``), and
    requests of its methods go straight to the raw handler; any other method gets FastAPI's
    405, as from every route."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in (self.methods or ()):
            await answer_score(scope, receive, send)
        else:
            await super().handle(scope, receive, send)


async def score(_key: ScoreKey) -> None:
    """Score a message; query parameters win over the rspamd-style headers.\f

    The declaration of ``POST /v1/score`` that FastAPI documents (the description above
    this docstring's form feed; the security scheme from ``_key``). ``ScoreRoute`` answers
    the route's requests with ``answer_score`` and never calls this function."""


router.add_api_route(
    "/score",
    score,
    methods=["POST"],
    response_model=ScoreResponse,
    summary="Score one raw RFC 5322 message",
    responses=_ERRORS,
    openapi_extra={
        "parameters": [_query_doc(*p) for p in _ENVELOPE_QUERY],
        "requestBody": {
            "required": True,
            "description": "The raw message, as received (RFC 5322)",
            "content": {t: _BINARY for t in MESSAGE_TYPES},
        },
    },
    route_class_override=ScoreRoute,
)


def split_rcpt(values: list[str] | None) -> list[str]:
    """Rcpt headers may each hold one address or a comma-separated list."""
    out: list[str] = []
    for v in values or []:
        out.extend(a.strip() for a in v.split(",") if a.strip())
    return out


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    summary="Score many messages in one call (JSON with base64, or multipart)",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "message": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                        "required": ["message"],
                    },
                    "encoding": {"message": {"contentType": "message/rfc822"}},
                },
            },
        }
    },
)
async def score_batch(
    request: Request, service: ServiceDep, settings: SettingsDep, _key: ScoreKey
) -> Response:
    """JSON: ``{"messages": [{"id", "message" (base64), "envelope"}]}``. Multipart: every
    file part is one message (its id is the part's file name)."""
    start = time.perf_counter()
    kind = media_type(request)
    if kind == "application/json":
        items = await _json_items(request, settings.api.max_batch)
    elif kind == "multipart/form-data":
        items = await _multipart_items(request, settings.api.max_batch)
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send application/json (base64 messages) or multipart/form-data",
        )

    writer = getattr(request.app.state, "verdict_writer", None)
    if writer is None:  # an app run without its lifespan: each verdict committed in turn

        def run() -> list[Verdict]:
            return [service.score(raw, env) for _, raw, env in items]

    else:
        # as for one message: the records are queued with the worker's writer, committed
        # in batches off the answer's path; refused before scoring when the store is down
        refuse_when_writer_refuses(writer)

        def run() -> list[Verdict]:
            return [evaluate_and_queue(service, writer, raw, env) for _, raw, env in items]

    verdicts = await run_scoring(request, run)
    _record(request, verdicts)
    results = b",".join(
        b'{"id":' + to_json(item_id) + b',"verdict":' + encode_verdict(v) + b"}"
        for (item_id, _, _), v in zip(items, verdicts, strict=True)
    )
    elapsed = to_json(round((time.perf_counter() - start) * 1000, 3))
    # BatchResponse's JSON (results: BatchResult id and verdict, then elapsed_ms), each
    # verdict written by the verdict codec
    return Response(
        b'{"results":[' + results + b'],"elapsed_ms":' + elapsed + b"}",
        media_type="application/json",
    )


BatchItem = tuple[str | None, bytes, Envelope]


async def _json_items(request: Request, max_batch: int) -> list[BatchItem]:
    body = await request.body()
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _bad_input(exc) from None
    if len(batch.messages) > max_batch:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {max_batch} messages per batch"
        )
    items: list[BatchItem] = []
    for m in batch.messages:
        raw = decode_b64(m.message)
        env = m.envelope.to_envelope() if m.envelope else Envelope()
        items.append((m.id, raw, env))
    return items


async def _multipart_items(request: Request, max_batch: int) -> list[BatchItem]:
    try:
        form = await request.form(max_files=max_batch, max_fields=max_batch)
    except HTTPException:
        raise
    except Exception as exc:  # malformed multipart: the parser's reason, as a 400
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}"
        ) from None
    items: list[BatchItem] = []
    try:
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"form field {name!r} is not a file part: send each message as a file",
                )
            raw = await value.read()
            items.append((value.filename or name, raw, Envelope()))
    finally:
        await form.close()
    if not items:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no message parts in the form")
    return items
