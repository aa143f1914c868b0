"""The FastAPI application: ``create_app(settings, service=None)``.

Routes live in ``mailsift.api.routes.<resource>`` (the web pages in ``mailsift.api.ui.routes``);
dependencies in ``mailsift.api.deps``. ``create_app`` names every router it includes.
The app owns, per worker process: the scoring service (built at start-up unless one is
given), the API key store, and the model-generation watcher that makes every worker follow
a model reload. ``app_from_env()`` is the factory uvicorn workers import
(``mailsift.api.app:app_from_env``): it reads settings from the environment / TOML file.

Middleware (pure ASGI, outermost first): keep-alive recycling, request metrics + JSON
access log, the body size limit, the security headers of the web UI.
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mailsift import outages
from mailsift.api import metrics
from mailsift.api.docs import install_docs
from mailsift.api.keys import ApiKeys
from mailsift.api.logs import log_event
from mailsift.api.middleware import BodyLimitMiddleware, ObserveMiddleware, RecycleMiddleware
from mailsift.api.reload import ModelSync, generation_file
from mailsift.api.routes import feedback, health, lists, models, quarantine, score, verdicts
from mailsift.api.schemas import BatchRequest
from mailsift.api.ui import routes as ui_routes
from mailsift.api.ui.security import UiHeadersMiddleware
from mailsift.config import Settings, get_settings
from mailsift.process import lean_process, resolve_serving_model, trim_heap
from mailsift.service import ScoringService
from mailsift.store import Store, StoreError, open_store_for
from mailsift.store.verdicts import Item, VerdictWriter

log = logging.getLogger("mailsift.api")

# Threads per worker. Scoring holds the GIL (but for Hyperscan scans), so more scoring
# threads add no CPU, only per-thread Hyperscan scratch memory and GIL hand-offs. Verdict
# records are written by one writer thread per worker (``VerdictWriter``), in batches.
SCORE_THREADS = 1
# the verdict writer: a store that refuses a batch is tried again after 0.1 s, doubling up
# to 0.5 s (scoring answers 503 meanwhile and resumes within half a second of the store's
# return); at shutdown, queued records are written for up to WRITER_CLOSE_SECONDS
WRITER_RETRY = (0.1, 0.5)
WRITER_CLOSE_SECONDS = 10.0
# requests a keep-alive connection carries before the server closes it (spreads the
# connections of long-lived clients over the workers: see RecycleMiddleware)
KEEPALIVE_REQUESTS = 100
# seconds a client is asked to wait (Retry-After) when the store is unavailable
STORE_RETRY_AFTER = 2
# validation errors listed in one 422 answer
MAX_VALIDATION_ERRORS = 20

DESCRIPTION = """\
Score email for spam, explain the verdict, and learn from users' reports.

Authenticate with an API key as a bearer token (`mailsift keys create`). Scopes: `score`,
`feedback`, `admin` (admin implies the others).
"""


def _start(app: FastAPI, settings: Settings) -> None:
    """Build what the worker needs (runs in a thread: loading a model is slow). Without a
    model the worker still serves /healthz, /readyz (503, with the reason) and API keys."""
    sync: ModelSync | None = None
    if app.state.service is None:
        store: Store = open_store_for(settings)
        app.state.store = store
        app.state.keys = ApiKeys(store, settings.api.key_cache_seconds)
        # the generation is read before the model is loaded (mailsift.api.reload)
        sync = _model_sync(settings, store)
        try:
            app.state.service = ScoringService(
                settings, store=store, model_resolver=resolve_serving_model
            )
        except Exception as exc:
            app.state.startup_error = str(exc) or type(exc).__name__
            log_event(log, "scoring service failed to start", logging.ERROR, error=str(exc))
            return
    service: ScoringService = app.state.service
    if sync is None:  # a service handed in: its model is loaded already
        sync = _model_sync(settings, service.store)
    # The model and the compiled rules are long-lived: move them out of the cyclic GC's
    # reach, or every collection walks them (parsing ran ~4x slower without this).
    gc.collect()
    gc.freeze()
    trim_heap()  # loading the model leaves ~50 MB of freed heap behind
    if app.state.keys is None:
        app.state.keys = ApiKeys(service.store, settings.api.key_cache_seconds)
    metrics.set_model_version(service.model_version)

    def follow() -> None:
        service.reload_model()
        trim_heap()
        metrics.set_model_version(service.model_version)

    sync.start(follow)
    app.state.model_sync = sync
    log_event(log, "api worker ready", pid=os.getpid(), model_version=service.model_version)


def _model_sync(settings: Settings, store: Store) -> ModelSync:
    return ModelSync(
        generation_file(settings.paths.var_dir), settings.api.reload_poll_seconds, store=store
    )


def _verdict_writer(app: FastAPI) -> VerdictWriter:
    """The worker's verdict writer, writing to the store of the service scoring now."""

    def write_many(items: list[Item]) -> None:
        service: ScoringService | None = app.state.service
        if service is None:
            raise StoreError("no scoring service: the worker did not start")
        service.store.verdicts.add_many(items)

    def exists(verdict_id: str) -> bool:
        service: ScoringService | None = app.state.service
        return service is not None and service.store.verdicts.get(verdict_id) is not None

    first, most = WRITER_RETRY
    return VerdictWriter(
        write_many, retry_initial=first, retry_max=most, name="verdicts", exists=exists
    )


