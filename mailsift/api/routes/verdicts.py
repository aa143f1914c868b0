"""``GET /v1/verdicts/{verdict_id}``: a recorded verdict (scope ``score``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from mailsift.api.deps import ScoreKey, StoreDep
from mailsift.api.schemas import ErrorResponse, RuleHit, VerdictOut
from mailsift.store.verdicts import find_verdict

router = APIRouter(prefix="/v1", tags=["verdicts"])


@router.get(
    "/verdicts/{verdict_id}",
    response_model=VerdictOut,
    summary="A recorded verdict",
    responses={c: {"model": ErrorResponse} for c in (401, 403, 404, 422)},
)
def get_verdict(
    verdict_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")],
    store: StoreDep,
    _key: ScoreKey,
) -> VerdictOut:
    rec = find_verdict(store.verdicts, verdict_id)  # a recent id may be on its way
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no verdict {verdict_id}")
    return VerdictOut(
        verdict_id=rec.verdict_id,
        created=rec.created,
        digest=rec.digest,
        score=rec.score,
        probability=rec.probability,
        action=rec.action,
        model_version=rec.model_version,
        recipients=list(rec.recipients),
        sender=rec.sender,
        client_ip=rec.client_ip,
        rules=[RuleHit(name=name, score=score) for name, score in rec.rules],
        list_decision=rec.list_decision,
        reason=rec.reason,
    )
