"""Sender lists: a user's ``trusted``/``untrusted`` senders and the global ``allow``/
``block`` lists.

- ``GET|POST|DELETE /v1/lists/users/{user}/{kind}``: scope ``feedback`` (a key bound to a
  user may edit only that user's lists)
- ``GET|POST|DELETE /v1/lists/global/{kind}``: scope ``admin``

``DELETE`` takes the pattern as a query parameter (patterns hold ``*`` and ``@``). Patterns
are validated and every change is audited by ``mailsift.store.lists.StoreListPolicy``.
Workers other than the one that took the change see it within the policy's cache time
(``StoreListPolicy.ttl``, 2 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from mailsift.api.deps import AdminKey, FeedbackKey, Principal, ServiceDep
from mailsift.api.schemas import (
    ErrorResponse,
    GlobalListKind,
    ListChange,
    ListEntryIn,
    ListEntryOut,
    ListResponse,
    UserListKind,
)
from mailsift.service import ScoringService
from mailsift.store.base import ListEntry
from mailsift.store.lists import normalize_address, validate_pattern

router = APIRouter(prefix="/v1/lists", tags=["lists"])
_Route = TypeVar("_Route", bound=Callable[..., Any])

_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 422)}
_ADD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ListChange, "description": "Already there"},
    **_ERRORS,
}
_REMOVE_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}, **_ERRORS}
User = Annotated[str, Path(min_length=1, max_length=320, description="The user (an address)")]
Pattern = Annotated[str, Query(min_length=1, max_length=512, description="The entry to remove")]


def _adds(path: str) -> Callable[[_Route], _Route]:
    """The POST route adding to the list at ``path``: 201, or 200 when already there."""
    return router.post(
        path,
        response_model=ListChange,
        status_code=status.HTTP_201_CREATED,
        responses=_ADD_RESPONSES,
    )


def _removes(path: str) -> Callable[[_Route], _Route]:
    """The DELETE route removing from the list at ``path``: 404 when not there."""
    return router.delete(path, response_model=ListChange, responses=_REMOVE_RESPONSES)


def _out(e: ListEntry) -> ListEntryOut:
    return ListEntryOut(
        kind=e.kind,
        pattern=e.pattern,
        owner=e.owner,
        created=e.created,
        added_by=e.added_by,
        comment=e.comment,
    )


def _entries(service: ScoringService, kind: str, owner: str) -> list[ListEntry]:
    return service.lists.entries(kind=kind, owner=normalize_address(owner) if owner else "")


def _add(
    service: ScoringService,
    kind: str,
    owner: str,
    body: ListEntryIn,
    who: Principal,
    response: Response,
) -> ListChange:
    try:
        pattern = validate_pattern(body.pattern)
        changed = service.lists.add(kind, pattern, owner, actor=who.actor, comment=body.comment)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    response.status_code = status.HTTP_201_CREATED if changed else status.HTTP_200_OK
    stored = next((e for e in _entries(service, kind, owner) if e.pattern == pattern), None)
    if stored is None:  # removed again in between
        stored = ListEntry(kind, pattern, owner, time.time(), who.actor, body.comment)
    return ListChange(changed=changed, entry=_out(stored))


def _remove(
    service: ScoringService, kind: str, owner: str, pattern: str, who: Principal
) -> ListChange:
    try:
        changed = service.lists.remove(kind, pattern, owner, actor=who.actor)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if not changed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{pattern!r} is not on that list")
    return ListChange(
        changed=True,
        entry=ListEntryOut(kind=kind, pattern=pattern, owner=owner, created=time.time()),
    )


# ---- per-user lists ------------------------------------------------------------------------


@router.get("/users/{user}/{kind}", response_model=ListResponse, responses=_ERRORS)
def user_list(
    user: User, kind: UserListKind, service: ServiceDep, who: FeedbackKey
) -> ListResponse:
    """A user's trusted or untrusted senders."""
    who.check_user(user)
    return ListResponse(entries=[_out(e) for e in _entries(service, kind, user)])


@_adds("/users/{user}/{kind}")
def user_list_add(
    user: User,
    kind: UserListKind,
    body: ListEntryIn,
    service: ServiceDep,
    who: FeedbackKey,
    response: Response,
) -> ListChange:
    """Trust (or distrust) a sender for one user."""
    who.check_user(user)
    return _add(service, kind, user, body, who, response)


@_removes("/users/{user}/{kind}")
def user_list_remove(
    user: User, kind: UserListKind, pattern: Pattern, service: ServiceDep, who: FeedbackKey
) -> ListChange:
    who.check_user(user)
    return _remove(service, kind, user, pattern, who)


# ---- global lists --------------------------------------------------------------------------


@router.get("/global/{kind}", response_model=ListResponse, responses=_ERRORS)
def global_list(kind: GlobalListKind, service: ServiceDep, _who: AdminKey) -> ListResponse:
    """The global allow or block list."""
    return ListResponse(entries=[_out(e) for e in _entries(service, kind, "")])


@_adds("/global/{kind}")
def global_list_add(
    kind: GlobalListKind, body: ListEntryIn, service: ServiceDep, who: AdminKey, response: Response
) -> ListChange:
    return _add(service, kind, "", body, who, response)


@_removes("/global/{kind}")
def global_list_remove(
    kind: GlobalListKind, pattern: Pattern, service: ServiceDep, who: AdminKey
) -> ListChange:
    return _remove(service, kind, "", pattern, who)
