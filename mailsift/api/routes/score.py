"""``POST /v1/score`` (one raw message) and ``POST /v1/score/batch`` (many).

Envelope facts come as query parameters or as headers, the way rspamd's ``/checkv2`` takes
them: ``IP``, ``Helo``, ``From``, ``Rcpt`` (repeatable), ``User``, ``Hostname``. Scoring is
CPU work: it runs in the threadpool so the event loop keeps accepting requests.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
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

MESSAGE_TYPES = ("message/rfc822", "application/octet-stream")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 415, 422, 503)
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _bad_input(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(exc.errors(include_url=False, include_context=False))


def _record(request: Request, verdicts: list[Verdict]) -> None:
    request.state.verdict_ids = [v.verdict_id for v in verdicts]
    for v in verdicts:
        metrics.VERDICTS.labels(action=v.action.value).inc()
        metrics.SCORE_SECONDS.observe(v.elapsed_ms / 1000.0)


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score one raw RFC 5322 message",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The raw message, as received (RFC 5322)",
            "content": {t: _BINARY for t in MESSAGE_TYPES},
        }
    },
)
async def score(
    request: Request,
    service: ServiceDep,
    _key: ScoreKey,
    ip: Annotated[str | None, Query(description="Client IP address")] = None,
    helo: Annotated[str | None, Query(description="HELO/EHLO name")] = None,
    mail_from: Annotated[str | None, Query(alias="from", description="MAIL FROM")] = None,
    rcpt: Annotated[list[str] | None, Query(description="RCPT TO (repeatable)")] = None,
    user: Annotated[str | None, Query(description="Authenticated user")] = None,
    hostname: Annotated[str | None, Query(description="Verified client host name")] = None,
    h_ip: Annotated[str | None, Header(alias="IP", include_in_schema=False)] = None,
    h_helo: Annotated[str | None, Header(alias="Helo", include_in_schema=False)] = None,
    h_from: Annotated[str | None, Header(alias="From", include_in_schema=False)] = None,
    h_rcpt: Annotated[list[str] | None, Header(alias="Rcpt", include_in_schema=False)] = None,
    h_user: Annotated[str | None, Header(alias="User", include_in_schema=False)] = None,
    h_hostname: Annotated[str | None, Header(alias="Hostname", include_in_schema=False)] = None,
) -> ScoreResponse:
    """Score a message; query parameters win over the rspamd-style headers."""
    if media_type(request) not in MESSAGE_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the raw message as {' or '.join(MESSAGE_TYPES)}",
        )
    try:
        envelope = EnvelopeIn(
            ip=ip or h_ip,
            helo=helo or h_helo,
            mail_from=mail_from or h_from,
            rcpt=rcpt or _split_rcpt(h_rcpt),
            user=user or h_user,
            hostname=hostname or h_hostname,
        )
    except ValidationError as exc:
        raise _bad_input(exc) from None
    raw = bytearray()
    async for chunk in request.stream():  # BodyLimitMiddleware caps what is read
        raw += chunk
    if not raw.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the request body (the message) is empty")
    verdict = await run_in_threadpool(service.score, bytes(raw), envelope.to_envelope())
    _record(request, [verdict])
    return ScoreResponse.from_verdict(verdict)


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
) -> BatchResponse:
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

    verdicts = await run_in_threadpool(run)
    _record(request, verdicts)
    return BatchResponse(
        results=[
            BatchResult(id=item_id, verdict=ScoreResponse.from_verdict(v))
            for (item_id, _, _), v in zip(items, verdicts, strict=True)
        ],
        elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
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
