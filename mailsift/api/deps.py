"""FastAPI dependencies (``Annotated``): settings, the scoring service, the store, API keys.

``require_scope("score")`` checks the bearer token (RFC 6750): no or unknown token gives
401 with ``WWW-Authenticate: Bearer``; a valid key without the scope gives 403
(``error="insufficient_scope"``). With ``settings.api.require_keys = false`` every request
is let through (for a trusted loopback deployment only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from mailsift import outages
from mailsift.api.keys import ApiKey, ApiKeys
from mailsift.config import Settings
from mailsift.service import ScoringService
from mailsift.store.base import Store

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`mailsift keys create`) as a bearer token: "
    "`Authorization: Bearer msk_...`",
)

_REALM = 'Bearer realm="mailsift"'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the verified key (None when keys are not required)."""

    key: ApiKey | None

    @property
    def actor(self) -> str:
        return f"api-key:{self.key.key_id}" if self.key else "api"

    @property
    def trusted(self) -> bool:
        """A trusted reporter: an admin key or a key with the ``trusted`` scope."""
        return self.key is not None and self.key.trusted

    @property
    def reporter(self) -> str:
        """Who speaks, for rate caps and votes: a bound key's user, else the key."""
        if self.key is not None and self.key.owner:
            return self.key.owner.lower()
        return self.actor

    @property
    def delegate(self) -> bool:
        """A mail server's key that reports for the users it authenticates."""
        return self.key is not None and self.key.delegate

    def check_user(self, user: str, delegate_ok: bool = False) -> None:
        """A key bound to one user may act only for that user; a key bound to nobody acts
        for users only when it is an admin key, or (``delegate_ok``: feedback) a delegate
        key (403 otherwise). Without keys
        (``api.require_keys = false``, a trusted loopback set-up) anyone is let through."""
        key = self.key
        if key is None or key.allows("admin") or (delegate_ok and key.delegate and user):
            return
        if not key.owner:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this API key is bound to no user: it may not act for one "
                "(create it with --user, or with the trusted scope for global reports)",
            )
        if user.lower() != key.owner.lower():
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this API key may only act for {key.owner}"
            )


# The getters are ``async`` though they never wait: FastAPI runs a plain ``def`` dependency
# on its thread pool, a thread hop per request for a dictionary lookup.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def service_or_503(state: Any) -> ScoringService:
    """The app's scoring service (``app.state``), or 503 while it is not available."""
    service = state.service
    if service is None:
        outages.tempfail("api", "service_not_started", state.startup_error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the scoring service is not available: {state.startup_error}",
            headers={"Retry-After": "5"},
        )
    return service  # type: ignore[no-any-return]


async def get_service(request: Request) -> ScoringService:
    return service_or_503(request.app.state)


async def get_store(service: Annotated[ScoringService, Depends(get_service)]) -> Store:
    return service.store


def keys_or_503(state: Any) -> ApiKeys:
    keys = state.keys
    if keys is None:
        outages.tempfail("api", "keys_not_started")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the key store is not available",
            headers={"Retry-After": "5"},
        )
    return keys  # type: ignore[no-any-return]


async def get_keys(request: Request) -> ApiKeys:
    return keys_or_503(request.app.state)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, or None: what
    ``HTTPBearer(auto_error=False)`` (``bearer`` above) reads, for callers without it."""
    if not authorization:
        return None
    scheme, _, param = authorization.partition(" ")
    token = param.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    return token


async def authorize(
    state: Any, token: str | None, scope: str, req_state: dict[str, Any]
) -> Principal:
    """Admit a bearer ``token`` holding ``scope`` (``state``: ``app.state``; the key id goes
    into ``req_state``, the request's ``scope["state"]``, for the access log), else raise
    401/403 (503 without a key store). Shared by ``require_scope`` and the raw ASGI handler
    of ``POST /v1/score`` (``mailsift.api.routes.score.answer_score``)."""
    settings: Settings = state.settings
    if not settings.api.require_keys:
        return Principal(None)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": _REALM},
        )
    keys = keys_or_503(state)
    hit, key = keys.cached(token)
    if not hit:  # a store round trip: off the event loop
        key = await run_in_threadpool(keys.verify, token)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
        )
    req_state["key_id"] = key.key_id
    if not key.allows(scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this API key lacks the '{scope}' scope",
            headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'},
        )
    return Principal(key)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a request whose API key holds ``scope``."""

    async def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        token = creds.credentials if creds is not None else None
        return await authorize(
            request.app.state, token, scope, request.scope.setdefault("state", {})
        )

    check.__name__ = f"require_{scope}"
    return check


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[ScoringService, Depends(get_service)]
StoreDep = Annotated[Store, Depends(get_store)]
KeysDep = Annotated[ApiKeys, Depends(get_keys)]
ScoreKey = Annotated[Principal, Depends(require_scope("score"))]
FeedbackKey = Annotated[Principal, Depends(require_scope("feedback"))]
AdminKey = Annotated[Principal, Depends(require_scope("admin"))]