def _stop(app: FastAPI) -> None:
    if app.state.model_sync is not None:
        app.state.model_sync.stop()
    if app.state.store is not None:  # ours (the service was built on it)
        app.state.store.close()
    metrics.mark_worker_dead(os.getpid())


def _document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add request models that routes read by hand (e.g. the batch JSON body, parsed after a
    content-type switch) to the OpenAPI components, so ``$ref`` to them resolve."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in js.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas.setdefault(model.__name__, js)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Where and why a request is invalid, without the offending input: pydantic's errors
    carry the input value (for invalid JSON the whole body, for an over-long batch the whole
    list of messages), which a 422 must not send back. ``loc``, ``msg`` and ``type`` only, and
    at most ``MAX_VALIDATION_ERRORS`` of them (then one entry saying how many were left out):
    a batch of thousands of bad messages gets a short answer."""
    errors = list(errors)
    out: list[dict[str, Any]] = [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:MAX_VALIDATION_ERRORS]
    ]
    if len(errors) > MAX_VALIDATION_ERRORS:
        more = len(errors) - MAX_VALIDATION_ERRORS
        out.append({"loc": [], "msg": f"and {more} more errors", "type": "too_many_errors"})
    return out


def create_app(settings: Settings, service: ScoringService | None = None) -> FastAPI:
    """The API for ``settings``; with ``service`` given, the caller owns (and closes) it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_start, app, settings)
        app.state.score_executor = ThreadPoolExecutor(SCORE_THREADS, thread_name_prefix="score")
        app.state.verdict_writer = _verdict_writer(app)
        try:
            yield
        finally:
            app.state.score_executor.shutdown(wait=False)
            app.state.score_executor = None
            writer, app.state.verdict_writer = app.state.verdict_writer, None
            await run_in_threadpool(writer.close, WRITER_CLOSE_SECONDS)
            await run_in_threadpool(_stop, app)

    app = FastAPI(
        title="mailsift",
        version=importlib.metadata.version("mailsift"),
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # /docs from the package's own assets (install_docs), no CDN; no /redoc
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.keys = None
    app.state.store = None
    app.state.model_sync = None
    app.state.startup_error = ""
    app.state.score_executor = None
    app.state.verdict_writer = None

    # the scoring routes are the app router's own (first, so matched first): included, a
    # route is matched twice per request, through FastAPI's include wrappers
    app.router.routes.extend(score.router.routes)
    for module in (feedback, lists, verdicts, models, health):
        app.include_router(module.router)
    # the review web pages (/ui, with their security headers) and the quarantine's JSON API
    app.add_middleware(UiHeadersMiddleware)
    app.include_router(ui_routes.router)
    app.include_router(quarantine.router)
    install_docs(app)
    _document_models(app, BatchRequest)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # fail closed (key checks and rate caps included): 503 + Retry-After, never a 500;
        # counted and logged (a few lines per outage, not one per request) by outages
        outages.tempfail("api", "store", f"{request.url.path}: {exc}")
        return JSONResponse(
            {"detail": "the store is unavailable: try again later"},
            status_code=503,
            headers={"Retry-After": str(STORE_RETRY_AFTER)},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"fields": {"path": request.url.path, "error": type(exc).__name__}},
        )
        return JSONResponse({"detail": "internal error (logged)"}, status_code=500)

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api.max_body_bytes,
        body_timeout=settings.api.body_timeout,
    )
    app.add_middleware(ObserveMiddleware)
    app.add_middleware(RecycleMiddleware, max_requests=KEEPALIVE_REQUESTS)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory mailsift.api.app:app_from_env``): settings from the
    environment and the TOML file, the service built in each worker."""
    from logging.config import dictConfig

    from mailsift.api.logs import lean_logging, log_config

    lean_process()  # before anything imports scikit-learn (in _start)
    settings = get_settings()
    dictConfig(log_config(settings.api.log_level))
    lean_logging()
    return create_app(settings)
