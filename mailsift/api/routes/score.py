"""``POST /v1/score`` (one raw message) and ``POST /v1/score/batch`` (many).

Envelope facts come as query parameters or as headers, the way rspamd's ``/checkv2`` takes
them: ``IP``, ``Helo``, ``From``, ``Rcpt`` (repeatable), ``User``, ``Hostname``. Scoring is
CPU work: it runs in the threadpool so the event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mailsift.api import metrics
from mailsift.api.deps import ScoreKey, ServiceDep, SettingsDep
from mailsift.api.schemas import (
    BatchRequest,
    BatchResponse,
    BatchResult,
    EnvelopeIn,
    ErrorResponse,
    ScoreResponse,
    decode_b64,
)
from mailsift.verdict import Envelope, Verdict

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
    errors = exc.errors(include_url=False, include_context=False)
    for e in errors:  # invalid JSON echoes the raw body: bytes, maybe not UTF-8 (500 else)
        if isinstance(e.get("input"), bytes | bytearray):
            e["input"] = bytes(e["input"]).decode("utf-8", "replace")
    return RequestValidationError(errors)


def _record(request: Request, verdicts: list[Verdict]) -> None:
    request.state.verdict_ids = [v.verdict_id for v in verdicts]
    for v in verdicts:
        metrics.VERDICTS.labels(action=v.action.value).inc()
        metrics.SCORE_SECONDS.observe(v.elapsed_ms / 1000.0)


# Envelope query parameters: read by hand in ``score`` (one dict lookup each instead of a
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


def envelope_of(request: Request) -> EnvelopeIn:
    """The envelope from the query (``ip``, ``helo``, ``from``, ``rcpt``..., which win) or
    the rspamd-style headers (``IP``, ``Helo``, ``From``, ``Rcpt``...); 422 when invalid."""
    q, h = request.query_params, request.headers
    try:
        return EnvelopeIn(
            ip=q.get("ip") or h.get("ip"),
            helo=q.get("helo") or h.get("helo"),
            mail_from=q.get("from") or h.get("from"),
            rcpt=q.getlist("rcpt") or _split_rcpt(h.getlist("rcpt")),
            user=q.get("user") or h.get("user"),
            hostname=q.get("hostname") or h.get("hostname"),
        )
    except ValidationError as exc:
        raise _bad_input(exc) from None


def json_response(model: BaseModel) -> Response:
    """A response model serialised once (FastAPI would validate a returned model again)."""
    return Response(model.model_dump_json().encode(), media_type="application/json")


async def run_scoring(
    request: Request, fn: Callable[..., T], *args: Any, pool: str = "score_executor"
) -> T:
    """Run blocking work off the event loop: on one of the app's thread pools when it has
    them (``app.state.score_executor`` for CPU-bound scoring, ``record_executor`` for the
    verdict commit: plain executors, cheaper than anyio's threadpool), else on anyio's."""
    executor = getattr(request.app.state, pool, None)
    if executor is None:
        return await run_in_threadpool(fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


@router.post(
    "/score",
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
)
async def score(request: Request, service: ServiceDep, _key: ScoreKey) -> Response:
    """Score a message; query parameters win over the rspamd-style headers."""
    if media_type(request) not in MESSAGE_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the raw message as {' or '.join(MESSAGE_TYPES)}",
        )
    envelope = envelope_of(request)
    raw = bytearray()
    async for chunk in request.stream():  # BodyLimitMiddleware caps what is read
        raw += chunk
    if not raw.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the request body (the message) is empty")
    data, env = bytes(raw), envelope.to_envelope()
    # scoring on the few scoring threads; the commit (which waits for the disk) on others,
    # so a scoring thread never idles while verdicts of concurrent requests commit together
    verdict = await run_scoring(request, service.evaluate, data, env)
    await run_scoring(request, service.record, verdict, data, env, pool="record_executor")
    _record(request, [verdict])
    return json_response(ScoreResponse.from_verdict(verdict))


def _split_rcpt(values: list[str] | None) -> list[str]:
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

    def run() -> list[Verdict]:
        return [service.score(raw, env) for _, raw, env in items]

    verdicts = await run_scoring(request, run)
    _record(request, verdicts)
    return json_response(
        BatchResponse(
            results=[
                BatchResult(id=item_id, verdict=ScoreResponse.from_verdict(v))
                for (item_id, _, _), v in zip(items, verdicts, strict=True)
            ],
            elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
        )
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
