"""``SpamdServer``: SpamAssassin's spamd protocol over ``mailsift.service.ScoringService``, so
``spamc``, Exim's ``spamd_address``, amavis, MIMEDefang and procmail recipes talk to mailsift
unchanged. The wire format is in ``mailsift.spamd.protocol``.

Per connection (asyncio streams, one request each, as spamd):

1. A client outside ``spamd.allowed_networks`` is disconnected unanswered.
2. The request is read within ``spamd.timeout`` seconds and ``spamd.max_message_size``
   bytes (after zlib inflation); a malformed one gets spamd's ``EX_PROTOCOL`` reply.
3. Incoming ``X-Spam-*`` fields are stripped (other filters' verdicts are never believed or
   learned), then:

   - ``CHECK`` / ``SYMBOLS`` / ``REPORT`` / ``REPORT_IFSPAM`` / ``PROCESS`` / ``HEADERS``:
     ``ScoringService.score`` (rules + model + sender lists; the verdict is recorded, so its
     id can be reported later), the ``User:`` as the envelope recipient, so that user's own
     trusted/untrusted lists apply. ``REPORT`` lists the rules with the model's weight of each
     and the tokens that moved the score most. ``PROCESS`` / ``HEADERS`` return the message
     with the SMTP filter's ``X-Spam-Flag`` / ``X-Spam-Score`` / ``X-Spam-Level`` /
     ``X-Spam-Status`` fields on top (the body is never rewritten: no ``report_safe``).
   - ``TELL`` (``spamc -L spam|ham``; only with ``spamd.allow_tell``): ``Set: local`` with
     ``Message-class`` is ``ScoringService.feedback(label, user, raw=...)``, the learner
     ``POST /v1/feedback`` uses, with the ``User:`` as the reporter. ``DidSet: local`` when
     the model learned it; none for a message already taught that label (spamc: "already
     learned"); a rate-capped report is ``EX_TEMPFAIL``. ``Remove: local`` (forget) is
     refused: a lesson is taken back by reporting the other class (a relabel).
   - ``PING``: ``PONG``; ``SKIP``: nothing.

4. Scoring or learning runs in a worker thread within ``spamd.scan_timeout``; a failure
   (store down, timeout) is ``EX_TEMPFAIL`` / ``EX_TIMEOUT``, never a made-up verdict.

A bare ``User:`` name becomes ``name@<spamd.user_domain>`` when that is set. TLS (spamc
``-S``): with ``spamd.tls_cert`` and ``tls_key`` every connection is TLS, as spamd ``--ssl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from typing import Any

from mailsift import outages
from mailsift.config import Settings
from mailsift.loopthread import LoopThread
from mailsift.spamd import protocol as p
from mailsift.verdict import Envelope, Verdict

log = logging.getLogger("mailsift.spamd")


class SpamdServer(LoopThread):
    thread_name = "mailsift-spamd"
    """The spamd protocol server; ``start()`` runs it on its own event loop thread."""

    def __init__(
        self,
        settings: Settings,
        service: Any,
        *,
        sock: socket.socket | None = None,
        model_sync: Any = None,
    ) -> None:
        """``sock``: a listening socket to serve on (a worker of ``mailsift serve spamd``
        is given its supervisor's) instead of binding ``spamd.host:port``. ``model_sync``:
        the ``mailsift.api.reload.ModelSync`` the serving command starts, so the service
        follows the API's model reloads."""
        super().__init__()
        self._sock = sock
        self.settings = settings
        self.cfg = settings.spamd
        self.service = service
        self.model_sync = model_sync
        self.hostname = self.cfg.hostname or socket.gethostname()
        self.networks = [ipaddress.ip_network(n, strict=False) for n in self.cfg.allowed_networks]
        self.tls_context: ssl.SSLContext | None = None
        if self.cfg.tls_cert and self.cfg.tls_key:
            from mailsift.smtpd.tls import server_context

            self.tls_context = server_context(self.cfg.tls_cert, self.cfg.tls_key)
        self.port: int | None = None
        self.active = 0
        self._server: asyncio.base_events.Server | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    async def _start_async(self) -> None:
        """Listen (on the running loop) until the server is closed."""
        # TLS is done here (``TlsSession``), not by asyncio: asyncio closes a TLS connection
        # when the client's close_notify arrives, and spamc sends it right after the request
        if self._sock is not None:
            self._server = await asyncio.start_server(
                self._client, sock=self._sock, limit=p.MAX_LINE
            )
        else:
            self._server = await asyncio.start_server(
                self._client, self.cfg.host, self.cfg.port, limit=p.MAX_LINE
            )
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> SpamdServer:
        self._start_thread()
        log.info(
            "spamd protocol on %s:%s%s",
            self.cfg.host,
            self.port,
            " (TLS)" if self.tls_context else "",
        )
        return self

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        if rest:  # requests in flight get a moment to finish
            await asyncio.wait(rest, timeout=5)
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # ---- one connection ---------------------------------------------------------------------
    def _allowed(self, peer: Any) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return True  # a Unix socket
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            if not self._allowed(peer):
                log.warning("spamd: unauthorized connection from %s", peer)
                return
            if self.active >= self.cfg.max_connections:
                writer.write(
                    _tempfail("connections", "too many connections, try again later", False).line
                )
                await writer.drain()
                await _linger(reader, writer)
                return
            self.active += 1
            try:
                if self.tls_context is not None:
                    await self._tls_client(reader, writer, self.tls_context)
                else:
                    reply = await self._answer(reader)
                    if reply:
                        writer.write(reply)
                        await writer.drain()
            finally:
                self.active -= 1
            await _linger(reader, writer)
        except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
            log.info("spamd: connection from %s lost: %s", peer, exc)
        except Exception:  # a bug must cost one connection, never the server
            log.exception("spamd: error serving %s", peer)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def _tls_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
    ) -> None:
        tls = TlsSession(reader, writer, ctx)
        async with asyncio.timeout(self.cfg.timeout):
            await tls.handshake()
        plain = asyncio.StreamReader(limit=p.MAX_LINE)
        # more than a request can hold is never buffered: the reader sees an end instead
        pump = asyncio.create_task(tls.pump(plain, self.cfg.max_message_size + 2 * p.MAX_LINE))
        try:
            reply = await self._answer(plain)
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
        if reply:
            await tls.send(reply)
        await tls.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        t = self.cfg.timeout
        try:
            async with asyncio.timeout(t):
                req = await p.read_request(reader, self.cfg.max_message_size)
        except TimeoutError:
            return p.timeout_error(f"({t:g} second socket timeout reading input from client)").line
        except p.SpamdError as exc:
            log.info("spamd: bad request: %s", exc)
            return exc.line
        if req is None:
            return p.protocol_error("(closed before headers)").line
        try:
            if req.method == "PING":
                return p.PONG
            if req.method == "SKIP":
                return b""
            if req.method == "TELL":
                return await self._tell(req)
            return await self._check(req)
        except p.SpamdError as exc:
            log.info("spamd: %s %s: %s", req.method, req.user or "-", exc)
            return exc.line

    def identity(self, user: str | None) -> str:
        """The ``User:`` header as a mailsift user (an address where it can be)."""
        u = (user or "").strip().lower()
        if u and "@" not in u and self.cfg.user_domain:
            u = f"{u}@{self.cfg.user_domain.lower()}"
        return u

    async def _in_thread(self, method: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from mailsift.store import StoreError

        t = self.cfg.scan_timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kw), t)
        except TimeoutError:
            raise p.timeout_error(f"({t:g} second timeout while trying to {method})") from None
        except StoreError as exc:
            log.warning("spamd: %s: store unavailable: %s", method, exc)
            raise _tempfail("store", "the store is unavailable, try again later") from None

    async def _check(self, req: p.Request) -> bytes:
        from mailsift.smtpd import headers as hdr

        raw, _ = hdr.remove_untrusted(req.body, self.settings.smtp.authserv_id)
        user = self.identity(req.user)
        env = Envelope(rcpt_to=(user,)) if "@" in user else Envelope()
        t0 = time.perf_counter()
        try:
            verdict: Verdict = await self._in_thread(req.method, self.service.score, raw, env)
        except p.SpamdError:
            raise
        except Exception as exc:
            log.exception("spamd: scoring failed")
            raise _tempfail("scoring", f"scoring failed: {exc}") from None
        spam = p.spam_line(req.method, verdict.is_spam, verdict.score, verdict.required_score)
        body = b""
        if req.method == "SYMBOLS":
            body = ",".join(s.name for s in verdict.rules).encode()
        elif req.method == "REPORT" or (req.method == "REPORT_IFSPAM" and verdict.is_spam):
            body = report_text(verdict, self.hostname).encode("utf-8", "replace")
        elif req.method in ("PROCESS", "HEADERS"):
            body = stamped(raw, verdict)
            if req.method == "HEADERS":
                head, rest = hdr.split_message(body)
                body = head + (b"\r\n" if rest.startswith(b"\r\n") else b"\n")
        log.info(
            "spamd: %s %s (%.1f/%.1f) for %s in %.1f ms, %d bytes, verdict %s",
            "identified spam" if verdict.is_spam else "clean message",
            req.method,
            verdict.score,
            verdict.required_score,
            user or "-",
            (time.perf_counter() - t0) * 1000.0,
            len(req.body),
            verdict.verdict_id,
        )
        return p.check_reply(req.method, req.version, spam, body)

    async def _tell(self, req: p.Request) -> bytes:
        if not self.cfg.allow_tell:
            raise p.unavailable("TELL commands are not enabled, set spamd.allow_tell")
        if req.set_local and req.remove_local:
            raise p.protocol_error("Unable to set local and remove local in the same operation.")
        if req.set_remote and req.remove_remote:
            raise p.protocol_error("Unable to set remote and remove remote in the same operation.")
        if req.remove_local:
            raise p.unavailable(
                "mailsift does not forget a lesson: report the message as the other class"
            )
        user = self.identity(req.user)
        did_set: list[str] = []
        if req.set_local:
            if not user:
                raise p.protocol_error("(TELL needs a User header: who reports the message)")
            if req.message_class is None:
                raise p.protocol_error("(TELL with Set needs a Message-class header)")
            if not req.body.strip():
                raise p.protocol_error("(TELL needs the message)")
            from mailsift.smtpd import headers as hdr

            raw, _ = hdr.remove_untrusted(req.body, self.settings.smtp.authserv_id)
            res = await self._learn(req.message_class, user, raw)
            if res.status == "rate_limited":
                detail = f"feedback rate cap reached: {res.detail or 'try again later'}"
                raise _tempfail("rate_limited", detail, False)
            if res.learned:
                did_set.append("local")
            log.info(
                "spamd: TELL %s by %s: %s %s", req.message_class, user, res.status, res.digest[:16]
            )
        return p.tell_reply(did_set, [])

    async def _learn(self, label: str, user: str, raw: bytes) -> Any:
        from mailsift.learning.feedback import FeedbackError

        try:
            return await self._in_thread(
                "TELL", self.service.feedback, label, user, raw=raw, source="user", via="spamd"
            )
        except p.SpamdError:
            raise
        except FeedbackError as exc:
            raise p.protocol_error(f"({exc})") from None
        except Exception as exc:
            log.exception("spamd: learning failed")
            raise _tempfail("learning", f"learning failed: {exc}") from None


