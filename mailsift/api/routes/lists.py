"""Sender lists: a user's ``trusted``/``untrusted`` senders and the global ``allow``/
``block`` lists.

- ``GET|POST|DELETE /v1/lists/users/{user}/{kind}``: scope ``feedback`` (a key bound to a
  user may edit only that user's lists)
- ``GET|POST|DELETE /v1/lists/global/{kind}``: scope ``admin``

``DELETE`` takes the pattern as a query parameter (patterns hold ``*`` and ``@``). Every
change is audited (who, what, when).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from mailsift.api.deps import AdminKey, FeedbackKey, Principal, StoreDep
from mailsift.api.schemas import (
    ErrorResponse,
    GlobalListKind,
    ListChange,
    ListEntryIn,
    ListEntryOut,
    ListResponse,
    UserListKind,
)
from mailsift.store.base import ListEntry, Store

router = APIRouter(prefix="/v1/lists", tags=["lists"])

_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 422)}
# what a pattern may look like: an address, *@domain, a domain, an IP or a CIDR block
_PATTERN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@:\[\]-]+$")
User = Annotated[str, Path(min_length=1, max_length=320, description="The user (an address)")]
Pattern = Annotated[str, Query(min_length=1, max_length=512, description="The entry to remove")]


def _out(e: ListEntry) -> ListEntryOut:
    return ListEntryOut(
        kind=e.kind,
        pattern=e.pattern,
        owner=e.owner,
        created=e.created,
        added_by=e.added_by,
        comment=e.comment,
    )


def _check_pattern(pattern: str) -> str:
    p = pattern.strip()
    if not _PATTERN_RE.match(p) or p in {"*", "*@", "@"}:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "pattern must be an address, *@domain, a domain, an IP address or a CIDR block",
        )
    return p


def _add(
    store: Store, kind: str, owner: str, body: ListEntryIn, who: Principal, response: Response
) -> ListChange:
    entry = ListEntry(
        kind=kind,
        pattern=_check_pattern(body.pattern),
        owner=owner,
        created=time.time(),
        added_by=who.actor,
        comment=body.comment,
    )
    try:
        changed = store.lists.add(entry)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    store.audit.record(who.actor, "lists.add", f"{kind}:{owner}", {"pattern": entry.pattern})
    response.status_code = status.HTTP_201_CREATED if changed else status.HTTP_200_OK
    stored = next(
        (e for e in store.lists.entries(kind, owner) if e.pattern == entry.pattern.lower()), entry
    )
    return ListChange(changed=changed, entry=_out(stored))


def _remove(store: Store, kind: str, owner: str, pattern: str, who: Principal) -> ListChange:
    changed = store.lists.remove(kind, pattern, owner)
    if not changed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{pattern!r} is not on that list")
    store.audit.record(who.actor, "lists.remove", f"{kind}:{owner}", {"pattern": pattern})
    return ListChange(
        changed=True,
        entry=ListEntryOut(kind=kind, pattern=pattern, owner=owner, created=time.time()),
    )


# ---- per-user lists ------------------------------------------------------------------------


@router.get("/users/{user}/{kind}", response_model=ListResponse, responses=_ERRORS)
def user_list(user: User, kind: UserListKind, store: StoreDep, who: FeedbackKey) -> ListResponse:
    """A user's trusted or untrusted senders."""
    who.check_user(user)
    return ListResponse(entries=[_out(e) for e in store.lists.entries(kind, user)])


@router.post(
    "/users/{user}/{kind}",
    response_model=ListChange,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ListChange, "description": "Already there"}, **_ERRORS},
)
def user_list_add(
    user: User,
    kind: UserListKind,
    body: ListEntryIn,
    store: StoreDep,
    who: FeedbackKey,
    response: Response,
) -> ListChange:
    """Trust (or distrust) a sender for one user."""
    who.check_user(user)
    return _add(store, kind, user, body, who, response)


@router.delete(
    "/users/{user}/{kind}",
    response_model=ListChange,
    responses={404: {"model": ErrorResponse}, **_ERRORS},
)
def user_list_remove(
    user: User, kind: UserListKind, pattern: Pattern, store: StoreDep, who: FeedbackKey
) -> ListChange:
    who.check_user(user)
    return _remove(store, kind, user, pattern, who)


# ---- global lists --------------------------------------------------------------------------


@router.get("/global/{kind}", response_model=ListResponse, responses=_ERRORS)
def global_list(kind: GlobalListKind, store: StoreDep, _who: AdminKey) -> ListResponse:
    """The global allow or block list."""
    return ListResponse(entries=[_out(e) for e in store.lists.entries(kind, "")])


@router.post(
    "/global/{kind}",
    response_model=ListChange,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ListChange, "description": "Already there"}, **_ERRORS},
)
def global_list_add(
    kind: GlobalListKind, body: ListEntryIn, store: StoreDep, who: AdminKey, response: Response
) -> ListChange:
    return _add(store, kind, "", body, who, response)


@router.delete(
    "/global/{kind}",
    response_model=ListChange,
    responses={404: {"model": ErrorResponse}, **_ERRORS},
)
def global_list_remove(
    kind: GlobalListKind, pattern: Pattern, store: StoreDep, who: AdminKey
) -> ListChange:
    return _remove(store, kind, "", pattern, who)
