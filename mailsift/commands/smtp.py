"""``mailsift serve smtp``: run the SMTP filter in the foreground until SIGINT/SIGTERM.

It listens on ``smtp.host:smtp.port`` (STARTTLS when ``smtp.tls_cert``/``tls_key`` are set)
and on ``smtp.submission_port`` with implicit TLS, runs the checks from
``mailsift.smtpd.checks.build_checks``, scores in-process with
``mailsift.service.ScoringService`` (or over HTTP when ``api.scorer_url`` is set), holds
mail in ``mailsift.quarantine.Quarantine``, and forwards to ``smtp.next_hop_host:port``
(``smtp.mode = "proxy"``) or through the durable spool (``"spool"``).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import Annotated, Any, Literal

import typer

from mailsift.commands.serve import serve_app

log = logging.getLogger("mailsift.smtpd")


def build_scoring(settings: Any) -> tuple[Any, Any, list[Any]]:
    """(scoring service or None when scoring over HTTP, store, checks) from settings: what
    the SMTP filter and the milter share."""
    from mailsift.process import resolve_serving_model
    from mailsift.store import open_store_for

    service: Any = None
    if settings.api.scorer_url:
        store = open_store_for(settings)
    else:
        from mailsift.service import ScoringService

        # the champion is looked up in a child process, as the API workers do: MLflow (and
        # the pandas it imports, ~150 MB) never enters the filter's process
        service = ScoringService(settings, model_resolver=resolve_serving_model)
        store = service.store
    from mailsift.smtpd.checks import build_checks

    return service, store, list(build_checks(settings, store=store))


def follow_model_reloads(settings: Any, service: Any) -> Any:
    """Reload the in-process model when any API worker or node reloads it (the generation
    file in the var dir and the store's ``model_generation``; ``mailsift.api.reload``).
    Returns the started ``ModelSync`` (None when scoring over HTTP)."""
    if service is None:
        return None
    from mailsift.api.reload import ModelSync, generation_file

    sync = ModelSync(
        generation_file(settings.paths.var_dir),
        service.reload_model,
        settings.api.reload_poll_seconds,
        store=service.store,
    )
    sync.start()
    return sync


def build_server(settings: Any) -> Any:
    """The FilterServer with everything wired from settings (not started)."""
    from mailsift.process import trim_heap
    from mailsift.quarantine import Quarantine
    from mailsift.smtpd.accounts import Accounts
    from mailsift.smtpd.server import FilterServer

    service, store, checks = build_scoring(settings)
    quarantine = Quarantine(settings, store, service=service)
    # AUTH and account mailboxes when accounts are configured: an accounts file (imported
    # into the store once) or accounts in the store
    accounts = Accounts(store, import_file=settings.smtp.accounts_file)
    auth = settings.smtp.accounts_file is not None or len(accounts) > 0
    gc.freeze()  # long-lived model and rules: keep them out of every GC pass
    trim_heap()  # loading the model leaves freed heap behind
    return FilterServer(
        settings,
        service,
        checks=checks,
        quarantine=quarantine,
        accounts=accounts if auth else None,
    )


@serve_app.command("smtp")
def serve_smtp(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: smtp.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: smtp.port)")] = None,
    mode: Annotated[
        str | None, typer.Option(help="proxy (before-queue) or spool (store-and-forward)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level")] = "INFO",
) -> None:
    """Serve the SMTP filter (foreground; Ctrl-C stops it)."""
    from mailsift.config import get_settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    smtp_updates: dict[str, Any] = {}
    if host:
        smtp_updates["host"] = host
    if port is not None:
        smtp_updates["port"] = port
    if mode:
        if mode not in ("proxy", "spool"):
            raise typer.BadParameter("mode must be proxy or spool")
        m: Literal["proxy", "spool"] = "proxy" if mode == "proxy" else "spool"
        smtp_updates["mode"] = m
    if smtp_updates:
        settings = settings.model_copy(
            update={"smtp": settings.smtp.model_copy(update=smtp_updates)}
        )
    server = build_server(settings)
    server.start()
    sync = follow_model_reloads(settings, getattr(server.scoring, "service", None))
    typer.echo(
        f"mailsift SMTP filter on {settings.smtp.host}:{server.port}"
        + (f" (implicit TLS on {server.submission_port})" if server.submission_port else "")
        + f", next hop {settings.smtp.next_hop_host}:{settings.smtp.next_hop_port}"
        + f" ({settings.smtp.mode})"
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    if sync is not None:
        sync.stop()
    server.stop()


def register(app: typer.Typer) -> None:
    """``serve smtp`` lives in the ``serve`` group (registered by mailsift.commands.serve)."""