def _tempfail(reason: str, detail: str, outage: bool = True) -> p.SpamdError:
    """A temporary-failure reply, counted and logged as the SMTP filter's are
    (``mailsift_tempfails_total{service="spamd", reason}``; a policy, ``outage=False``,
    logs at INFO)."""
    outages.tempfail("spamd", reason, detail, outage=outage)
    return p.tempfail(detail)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the reply: half-close, then drop what the client still sends (at most 1 MiB,
    2 s). Closing with unread input would reset the connection, and a reset can destroy the
    reply before the client reads it (an error answered before the whole request arrived)."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(2.0):
            seen = 0
            while seen < 1 << 20:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                seen += len(chunk)


class TlsSession:
    """Server-side TLS over a plain stream with ``ssl.MemoryBIO``: unlike asyncio's TLS
    transport it answers after the client's close_notify (TLS half-close), which is how
    spamc ``-S`` ends its request."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
    ) -> None:
        self.reader, self.writer = reader, writer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _fill(self) -> None:
        await self._flush()
        data = await self.reader.read(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                await self._flush()
                return
            except ssl.SSLWantReadError:
                if self.incoming.eof:
                    raise ConnectionError("closed during the TLS handshake") from None
                await self._fill()

    async def read(self) -> bytes:
        """Decrypted bytes; b"" at the client's close_notify or end of stream."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                if self.incoming.eof:
                    return b""
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def pump(self, plain: asyncio.StreamReader, limit: int) -> None:
        total = 0
        try:
            while total <= limit:
                chunk = await self.read()
                if not chunk:
                    break
                total += len(chunk)
                plain.feed_data(chunk)
        except (ConnectionError, ssl.SSLError) as exc:
            plain.set_exception(ConnectionError(f"TLS: {exc}"))
            return
        plain.feed_eof()

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    async def close(self) -> None:
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await self._flush()


