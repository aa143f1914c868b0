"""The SMTP filter server: aiosmtpd on an event loop of its own, in a background thread.

``FilterServer(settings, service, checks=None, quarantine=None)`` listens on
``settings.smtp.host:port`` (plain SMTP with STARTTLS when a certificate is configured) and on
``submission_port`` with implicit TLS (RFC 8314), and hands accepted mail to the next hop
(``mode = "proxy"``) or to the durable spool (``mode = "spool"``). ``start()`` returns once
both sockets listen (port 0 picks a free port: read ``.port`` / ``.submission_port``);
``stop()`` closes them, finishes the spool runner and joins the thread; ``stop(drain=T)``
first stops listening and lets the sessions in a transaction finish it, for up to ``T``
seconds (idle sessions, and each session once its transaction ended, are told
``421 4.3.2`` and closed), which is what SIGTERM does to ``mailsift serve smtp``. Scoring
in-process, the verdict records are written by a ``VerdictWriter`` (in batches, off the path
of the reply); ``stop()`` writes those still queued once the sessions are over.

One of several worker processes (``mailsift.smtpd.workers``), it is given the listening
sockets its supervisor bound (``smtp_socket`` / ``submission_socket``) and a connection
counter shared by all workers (``counter``), and leaves the spool's ``tmp/`` alone
(``clean_spool_tmp=False``: the supervisor cleaned it before the workers started).

``FilterSMTP`` adds to aiosmtpd's ``SMTP``: a limit of simultaneous connections per client
IP (``421 4.7.0`` before the greeting), a limit of commands per session (``421 4.7.0`` and
disconnect), a configurable line-length limit, the path parser that keeps source routes and
quoting (``mailsift.smtpd.addresses``), AUTH on the implicit-TLS port (aiosmtpd only
knows about STARTTLS), DATA read line by line at every LF (so that the line-length limit
applies to the lines a bare-LF client sends, once normalised), ``idle_timeout`` counted
from the client's last byte (a long message still flowing is not cut), and a deadline per
record (Postfix's ``smtpd_per_record_deadline``): a command line or a line of message
content must be complete within ``record_deadline`` seconds of its first byte, so a client
dripping a byte at a time is cut off (``421 4.4.2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP

from mailsift.config import Settings
from mailsift.loopthread import LoopThread
from mailsift.smtpd.accounts import Accounts
from mailsift.smtpd.addresses import MAX_PATH, split_path
from mailsift.smtpd.checks.base import Check
from mailsift.smtpd.delivery import NextHopPool
from mailsift.smtpd.handler import XFORWARD_ATTRS, FilterHandler, QuarantineLike
from mailsift.smtpd.limits import AuthThrottle, ConnectionCounter, SharedConnectionCounter
from mailsift.smtpd.relay import RecipientPolicy
from mailsift.smtpd.runner import CheckRunner
from mailsift.smtpd.scoring import HttpScoring, InProcessScoring, Scoring, verdict_writer_for
from mailsift.smtpd.spool import Spool, SpoolRunner
from mailsift.smtpd.tls import server_context
from mailsift.smtpd.verdicts import VerdictWriter
from mailsift.store.base import Store

log = logging.getLogger("mailsift.smtpd.server")

_XTEXT_RE = re.compile(r"\+([0-9A-Fa-f]{2})")  # RFC 3461 xtext: "+XX" is a byte


class FilterSMTP(SMTP):
    """aiosmtpd's SMTP with per-IP and per-session limits and a faithful path parser."""

    def __init__(
        self,
        handler: FilterHandler,
        *,
        counter: ConnectionCounter | SharedConnectionCounter,
        max_commands: int,
        implicit_tls: bool,
        line_length: int,
        record_deadline: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.line_length_limit = line_length + 2  # + CRLF, as aiosmtpd counts
        super().__init__(handler, **kwargs)
        self._record_deadline = record_deadline
        self._record_timer: asyncio.TimerHandle | None = None
        self._counter = counter
        self._counted_ip: str | None = None
        self._implicit_tls = implicit_tls
        if implicit_tls:
            self._auth_require_tls = False  # the whole connection is TLS
        self._max_commands = max_commands
        self._commands = 0
        self._in_command = False
        self._draining = False
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._limited(name, method)

    def _limited(
        self, name: str, method: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        async def run(arg: Any) -> None:
            self._commands += 1
            if self._max_commands and self._commands > self._max_commands:
                await self.push("421 4.7.0 Error: too many commands, closing connection")
                if self.transport is not None:
                    self.transport.close()
                return
            if self._draining and name != "QUIT" and not self._in_transaction():
                self._close_for_shutdown()
                return
            self._in_command = True
            try:
                await method(arg)
            finally:
                self._in_command = False
            if self._draining and name != "QUIT" and not self._in_transaction():
                self._close_for_shutdown()  # the transaction ended: the session ends here

        return run

    # ---- shutdown --------------------------------------------------------------------------
    def _in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def _close_for_shutdown(self) -> None:
        if self.transport is None:
            return
        self._writer.write(b"421 4.3.2 Service shutting down, closing connection\r\n")
        self.transport.close()

    def begin_drain(self) -> None:
        """The server stops: close the session now if it is idle, else once the
        transaction under way (a command running, or MAIL given) has ended."""
        self._draining = True
        if not self._in_command and not self._in_transaction():
            self._close_for_shutdown()

    @property
    def closed(self) -> bool:
        return self.transport is None

    # ---- connection accounting -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            self._over_limit = not self._counter.acquire(ip)
            if not self._over_limit:
                self._counted_ip = ip

    def connection_lost(self, error: Exception | None) -> None:
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        if self._counted_ip is not None:
            self._counter.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    # ---- timeouts --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport is None:
            return
        # idle_timeout counts the client's silence, not the length of a transfer
        self._reset_timeout()
        if self._record_deadline > 0:
            self._track_record(data)

    def _track_record(self, data: bytes) -> None:
        """Start the record deadline at the first byte of a line, stop it at its LF."""
        last_lf = data.rfind(b"\n")
        if last_lf >= 0 and self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        if self._record_timer is None and last_lf + 1 < len(data):  # a line is under way
            self._record_timer = self.loop.call_later(self._record_deadline, self._record_late)

    def _record_late(self) -> None:
        self._record_timer = None
        if self.transport is None:
            return
        peer = self.session.peer if self.session is not None else None
        log.info(
            "%r: no complete line within the %g s record deadline: disconnected",
            peer,
            self._record_deadline,
        )
        self._writer.write(b"421 4.4.2 Error: timeout exceeded\r\n")
        self.transport.close()

    async def _handle_client(self) -> None:
        if getattr(self, "_over_limit", False):
            await self.push("421 4.7.0 Error: too many connections from your address")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    # ---- TLS facts -------------------------------------------------------------------------
    def is_tls(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    def tls_description(self) -> str | None:
        if not self.is_tls() or self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        if obj is None:
            return "TLS"
        cipher = obj.cipher()
        return f"{obj.version()} with cipher {cipher[0]}" if cipher else str(obj.version())

    # ---- XFORWARD --------------------------------------------------------------------------
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        """Postfix's XFORWARD (offered in EHLO only to ``smtp.xforward_hosts``): attributes
        ``NAME=value`` in xtext; ``[UNAVAILABLE]`` and ``[TEMPUNAVAIL]`` mean unknown."""
        if await self.check_helo_needed():
            return
        if not arg or not arg.strip():
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value...")
            return
        attrs: dict[str, str] = {}
        for item in arg.split():
            name, eq, value = item.partition("=")
            if not eq or name.upper() not in XFORWARD_ATTRS:
                await self.push(f"501 5.5.4 Bad XFORWARD attribute name: {name[:40]}")
                return
            value = _XTEXT_RE.sub(lambda m: chr(int(m.group(1), 16)), value)
            if value not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                attrs[name.upper()] = value
        await self.push(await self.event_handler.xforward(self, attrs))

    # ---- DATA -----------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the content read by :meth:`_read_content`."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_content()
        if content is None:  # refused (the reply is sent) or the client left
            self._set_post_data_state()
            return
        self.envelope.content = (
            content.decode("utf-8", errors="surrogateescape") if self._decode_data else content
        )
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_content(self) -> bytes | None:
        """The message content up to ``<CR><LF>.<CR><LF>``, un-dot-stuffed, exactly as
        aiosmtpd reads it, but taken line by line at every LF rather than every CRLF.

        The line-length limit then applies to each line as it will be once normalised to
        CRLF: a client ending its lines with a bare LF (Postfix accepts them) is not refused
        as one endless line. As in aiosmtpd, only a "." line that follows a CRLF and ends with
        CRLF ends DATA, and a leading dot is removed from lines that follow a CRLF: the line
        endings reach ``inspect_line_endings`` (smuggling forms, bare LF) as sent. Over the
        size or line limit, the rest is read and dropped, then 552 / 500 is answered."""
        limit = self.data_size_limit
        lines: list[bytes] = []
        size = 0
        too_long = too_much = False
        after_crlf = True  # the next line starts a CRLF-delimited line
        in_long_line = False  # the rest of a line over the reader's limit
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.CancelledError:
                log.info("connection lost during DATA")
                self._writer.close()
                raise
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as e:
                # longer than the line limit: drop what came so far, drain, refuse at the end
                # (552 when the size limit was passed first, as aiosmtpd answers)
                too_long = not too_much
                lines.clear()
                chunk = await self._reader.read(e.consumed)
                size += len(chunk)
                in_long_line = True
                continue
            if in_long_line:
                in_long_line = False
                after_crlf = line.endswith(b"\r\n")
                size += len(line)
                continue
            if after_crlf and line == b".\r\n":
                break
            size += len(line)
            ends_crlf = line.endswith(b"\r\n")
            if after_crlf and line[:1] == b".":
                line = line[1:]
            after_crlf = ends_crlf
            if too_long or too_much:
                continue
            if limit and size > limit:
                too_much = True
                lines.clear()
                continue
            text_len = len(line) - (2 if ends_crlf else 1)
            if text_len + 2 > self.line_length_limit:
                too_long = True
                lines.clear()
                continue
            lines.append(line)
        else:
            return None
        if too_long:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            return None
        if too_much:
            await self.push("552 Error: Too much mail data")
            return None
        return b"".join(lines)

    # ---- paths ----------------------------------------------------------------------------
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        split = split_path(arg)
        if split is None:
            return None, None
        path, rest = split
        if len(path) > MAX_PATH:
            return None, None
        return path, rest


class FilterServer(LoopThread):
    thread_name = "mailsift-smtpd"

    def __init__(
        self,
        settings: Settings,
        service: Any = None,
        checks: Sequence[Check] | None = None,
        quarantine: QuarantineLike | None = None,
        *,
        accounts: Accounts | None = None,
        scoring: Scoring | None = None,
        smtp_socket: socket.socket | None = None,
        submission_socket: socket.socket | None = None,
        counter: ConnectionCounter | SharedConnectionCounter | None = None,
        clean_spool_tmp: bool = True,
        model_sync: Any = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        # the ModelSync that follows model reloads for ``service``, made before its model
        # was loaded; the serving command starts it (mailsift.commands.serve)
        self.model_sync = model_sync
        smtp = settings.smtp
        self._accounts_store: Store | None = None
        if accounts is None and smtp.accounts_file is not None:
            # the accounts are in the configured store (the file is imported into it once)
            from mailsift.store import open_store_for

            self._accounts_store = open_store_for(settings)
            accounts = Accounts(self._accounts_store, import_file=smtp.accounts_file)
        self.accounts = accounts
        self.verdict_writer: VerdictWriter | None = None
        if scoring is None:
            if settings.api.scorer_url:
                scoring = HttpScoring(settings.api.scorer_url, settings.api.scorer_api_key)
            elif service is not None:
                self.verdict_writer = verdict_writer_for(service)
                scoring = InProcessScoring(service, self.verdict_writer)
        self.scoring = scoring
        self.checks = list(checks or [])
        self.quarantine = quarantine
        self.tls_context: ssl.SSLContext | None = None
        if smtp.tls_cert and smtp.tls_key:
            self.tls_context = server_context(smtp.tls_cert, smtp.tls_key)
        self.counter = counter or ConnectionCounter(smtp.max_connections_per_ip)
        self._smtp_socket = smtp_socket
        self._submission_socket = submission_socket
        # failed AUTH counted in the accounts' store: one limit for every worker and node
        self.throttle = AuthThrottle(
            smtp.auth_failures_before_throttle,
            smtp.auth_throttle_window,
            store=accounts.store if accounts is not None else None,
        )
        self.recipients = RecipientPolicy(smtp, accounts)
        self.spool: Spool | None = (
            Spool(settings.spool_dir, clean_tmp=clean_spool_tmp) if smtp.mode == "spool" else None
        )
        self.spool_runner: SpoolRunner | None = None
        self.next_hop: NextHopPool | None = None
        self.port: int | None = None
        self.submission_port: int | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.handler: FilterHandler | None = None
        self._conns: weakref.WeakSet[FilterSMTP] = weakref.WeakSet()
        self._metrics: Any = None  # the metrics HTTP server, when smtp.metrics_port is set
        self.metrics_port: int | None = None

    # ---- protocol factory ------------------------------------------------------------------
    def _factory(self, implicit_tls: bool) -> Callable[[], FilterSMTP]:
        smtp = self.settings.smtp
        assert self.handler is not None
        handler = self.handler

        def make() -> FilterSMTP:
            proto = FilterSMTP(
                handler,
                counter=self.counter,
                max_commands=smtp.max_commands_per_session,
                implicit_tls=implicit_tls,
                line_length=smtp.max_line_length,
                record_deadline=smtp.record_deadline,
                data_size_limit=smtp.max_message_size,
                hostname=smtp.hostname,
                ident="mailsift ESMTP",
                tls_context=None if implicit_tls else self.tls_context,
                timeout=smtp.idle_timeout,
                auth_require_tls=smtp.require_tls_for_auth,
                enable_SMTPUTF8=True,
                loop=self._loop,
            )
            self._conns.add(proto)
            return proto

        return make

    async def _start_async(self) -> None:
        smtp = self.settings.smtp
        if self.spool is not None:
            self.spool_runner = SpoolRunner(
                self.spool,
                host=smtp.next_hop_host,
                port=smtp.next_hop_port,
                helo=smtp.hostname,
                timeout=smtp.delivery_timeout,
                retry_initial=smtp.spool_retry_initial,
                retry_max=smtp.spool_retry_max,
                max_age=smtp.spool_max_age,
                concurrency=smtp.spool_concurrency,
            )
        if smtp.mode == "proxy":
            self.next_hop = NextHopPool(
                smtp.next_hop_host,
                smtp.next_hop_port,
                helo=smtp.hostname,
                timeout=smtp.delivery_timeout,
                max_idle=smtp.next_hop_idle_connections,
                idle_time=smtp.next_hop_idle_time,
            )
        self.handler = FilterHandler(
            self.settings,
            runner=CheckRunner(self.checks, smtp.check_timeout),
            recipients=self.recipients,
            accounts=self.accounts,
            scoring=self.scoring,
            quarantine=self.quarantine,
            spool=self.spool,
            spool_runner=self.spool_runner,
            auth_throttle=self.throttle,
            next_hop=self.next_hop,
        )
        loop = asyncio.get_running_loop()
        if self._smtp_socket is not None:
            srv = await loop.create_server(self._factory(False), sock=self._smtp_socket)
        else:
            srv = await loop.create_server(self._factory(False), smtp.host, smtp.port)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if smtp.submission_port is not None and self.tls_context is None:
            log.warning("no smtp.tls_cert/tls_key: STARTTLS, AUTH and the submission port are off")
        if self._submission_socket is not None and self.tls_context is not None:
            sub = await loop.create_server(
                self._factory(True), sock=self._submission_socket, ssl=self.tls_context
            )
            self._servers.append(sub)
            self.submission_port = sub.sockets[0].getsockname()[1]
        elif smtp.submission_port is not None and self.tls_context is not None:
            sub = await loop.create_server(
                self._factory(True), smtp.host, smtp.submission_port, ssl=self.tls_context
            )
            self._servers.append(sub)
            self.submission_port = sub.sockets[0].getsockname()[1]
        if self.spool_runner is not None:
            self.spool_runner.start()

    async def _drain(self, timeout: float) -> None:
        """Stop listening; wait up to ``timeout`` s for the sessions to end their
        transactions (see ``FilterSMTP.begin_drain``)."""
        for srv in self._servers:
            srv.close()
        for proto in list(self._conns):
            proto.begin_drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not p.closed for p in list(self._conns)) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        left = sum(1 for p in list(self._conns) if not p.closed)
        if left:
            log.warning("%d sessions still in a transaction after %g s: closed", left, timeout)

    async def _shutdown(self) -> None:
        for srv in self._servers:
            srv.close()
        for proto in list(self._conns):
            if proto.transport is not None:
                proto.transport.close()
        if self.spool_runner is not None:
            await self.spool_runner.stop()
        if self.next_hop is not None:
            await self.next_hop.close()
        await asyncio.sleep(0.05)
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        for srv in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 2)
        if isinstance(self.scoring, HttpScoring):
            await self.scoring.aclose()

    def start(self) -> FilterServer:
        self._start_thread()
        if self.settings.smtp.metrics_port is not None:
            import os

            from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

            registry = REGISTRY
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the workers' counters, summed
                from prometheus_client import multiprocess

                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)
            self._metrics, _thread = start_http_server(
                self.settings.smtp.metrics_port, addr=self.settings.smtp.host, registry=registry
            )
            self.metrics_port = int(self._metrics.server_address[1])
        log.info(
            "SMTP filter listening on %s:%s (submission %s), mode %s",
            self.settings.smtp.host,
            self.port,
            self.submission_port,
            self.settings.smtp.mode,
        )
        return self

    def stop(self, drain: float = 0.0) -> None:
        """Stop; with ``drain`` > 0, first let the transactions under way finish (up to
        ``drain`` seconds)."""
        self._drain_thread(drain)
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
            self._metrics = None
        self._stop_thread()
        if self.verdict_writer is not None:  # the sessions are over: write what is queued
            self.verdict_writer.close(max(drain, self.settings.smtp.shutdown_timeout))
        if self._accounts_store is not None:
            self._accounts_store.close()
            self._accounts_store = None
