"""``mailsift serve smtp``: run the SMTP filter in the foreground until SIGINT/SIGTERM.

It listens on ``smtp.host:smtp.port`` (STARTTLS when ``smtp.tls_cert``/``tls_key`` are set)
and on ``smtp.submission_port`` with implicit TLS, runs the checks from
``mailsift.smtpd.checks.build_checks``, scores in-process with
``mailsift.service.ScoringService`` (or over HTTP when ``api.scorer_url`` is set), holds
mail in ``mailsift.quarantine.Quarantine``, and forwards to ``smtp.next_hop_host:port``
(``smtp.mode = "proxy"``) or through the durable spool (``"spool"``).

With ``smtp.workers`` (``--workers``; 0, the default: one per CPU core) above 1, the
command is a supervisor (``mailsift.smtpd.workers``): it binds the ports, compiles the rules
cache once in a short-lived child, and forks the workers, each a whole filter (checks,
scorer, spool runner) on the shared sockets. Per-IP connection limits are counted across
the workers (``SharedConnectionTable``), the spool's messages are claimed by one worker at
a time (``flock``), a dead worker is restarted, and SIGTERM drains every worker's sessions
(``smtp.shutdown_timeout``). With ``smtp.metrics_port``, worker 0 serves the counters of
all workers (prometheus-client's multiprocess mode). ``--workers 1``: one process, no
supervisor.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from typing import Annotated, Any

import typer

from mailsift.commands.serve import serve_app

log = logging.getLogger("mailsift.smtpd")


def build_scoring(settings: Any) -> tuple[Any, Any, list[Any], Any]:
    """(scoring service or None when scoring over HTTP, store, checks, model sync) from
    settings: what the SMTP filter and the milter share. The model sync
    (``mailsift.api.reload.ModelSync``, None when scoring over HTTP) is made before the
    model is loaded, so a reload announced meanwhile is followed; the serving command starts
    it once the server runs (``mailsift.commands.serve``)."""
    from mailsift.api.reload import ModelSync, generation_file
    from mailsift.process import resolve_serving_model
    from mailsift.store import open_store_for

    service: Any = None
    sync: Any = None
    store = open_store_for(settings)
    if not settings.api.scorer_url:
        from mailsift.service import ScoringService

        sync = ModelSync(
            generation_file(settings.paths.var_dir),
            settings.api.reload_poll_seconds,
            store=store,
        )
        # the champion is looked up in a child process, as the API workers do: MLflow (and
        # the pandas it imports, ~150 MB) never enters the filter's process
        service = ScoringService(settings, store=store, model_resolver=resolve_serving_model)
    from mailsift.smtpd.checks import build_checks

    return service, store, list(build_checks(settings, store=store)), sync


def build_server(settings: Any, **server_args: Any) -> Any:
    """The FilterServer with everything wired from settings (not started); ``server_args``
    go to ``FilterServer`` (a worker's inherited sockets and shared counter)."""
    from mailsift.process import trim_heap
    from mailsift.quarantine import Quarantine
    from mailsift.smtpd.accounts import Accounts
    from mailsift.smtpd.server import FilterServer

    service, store, checks, sync = build_scoring(settings)
    if service is not None:  # the public suffix list loads now, not during the first message
        from mailsift.message import registrable_domain

        registrable_domain("mailsift.invalid")
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
        model_sync=sync,
        **server_args,
    )


@serve_app.command("smtp")
def serve_smtp(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: smtp.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: smtp.port)")] = None,
    mode: Annotated[
        str | None, typer.Option(help="proxy (before-queue) or spool (store-and-forward)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Worker processes (default: smtp.workers; 0: one per core)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level")] = "INFO",
) -> None:
    """Serve the SMTP filter (foreground; Ctrl-C stops it)."""
    from mailsift.commands.serve import log_to_stderr, serve_in_process, with_block
    from mailsift.config import get_settings

    log_to_stderr(log_level)
    if mode and mode not in ("proxy", "spool"):
        raise typer.BadParameter("mode must be proxy or spool")
    settings = with_block(
        get_settings(), "smtp", host=host or None, port=port, mode=mode or None, workers=workers
    )
    from mailsift.smtpd.workers import default_workers

    n = settings.smtp.workers or default_workers()
    if n > 1:
        serve_workers(settings, n)
        return
    serve_in_process(
        build_server(settings),
        lambda server: server.stop(drain=settings.smtp.shutdown_timeout),
        lambda server: _banner(settings, server.port, server.submission_port, 1),
    )


def _banner(settings: Any, port: int | None, submission: int | None, workers: int) -> None:
    typer.echo(
        f"mailsift SMTP filter on {settings.smtp.host}:{port}"
        + (f" (implicit TLS on {submission})" if submission else "")
        + f", next hop {settings.smtp.next_hop_host}:{settings.smtp.next_hop_port}"
        + f" ({settings.smtp.mode})"
        + (f", {workers} workers" if workers > 1 else "")
    )


def prepare_workers(settings: Any) -> None:
    """Before the workers start, in a short-lived child: open (and migrate) the store and
    compile the rules cache once, so the workers neither race to migrate nor each compile
    the same Hyperscan database."""
    from mailsift.classifier.scorer import load_rules
    from mailsift.store import open_store_for

    open_store_for(settings).close()
    if not settings.api.scorer_url:  # scoring over HTTP: the workers load no rules
        load_rules(settings)


def serve_workers(settings: Any, n: int) -> None:
    """``serve smtp`` as a supervisor of ``n`` worker processes (see the module doc)."""
    from mailsift.commands.serve import serve_with_workers
    from mailsift.smtpd.limits import SharedConnectionCounter, SharedConnectionTable
    from mailsift.smtpd.spool import Spool
    from mailsift.smtpd.workers import listen_socket

    smtp = settings.smtp
    main_sock = listen_socket(smtp.host, smtp.port)
    sub_sock = None
    if smtp.submission_port is not None and smtp.tls_cert and smtp.tls_key:
        sub_sock = listen_socket(smtp.host, smtp.submission_port)
    table = SharedConnectionTable(n) if smtp.max_connections_per_ip else None
    if smtp.mode == "spool":
        Spool(settings.spool_dir)  # removes what a crash left in tmp/, before any worker runs
    if smtp.metrics_port is not None:
        path = os.path.join(os.fspath(settings.paths.var_dir), "run", "prometheus-smtp")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # read by prometheus-client at import
    quiet = settings.model_copy(update={"smtp": smtp.model_copy(update={"metrics_port": None})})

    def build(index: int) -> Any:
        counter = (
            SharedConnectionCounter(table, index, smtp.max_connections_per_ip)
            if table is not None
            else None
        )
        return build_server(
            settings if index == 0 else quiet,  # worker 0 serves every worker's metrics
            smtp_socket=main_sock,
            submission_socket=sub_sock,
            counter=counter,
            clean_spool_tmp=False,
        )

    main_port = main_sock.getsockname()[1]
    sub_port = sub_sock.getsockname()[1] if sub_sock is not None else None
    serve_with_workers(
        "smtp",
        n,
        settings,
        build,
        lambda server: server.stop(drain=smtp.shutdown_timeout),
        lambda: _banner(settings, main_port, sub_port, n),
        stop_timeout=smtp.shutdown_timeout + 10.0,
        on_exit=table.clear_worker if table is not None else None,
    )


def register(app: typer.Typer) -> None:
    """``serve smtp`` lives in the ``serve`` group (registered by mailsift.commands.serve)."""