# ---- reply bodies ---------------------------------------------------------------------------
def _pts(weight: float) -> str:
    """A weight in SpamAssassin's report column: ``%4.1f``, or ``%4.0f`` from +-10 on."""
    return f"{weight:4.0f}" if abs(weight) >= 10 else f"{weight:4.1f}"


def _wrap(text: str, first_width: int, indent: str, width: int = 78) -> str:
    """``text`` wrapped to ``width`` columns, the first line starting at ``first_width``."""
    words, lines, cur, room = text.split(), [], "", width - first_width
    for w in words:
        if cur and len(cur) + 1 + len(w) > room:
            lines.append(cur)
            cur, room = w, width - len(indent)
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return ("\n" + indent).join(lines)


def report_text(verdict: Verdict, hostname: str) -> str:
    """A REPORT body in SpamAssassin's layout: the rules hit with the weight the model gives
    each (its log-odds contribution, in the ``pts`` column), then the tokens that moved the
    model's score most, the model version, the list decision and the verdict id (report it
    with ``mailsift feedback --verdict ID`` or ``POST /v1/feedback``)."""
    verb = "has identified this incoming email as possible spam."
    if not verdict.is_spam:
        verb = "has NOT identified this incoming email as spam."
    score = p.score_text(verdict.score, verdict.required_score, verdict.is_spam)
    out = [
        f'Spam detection software, running on the system "{hostname}",',
        verb,
        "",
        f"Content analysis details:   ({score} points, {verdict.required_score:.1f} required)",
        "",
        " pts rule name              description",
        "---- ---------------------- --------------------------------------------------",
    ]
    for s in verdict.rules:
        desc = s.description or "No description available."
        out.append(f"{_pts(s.score)} {s.name:<22} {_wrap(desc, 28, ' ' * 28)}")
    out += [
        "",
        f"Model {verdict.model_version or '-'}: spam probability {verdict.probability:.4f}",
        "  weight token",
        "-------- ---------------------------------------------------------------------",
    ]
    for t in verdict.tokens:
        out.append(f"{t.weight:+8.3f} {t.token}")
    if verdict.reason:
        out += ["", f"Reason: {verdict.reason}"]
    out += ["", f"Verdict id: {verdict.verdict_id}", ""]
    return "\n".join(out) + "\n"


def stamped(raw: bytes, verdict: Verdict) -> bytes:
    """The message with the SMTP filter's ``X-Spam-*`` fields on top, in the line ending the
    message itself uses (spamc's users mostly pipe LF files)."""
    from mailsift.smtpd import headers as hdr

    fields = b"".join(hdr.fold(n, v) for n, v in hdr.spam_headers(verdict))
    first_nl = raw.find(b"\n")
    if first_nl >= 0 and not raw[:first_nl].endswith(b"\r"):
        fields = fields.replace(b"\r\n", b"\n")
    return fields + raw
