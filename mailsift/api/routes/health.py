"""``GET /healthz`` (the process answers), ``GET /readyz`` (model loaded, store reachable)
and ``GET /metrics`` (Prometheus text format). None of them needs an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mailsift.api import metrics
from mailsift.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: a model is loaded and the store answers",
    responses={503: {"model": ReadyResponse, "description": "Not ready"}},
)
def readyz(request: Request) -> Response:
    service = request.app.state.service
    model_loaded, store_ok, version, detail = False, False, None, ""
    down: list[str] = []
    if service is None:
        detail = f"scoring service not started: {request.app.state.startup_error}"
    else:
        version = service.model_version or None
        model_loaded = bool(version)
        store = service.store
        dependency = "postgresql" if store.dialect == "postgresql" else "sqlite"
        try:  # within the store's deadlines (a few seconds at most when it is away)
            store.probe()
            store_ok = True
        except Exception as exc:  # unreachable store: not ready, naming it and why
            detail = f"{dependency} store unreachable: {exc}"
        if not store_ok:
            down.append(dependency)
            detail = detail or f"{dependency} store unreachable"
        if not model_loaded:
            detail = detail or "no model loaded"
    body = ReadyResponse(
        ready=model_loaded and store_ok,
        model_loaded=model_loaded,
        store_reachable=store_ok,
        model_version=version,
        detail=detail,
        down=down,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus_metrics() -> Response:
    data, content_type = metrics.render()
    return Response(content=data, media_type=content_type)
