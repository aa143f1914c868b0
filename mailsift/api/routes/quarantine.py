"""``/v1/quarantine``: the held mail as JSON, for scripts and other front ends.

Scopes: an ``admin`` key sees and acts on every entry; a ``feedback`` key bound to one user
(``owner``) sees and acts on that user's entries only (list, show, release, delete, learn).
Purging is for ``admin`` keys. The same ``mailsift.quarantine.Quarantine`` as the web pages
and the CLI does the work, so every action is audited with the key id as the actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from mailsift.api.deps import AdminKey, Principal, require_scope
from mailsift.api.schemas import ErrorResponse
from mailsift.api.ui.context import quarantine_for
from mailsift.quarantine import (
    DELETED,
    SORT_KEYS,
    ActionResult,
    Quarantine,
    QuarantineEntry,
    QuarantineError,
    QuarantineQuery,
)
from mailsift.review import explanation, message_view

router = APIRouter(prefix="/v1/quarantine", tags=["quarantine"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse} for c in (400, 401, 403, 404, 409, 422, 502, 503)
}


class EntryOut(BaseModel):
    id: str
    verdict_id: str
    sender: str
    recipients: list[str]
    subject: str
    from_header: str
    score: float
    probability: float
    status: str
    size: int
    created: float
    expires: float
    released_at: float | None = None
    released_by: str | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None
    label: str | None = None
    last_error: str | None = None


class EntryList(BaseModel):
    total: int
    entries: list[EntryOut]


class Explanation(BaseModel):
    reason: str = ""
    model_version: str = ""
    list_decision: str | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list)
    tokens: list[dict[str, Any]] = Field(default_factory=list)


class MessageText(BaseModel):
    headers: list[tuple[str, str]]
    body: str
    body_source: str
    links: list[str]
    attachments: list[dict[str, Any]]


class EntryDetail(EntryOut):
    explanation: Explanation
    message: MessageText | None = None


class ActionOut(BaseModel):
    id: str
    action: str
    ok: bool
    status: str
    detail: str = ""
    already: bool = False


class LearnIn(BaseModel):
    label: Literal["spam", "ham"]
    trust_sender: bool = False
    untrust_sender: bool = False


class BulkIn(BaseModel):
    action: Literal["release", "delete", "spam", "ham"]
    ids: list[str] = Field(min_length=1, max_length=500)
    trust_sender: bool = False
    untrust_sender: bool = False


class BulkOut(BaseModel):
    ok: int
    failed: int
    results: list[ActionOut]


class PurgeOut(BaseModel):
    purged: int


async def reviewer(
    request: Request, who: Annotated[Principal, Depends(require_scope("feedback"))]
) -> Principal:
    """admin keys, or feedback keys bound to one user."""
    if who.key is not None and not who.key.allows("admin") and not who.key.owner:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the quarantine needs an admin key or a feedback key bound to one user",
        )
    return who


Reviewer = Annotated[Principal, Depends(reviewer)]


def _q(request: Request) -> Quarantine:
    return quarantine_for(request.app.state)


def _user(who: Principal) -> str | None:
    if who.key is None or who.key.allows("admin"):
        return None
    return who.key.owner.lower()


def _out(e: QuarantineEntry) -> EntryOut:
    return EntryOut(**{k: getattr(e, k) for k in EntryOut.model_fields})


def _act(r: ActionResult) -> ActionOut:
    return ActionOut(
        id=r.id, action=r.action, ok=r.ok, status=r.status, detail=r.detail, already=r.already
    )


def _fail(exc: QuarantineError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def _entry(request: Request, who: Principal, qid: str) -> QuarantineEntry:
    try:
        return _q(request).get(qid, _user(who))
    except QuarantineError as exc:
        raise _fail(exc) from None


def _act_on(
    request: Request, who: Principal, qid: str, action: Callable[[Quarantine], ActionResult]
) -> ActionOut:
    """One action on entry ``qid``: the look-up's HTTP error unless ``who`` sees it, the
    quarantine's refusal as its HTTP error, else the action's result."""
    _entry(request, who, qid)
    try:
        return _act(action(_q(request)))
    except QuarantineError as exc:
        raise _fail(exc) from None


@router.get("", response_model=EntryList, responses=_ERRORS)
def list_entries(
    request: Request,
    who: Reviewer,
    recipient: Annotated[str | None, Query(max_length=254)] = None,
    sender: Annotated[str | None, Query(max_length=254)] = None,
    subject: Annotated[str | None, Query(max_length=254)] = None,
    min_score: float | None = None,
    max_score: float | None = None,
    since: float | None = None,
    until: float | None = None,
    status_: Annotated[
        list[Literal["held", "releasing", "released", "deleted"]] | None, Query(alias="status")
    ] = None,
    sort: Annotated[str, Query(pattern="^(" + "|".join(SORT_KEYS) + ")$")] = "created",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EntryList:
    """Held messages, newest first; filters combine with AND."""
    q = QuarantineQuery(
        recipient=recipient,
        sender=sender,
        subject=subject,
        min_score=min_score,
        max_score=max_score,
        since=since,
        until=until,
        statuses=tuple(status_ or ()),
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )
    entries, total = _q(request).list(_user(who), q)
    return EntryList(total=total, entries=[_out(e) for e in entries])


@router.get("/{qid}", response_model=EntryDetail, responses=_ERRORS)
def show(request: Request, who: Reviewer, qid: str) -> EntryDetail:
    """One entry, its verdict's explanation and the message as plain text."""
    e = _entry(request, who, qid)
    msg = None
    if e.status != DELETED:
        try:
            v = message_view(_q(request).raw(qid))
            msg = MessageText(
                headers=v.headers,
                body=v.body,
                body_source=v.body_source,
                links=[link["url"] for link in v.links],
                attachments=v.attachments,
            )
        except QuarantineError:
            msg = None
    return EntryDetail(
        **_out(e).model_dump(), explanation=Explanation(**explanation(e)), message=msg
    )


