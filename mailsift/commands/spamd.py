"""``mailsift serve spamd [--host H] [--port P] [--allow-tell] [--tls-cert C --tls-key K]``:
SpamAssassin's spamd protocol (``spamc``, Exim's ``spamd_address``, amavis...) in the
foreground until SIGINT/SIGTERM, scoring with ``mailsift.service.ScoringService`` in this
process (the same scorer, lists and learner as the API and the SMTP filter). Settings: the
``spamd`` block (``mailsift.config.SpamdSettings``); options override it.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from mailsift.commands.serve import serve_app


def build_spamd(settings: Any) -> Any:
    """The SpamdServer over a ScoringService built from settings (not started)."""
    from mailsift.process import resolve_serving_model, trim_heap
    from mailsift.service import ScoringService
    from mailsift.spamd.server import SpamdServer

    # the champion is looked up in a child process, as the API workers and the SMTP filter
    # do: MLflow never enters this process
    service = ScoringService(settings, model_resolver=resolve_serving_model)
    gc.freeze()  # long-lived model and rules: keep them out of every GC pass
    trim_heap()
    return SpamdServer(settings, service)


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
    log_level: Annotated[str, typer.Option(help="Python log level")] = "INFO",
) -> None:
    """Serve the spamd protocol (foreground; Ctrl-C stops it)."""
    from mailsift.config import get_settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    updates: dict[str, Any] = {}
    for key, value in (
        ("host", host),
        ("port", port),
        ("allow_tell", allow_tell),
        ("tls_cert", tls_cert),
        ("tls_key", tls_key),
    ):
        if value is not None:
            updates[key] = value
    if updates:
        settings = settings.model_copy(update={"spamd": settings.spamd.model_copy(update=updates)})
    if bool(settings.spamd.tls_cert) != bool(settings.spamd.tls_key):
        raise typer.BadParameter("give both a TLS certificate and its key")
    server = build_spamd(settings)
    server.start()
    typer.echo(
        f"mailsift spamd on {settings.spamd.host}:{server.port}"
        + (" (TLS)" if server.tls_context else "")
        + (", TELL on" if settings.spamd.allow_tell else ", TELL off")
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    server.service.close()


def register(app: typer.Typer) -> None:
    """``serve spamd`` lives in the ``serve`` group (registered by mailsift.commands.serve)."""
