"""``mailsift serve ...``: long-running servers. This module defines the ``serve`` group
(``serve_app``) and ``serve api``; other areas add their servers to ``serve_app`` (e.g.
``serve smtp`` from ``mailsift.commands.smtp``).

``serve api`` runs the HTTP API under uvicorn. With ``--workers N > 1`` uvicorn starts N
processes that each build the app from the environment / TOML settings
(``mailsift.api.app:app_from_env``) and share one store; Prometheus metrics are then kept in
multiprocess mode under ``<var_dir>/run/prometheus`` so ``/metrics`` counts every worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable
from typing import Annotated, Any

import typer

serve_app = typer.Typer(
    name="serve", help="Run the servers (HTTP API, SMTP filter).", no_args_is_help=True
)

APP_FACTORY = "mailsift.api.app:app_from_env"


def _prepare_multiprocess_metrics(var_dir: os.PathLike[str] | str) -> str:
    """A fresh directory for prometheus-client's multiprocess files (set before workers
    start: prometheus-client reads it at import)."""
    path = os.path.join(os.fspath(var_dir), "run", "prometheus")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


def _warm_rules_cache() -> None:
    """Load the rule set once, so its Hyperscan database is compiled and cached before the
    workers start (else every worker compiles the same database at the same time). It dies
    with the server process should that be stopped meanwhile."""
    from mailsift.classifier.scorer import load_rules
    from mailsift.lifecycle import die_with_parent

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)
    from mailsift.config import get_settings

    load_rules(get_settings())


@serve_app.command("api")
def serve_api(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: api.workers)")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="Log level (default: api.log_level)")
    ] = None,
) -> None:
    """Serve the scoring API (uvicorn)."""
    import uvicorn

    from mailsift.api.logs import log_config
    from mailsift.api.metrics import MULTIPROC_ENV
    from mailsift.config import get_settings

    settings = get_settings()
    n = workers or settings.api.workers
    level = (log_level or settings.api.log_level).upper()
    if log_level:  # the workers read their settings from the environment
        os.environ["MAILSIFT_API__LOG_LEVEL"] = level
    if n > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = _prepare_multiprocess_metrics(settings.paths.var_dir)
    # open (and migrate) the store once before the workers race to do it
    from mailsift.store import open_store_for

    open_store_for(settings).close()
    if n > 1:  # in a short-lived child: the supervisor process stays small
        warm = multiprocessing.get_context("spawn").Process(target=_warm_rules_cache)
        warm.start()
        warm.join()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host or settings.api.host,
        port=port or settings.api.port,
        workers=n,
        log_config=log_config(level),
        access_log=False,  # mailsift.api.middleware writes the access log (JSON)
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )


def log_to_stderr(level: str) -> None:
    """The servers' plain log lines on stderr at ``level`` (a Python level name), each with
    the process id after the logger's name (the workers of one command share the stream)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


def with_block(settings: Any, block: str, **values: Any) -> Any:
    """``settings`` with fields of one block replaced by the command's options; an option
    left unset (None) keeps the configured value."""
    updates = {k: v for k, v in values.items() if v is not None}
    if not updates:
        return settings
    return settings.model_copy(update={block: getattr(settings, block).model_copy(update=updates)})


def _started(server: Any, stop: Callable[[Any], None], reloads: bool) -> Any:
    """Start ``server``; with ``reloads``, follow the API's model reloads: the server's
    ``model_sync`` (None when it scores over HTTP), made before its model was loaded
    (``mailsift.api.reload``), calls its scoring service's ``reload_model``. Returns the
    function that stops both."""
    server.start()
    sync = getattr(server, "model_sync", None) if reloads else None
    if sync is not None:
        # the spamd server holds its scoring service; the SMTP filter and milter, a scorer
        service = getattr(server, "service", None) or server.scoring.service
        sync.start(service.reload_model)

    def halt() -> None:
        if sync is not None:
            sync.stop()
        stop(server)

    return halt


def serve_in_process(
    server: Any,
    stop: Callable[[Any], None],
    banner: Callable[[Any], None],
    *,
    reloads: bool = True,
) -> None:
    """One server in this process: start it, ``banner(server)``, serve until SIGTERM /
    SIGINT, then ``stop(server)``."""
    from mailsift.smtpd.workers import wait_for_signal

    halt = _started(server, stop, reloads)
    banner(server)
    wait_for_signal()
    halt()


def serve_with_workers(
    name: str,
    workers: int,
    settings: Any,
    build: Callable[[int], Any],
    stop: Callable[[Any], None],
    banner: Callable[[], None],
    *,
    reloads: bool = True,
    **supervise_args: Any,
) -> None:
    """A supervisor of ``workers`` processes (``mailsift.smtpd.workers``), each serving the
    server ``build(index)`` makes until SIGTERM, then ``stop(server)``. The store is opened
    (migrated) and the rules cache compiled once, in a helper child, before they start."""
    from mailsift.commands.smtp import prepare_workers
    from mailsift.smtpd.workers import serve_until_stopped, supervise

    def worker(index: int, ready: Any) -> int:
        return serve_until_stopped(None, _started(build(index), stop, reloads), ready)

    code = supervise(
        name,
        workers,
        worker,
        prepare=lambda: prepare_workers(settings),
        banner=banner,
        **supervise_args,
    )
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