@router.post("/{qid}/release", response_model=ActionOut, responses=_ERRORS)
def release(request: Request, who: Reviewer, qid: str) -> ActionOut:
    """Deliver to the original recipients through the next hop (once)."""
    return _act_on(request, who, qid, lambda q: q.release(qid, who.actor))


@router.post("/{qid}/delete", response_model=ActionOut, responses=_ERRORS)
def delete(request: Request, who: Reviewer, qid: str) -> ActionOut:
    """Delete the held message (the entry stays, marked deleted, until it expires)."""
    return _act_on(request, who, qid, lambda q: q.delete(qid, who.actor))


@router.post("/{qid}/learn", response_model=ActionOut, responses=_ERRORS)
def learn(request: Request, who: Reviewer, qid: str, body: LearnIn) -> ActionOut:
    """ "ham": teach ham and release (optionally trust the sender); "spam": teach spam
    (optionally untrust the sender)."""
    user = _user(who)
    return _act_on(
        request,
        who,
        qid,
        lambda q: q.learn(
            qid,
            body.label,
            who.actor,
            trust_sender=body.trust_sender,
            untrust_sender=body.untrust_sender,
            users=[user] if user else None,
            reporter=user or who.actor,
            trusted=user is None,  # an admin key (or no keys): a global lesson
        ),
    )


@router.post("/bulk", response_model=BulkOut, responses=_ERRORS)
def bulk(request: Request, who: Reviewer, body: BulkIn) -> BulkOut:
    """One action over many entries; each reports its own outcome."""
    q = _q(request)
    user = _user(who)
    ids = [i for i in body.ids if _visible(q, i, user)]
    kw: dict[str, Any] = {}
    if body.action in ("spam", "ham"):
        kw = {
            "trust_sender": body.trust_sender,
            "untrust_sender": body.untrust_sender,
            "users": [user] if user else None,
            "reporter": user or who.actor,
            "trusted": user is None,  # an admin key (or no keys): a global lesson
        }
    try:
        res = q.bulk(body.action, ids, who.actor, **kw)
    except QuarantineError as exc:
        raise _fail(exc) from None
    hidden = [
        ActionOut(id=i, action=body.action, ok=False, status="", detail="not found")
        for i in body.ids
        if i not in ids
    ]
    results = [_act(r) for r in res.results] + hidden
    return BulkOut(ok=res.ok, failed=res.failed + len(hidden), results=results)


def _visible(q: Quarantine, qid: str, user: str | None) -> bool:
    try:
        q.get(qid, user)
    except QuarantineError:
        return False
    return True


@router.post("/purge", response_model=PurgeOut, responses=_ERRORS)
def purge(request: Request, who: AdminKey) -> PurgeOut:
    """Remove expired entries now (the same job runs on a schedule)."""
    return PurgeOut(purged=_q(request).purge())
