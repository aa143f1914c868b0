"""``GET /v1/models`` (serving model, champion, registered versions with metrics) and
``POST /v1/models/reload`` (admin: load the current serving model and swap it in; requests
in flight finish on the model they started with; other workers follow, see
``mailsift.api.reload``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from mailsift.api import metrics
from mailsift.api.deps import AdminKey, ScoreKey, ServiceDep, SettingsDep
from mailsift.api.logs import log_event
from mailsift.api.schemas import ErrorResponse, ModelInfo, ModelsResponse, ReloadResponse

router = APIRouter(prefix="/v1", tags=["models"])
log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 503)}


def _numbers(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {str(k): float(v) for k, v in d.items() if isinstance(v, int | float)}


def _from_registry(v: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        version=str(v["version"]),
        path=v.get("local_dir"),
        kind=v.get("kind"),
        metrics=_numbers(v.get("metrics")),
        aliases=list(v.get("aliases") or []),
        source="mlflow",
    )


@router.get("/models", response_model=ModelsResponse, summary="Models", responses=_ERRORS)
def list_models(service: ServiceDep, settings: SettingsDep, _key: ScoreKey) -> ModelsResponse:
    # imported here, not with the module: the registry pulls in MLflow, the scorer sklearn
    from mailsift.pipeline import registry

    manifest: dict[str, Any] = getattr(service.scorer.model, "manifest", None) or {}
    try:
        path: str | None = str(registry.serving_model_dir(settings))
    except registry.NoModelError:
        path = None
    serving = ModelInfo(
        version=service.model_version,
        path=path,
        kind=manifest.get("kind"),
        metrics=_numbers(manifest.get("metrics")),
        source=str(manifest.get("source") or "local"),
    )
    try:
        versions = [_from_registry(v) for v in registry.list_versions(settings)]
    except Exception as exc:  # a broken registry must not break the listing
        log_event(log, "model registry unavailable", logging.WARNING, error=str(exc))
        versions = []
    champion = next((v for v in versions if settings.mlflow.champion_alias in v.aliases), None)
    return ModelsResponse(serving=serving, champion=champion, versions=versions)


@router.post(
    "/models/reload",
    response_model=ReloadResponse,
    summary="Reload the serving model (admin)",
    responses=_ERRORS,
)
def reload_model(request: Request, service: ServiceDep, principal: AdminKey) -> ReloadResponse:
    previous = service.model_version
    try:
        service.reload_model()
    except Exception as exc:  # the old model keeps serving
        log_event(log, "model reload failed", logging.ERROR, error=str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"reload failed, still serving {previous}: {exc}"
        ) from None
    sync = request.app.state.model_sync
    if sync is not None:
        sync.bump()
    current = service.model_version
    metrics.set_model_version(current)
    log_event(log, "model reloaded", actor=principal.actor, previous=previous, version=current)
    return ReloadResponse(previous_version=previous, version=current, changed=current != previous)
