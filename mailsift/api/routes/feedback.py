"""``POST /v1/feedback``: a user says a message is spam or ham (scope ``feedback``).

Give either the verdict id of an earlier scoring (the store kept the message) or the raw
message itself (base64). Who learns what (``mailsift.learning.feedback``):

- a key bound to a user (``mailsift keys create --user U``): the report is U's (``user``
  in the body must be U, or be left out): U's own mail follows it at once, and it is one
  vote towards a global lesson; U's reports are rate-capped per hour;
- an admin key or a key with the ``trusted`` scope: a trusted global lesson at once
  (``user`` is recorded as whose message it was);
- a ``delegate`` key (a mail server's learn pipe): the named user's own report, as if they
  had a bound key; every vote it relays counts as one domain;
- a feedback key bound to no user: 403, it may not speak for users.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from mailsift.api.deps import FeedbackKey, ServiceDep
from mailsift.api.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse, decode_b64

router = APIRouter(prefix="/v1", tags=["feedback"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse} for c in (401, 403, 404, 413, 422, 429, 503)
}


@router.post("/feedback", response_model=FeedbackResponse, responses=_ERRORS)
def feedback(
    request: Request, body: FeedbackRequest, service: ServiceDep, who: FeedbackKey
) -> FeedbackResponse:
    """Report a message as spam or ham."""
    if (body.verdict_id is None) == (body.message is None):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give exactly one of verdict_id or message"
        )
    user = body.user or (who.key.owner if who.key else "")
    trusted = who.trusted
    if not trusted:
        who.check_user(user or "", delegate_ok=True)
    if not user:
        user = who.actor if trusted else ""
    if not user:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "say who reports it: user")
    raw = decode_b64(body.message) if body.message is not None else None
    if raw is not None and not raw.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the message is empty")
    if body.verdict_id is not None and service.verdict(body.verdict_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no verdict {body.verdict_id}")
    from mailsift.learning.feedback import FeedbackError  # not at import: sklearn

    try:
        result = service.feedback(
            body.label,
            user,
            verdict_id=body.verdict_id,
            raw=raw,
            source="api",
            # a delegate's report is the named user's; its votes count as one domain
            reporter=None if who.key is None or who.delegate else who.reporter,
            trusted=trusted,
            via=who.actor if who.delegate and not trusted else None,
        )
    except FeedbackError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if result.status == "rate_limited":
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"feedback rate cap reached: {result.detail or 'try again later'}",
            headers={"Retry-After": "60"},
        )
    request.state.verdict_ids = [body.verdict_id] if body.verdict_id else None
    return FeedbackResponse(
        status=result.status,
        digest=result.digest,
        label=body.label,
        verdict_id=result.verdict_id,
        feedback_id=result.feedback_id,
        scope=result.scope,
        votes=result.votes,
        detail=result.detail,
    )
