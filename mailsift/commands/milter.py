"""``mailsift serve milter``: the milter for Postfix / Sendmail, in the foreground until
SIGINT/SIGTERM.

It listens on ``milter.host:milter.port`` (``--host``/``--port``) or on a Unix socket
(``--socket PATH`` / ``milter.socket``), runs the checks from
``mailsift.smtpd.checks.build_checks`` and scores in-process with
``mailsift.service.ScoringService`` (or over HTTP when ``api.scorer_url`` is set), exactly as
``serve smtp`` does; see ``mailsift.smtpd.milter`` for what it answers at each step.

With ``milter.workers`` (``--workers``; 0, the default: one per CPU core) above 1, the
command supervises that many worker processes on the socket it binds (TCP or Unix;
``mailsift.smtpd.workers``: the rules cache compiled once first, a dead worker restarted,
SIGTERM stops them all); each worker is a whole ``MilterServer`` with its own scorer.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated, Any

import typer

from mailsift.commands.serve import serve_app


def build_milter(settings: Any, sock: Any = None) -> Any:
    """The MilterServer with everything wired from settings (not started); ``sock``: the
    listening socket a worker inherited."""
    from mailsift.commands.smtp import build_scoring
    from mailsift.process import trim_heap
    from mailsift.smtpd.milter import MilterServer

    service, _store, checks, sync = build_scoring(settings)
    gc.freeze()  # long-lived model and rules: keep them out of every GC pass
    trim_heap()
    return MilterServer(settings, service, checks=checks, sock=sock, model_sync=sync)


@serve_app.command("milter")
def serve_milter(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: milter.host)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: milter.port)")] = None,
    socket: Annotated[
        Path | None, typer.Option(help="Unix socket path instead of TCP (milter.socket)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Worker processes (default: milter.workers; 0: one per core)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level")] = "INFO",
) -> None:
    """Serve the milter (Postfix smtpd_milters / Sendmail INPUT_MAIL_FILTER)."""
    from mailsift.commands.serve import log_to_stderr, serve_in_process, with_block
    from mailsift.config import get_settings

    if socket is not None and (port is not None or host is not None):
        raise typer.BadParameter("--socket excludes --host/--port")
    log_to_stderr(log_level)
    settings = with_block(
        get_settings(), "milter", host=host or None, port=port, socket=socket, workers=workers
    )
    if port is not None and socket is None:  # a TCP port given: not the configured socket
        settings = settings.model_copy(
            update={"milter": settings.milter.model_copy(update={"socket": None})}
        )
    from mailsift.smtpd.workers import default_workers

    n = settings.milter.workers or default_workers()
    if n > 1:
        serve_workers(settings, n)
        return
    serve_in_process(
        build_milter(settings),
        lambda server: server.stop(drain=settings.milter.shutdown_timeout),
        lambda server: typer.echo(f"mailsift milter on {server.address}"),
    )


def serve_workers(settings: Any, n: int) -> None:
    """``serve milter`` as a supervisor of ``n`` workers on one listening socket."""
    from mailsift.commands.serve import serve_with_workers
    from mailsift.smtpd.workers import listen_socket, unix_listen_socket

    m = settings.milter
    if m.socket is not None:
        sock = unix_listen_socket(m.socket, m.socket_mode)
        address = f"unix:{m.socket}"
    else:
        sock = listen_socket(m.host, m.port)
        address = f"inet:{m.host}:{sock.getsockname()[1]}"

    try:
        serve_with_workers(
            "milter",
            n,
            settings,
            lambda _index: build_milter(settings, sock=sock),
            lambda server: server.stop(drain=settings.milter.shutdown_timeout),
            lambda: typer.echo(f"mailsift milter on {address}, {n} workers"),
        )
    finally:
        if m.socket is not None:
            m.socket.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    """``serve milter`` lives in the ``serve`` group (registered by mailsift.commands.serve)."""
