"""``mailsift serve spamd [--host H] [--port P] [--allow-tell] [--tls-cert C --tls-key K]``:
SpamAssassin's spamd protocol (``spamc``, Exim's ``spamd_address``, amavis...) in the
foreground until SIGINT/SIGTERM, scoring with ``mailsift.service.ScoringService`` in this
process (the same scorer, lists and learner as the API and the SMTP filter). Settings: the
``spamd`` block (``mailsift.config.SpamdSettings``); options override it.

With ``spamd.workers`` (``--workers``; 0, the default: one per CPU core) above 1, the
command supervises that many worker processes on the port it binds
(``mailsift.smtpd.workers``: the rules cache compiled once first, a dead worker restarted,
SIGTERM stops them all); each worker is a whole ``SpamdServer`` with its own scorer.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated, Any

import typer

from mailsift.commands.serve import serve_app


def build_spamd(settings: Any, sock: Any = None) -> Any:
    """The SpamdServer over a ScoringService built from settings (not started); ``sock``:
    the listening socket a worker inherited."""
    from mailsift.api.reload import ModelSync, generation_file
    from mailsift.process import resolve_serving_model, trim_heap
    from mailsift.service import ScoringService
    from mailsift.spamd.server import SpamdServer
    from mailsift.store import open_store_for

    store = open_store_for(settings)
    # made before the model loads, so a reload announced meanwhile is followed
    sync = ModelSync(
        generation_file(settings.paths.var_dir), settings.api.reload_poll_seconds, store=store
    )
    # the champion is looked up in a child process, as the API workers and the SMTP filter
    # do: MLflow never enters this process
    service = ScoringService(settings, store=store, model_resolver=resolve_serving_model)
    gc.freeze()  # long-lived model and rules: keep them out of every GC pass
    trim_heap()
    return SpamdServer(settings, service, sock=sock, model_sync=sync)


@serve_app.command("spamd")
def serve_spamd(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: spamd.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: spamd.port, 783)")] = None,
    allow_tell: Annotated[
        bool | None,
        typer.Option("--allow-tell/--no-allow-tell", help="Accept TELL (spamc -L) reports"),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (spamc -S)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS key")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Worker processes (default: spamd.workers; 0: one per core)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level")] = "INFO",
) -> None:
    """Serve the spamd protocol (foreground; Ctrl-C stops it)."""
    from mailsift.commands.serve import log_to_stderr, serve_in_process, with_block
    from mailsift.config import get_settings

    log_to_stderr(log_level)
    settings = with_block(
        get_settings(),
        "spamd",
        host=host,
        port=port,
        allow_tell=allow_tell,
        tls_cert=tls_cert,
        tls_key=tls_key,
        workers=workers,
    )
    if bool(settings.spamd.tls_cert) != bool(settings.spamd.tls_key):
        raise typer.BadParameter("give both a TLS certificate and its key")
    from mailsift.smtpd.workers import default_workers

    n = settings.spamd.workers or default_workers()
    if n > 1:
        serve_workers(settings, n)
        return
    serve_in_process(
        build_spamd(settings),
        _stop,
        lambda server: _banner(settings, server.port, 1),
    )


def _stop(server: Any) -> None:
    server.stop()
    server.service.close()
    server.service.store.close()  # opened by build_spamd, shared with the model sync


def _banner(settings: Any, port: int | None, workers: int) -> None:
    typer.echo(
        f"mailsift spamd on {settings.spamd.host}:{port}"
        + (" (TLS)" if settings.spamd.tls_cert and settings.spamd.tls_key else "")
        + (", TELL on" if settings.spamd.allow_tell else ", TELL off")
        + (f", {workers} workers" if workers > 1 else "")
    )


def serve_workers(settings: Any, n: int) -> None:
    """``serve spamd`` as a supervisor of ``n`` workers on one listening socket."""
    from mailsift.commands.serve import serve_with_workers
    from mailsift.smtpd.workers import listen_socket

    sock = listen_socket(settings.spamd.host, settings.spamd.port)
    port = sock.getsockname()[1]
    serve_with_workers(
        "spamd",
        n,
        settings,
        lambda _index: build_spamd(settings, sock=sock),
        _stop,
        lambda: _banner(settings, port, n),
    )


def register(app: typer.Typer) -> None:
    """``serve spamd`` lives in the ``serve`` group (registered by mailsift.commands.serve)."""
