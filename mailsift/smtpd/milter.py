"""The milter: mailsift behind Postfix's or Sendmail's ``smtpd_milters`` / ``INPUT_MAIL_FILTER``.

The MTA keeps the SMTP dialogue and its queue; at each SMTP step it asks us over the milter
protocol (version 6, TCP or a Unix socket) and we answer with the same checks and the same
scorer as the SMTP filter (``mailsift.smtpd.runner.CheckRunner`` per stage,
``mailsift.smtpd.content.judge`` at end of message):

==============  ===============================================================================
MTA event       what runs, what we answer
==============  ===============================================================================
connect         CONNECT-stage checks (client lists, DNSBL, reverse DNS); continue
HELO/EHLO       HELO-stage checks; their refusals are delayed to MAIL (as ``smtpd_delay_reject``)
MAIL FROM       a delayed refusal (not for AUTH users, macro ``{auth_authen}``), MAIL checks
RCPT TO         RCPT-stage checks per recipient (greylisting, lists, barring)
header, body    collected (up to ``milter.max_message_size``)
end of message  DATA checks, scorer; then: a refusal -> the reply code (``550 5.7.1 ...``,
                ``451 4.3.0 ...``); otherwise incoming ``X-Spam-*`` / our-id
                ``Authentication-Results`` removed, ``Authentication-Results`` and ``X-Spam-*``
                inserted on top, and a HOLD verdict quarantined in the MTA (Postfix: the hold
                queue, ``postqueue -p`` shows ``!``; ``postsuper -H`` releases)
==============  ===============================================================================

Scoring in-process, the verdict records are written by a ``VerdictWriter`` (in batches,
off the answer's path, as the SMTP filter and the API do); while it refuses (the store is
down, its queue is full) a message gets ``451 4.3.0``; ``stop`` writes what is queued.

Every refusal is a reply in the MTA's SMTP dialogue (``SMFIR_REPLYCODE`` with the text
``mailsift.smtpd.replies`` formats), never a bounce. A protocol error or an internal failure
closes the connection: the MTA then applies its ``milter_default_action`` (document and test:
``tempfail``), so mail is never accepted unscanned.

The wire format (frames, message codecs, flag values) is ``kilter.protocol`` (PyPI
``kilter-protocol``, sans-I/O); this module does the I/O on asyncio and the filter's state.
Frames are read whole with a size cap (``MAX_FRAME``) before decoding, so a bad length
cannot make us buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.exceptions import InsufficientSpace, NeedsMore, UnknownMessage
from kilter.protocol.messages import (
    Abort,
    ActionFlags,
    Body,
    ChangeHeader,
    Close,
    Connect,
    Continue,
    Data,
    EndOfHeaders,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    Header,
    Helo,
    InsertHeader,
    Macro,
    Message,
    Negotiate,
    ProtocolFlags,
    Quarantine,
    ReplyCode,
    Unknown,
)

from mailsift import outages
from mailsift.config import Settings
from mailsift.loopthread import LoopThread
from mailsift.smtpd import headers as hdr
from mailsift.smtpd import replies
from mailsift.smtpd.checks.base import Check, CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.content import judge, result_headers
from mailsift.smtpd.relay import ip_in, parse_networks
from mailsift.smtpd.runner import CheckRunner, StageOutcome
from mailsift.smtpd.scoring import HttpScoring, InProcessScoring, Scoring, verdict_writer_for
from mailsift.smtpd.verdicts import VerdictWriter
from mailsift.verdict import Action

log = logging.getLogger("mailsift.smtpd.milter")

PROTOCOL_VERSION = 6
MAX_FRAME = 4 * 1024 * 1024  # Postfix sends at most 64 KiB (1 MiB with MDS_1M) per frame
# what we ask the MTA for: add/insert and delete header fields, quarantine (hold)
WANTED_ACTIONS = ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS | ActionFlags.QUARANTINE
# header values with their leading space (exact bytes for DKIM); no DATA/unknown events
WANTED_PROTOCOL = (
    ProtocolFlags.HEADER_LEADING_SPACE | ProtocolFlags.NO_UNKNOWN | ProtocolFlags.NO_DATA
)
TOO_BIG = "552 5.3.4 Error: message too big"
INTERNAL = "451 4.3.0 Error: internal error, try again later"
_LEN = struct.Struct("!L")


class MilterProtocolError(Exception):
    """The MTA sent something the protocol does not allow: the connection is closed."""


def encode(msg: Message) -> bytes:
    """One frame (length, command, data) for ``msg``."""
    size = 64
    while True:
        buf = SimpleBuffer(size)
        try:
            msg.pack(buf)
        except InsufficientSpace:
            size *= 4
            continue
        return buf[:].tobytes()


def decode(frame: bytes) -> Message:
    """The message of one whole frame (length prefix included), its data copied out."""
    buf = SimpleBuffer(len(frame))
    buf[:] = frame
    try:
        msg, _ = Message.unpack(buf)
    except (NeedsMore, UnknownMessage, ValueError, struct.error, UnicodeError) as exc:
        raise MilterProtocolError(f"bad frame {frame[4:5]!r}: {exc!r}") from exc
    msg.freeze()
    return msg


def reply_code(reply: str) -> ReplyCode:
    """``SMFIR_REPLYCODE``: the SMTP reply, NUL-terminated (libmilter's wire form), with
    ``%`` doubled (the MTA formats the text printf-style: a lone ``%`` voids it)."""
    text = replies.clean_text(reply, 500).replace("%", "%%")
    return ReplyCode(text.encode("ascii", "replace") + b"\0")


@dataclass(slots=True)
class _Transaction:
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    too_big: bool = False
    started: bool = False  # MAIL accepted: a message is under way until its end or abort


class MilterSession:
    """One MTA connection: the filter's state across its SMTP sessions and messages."""

    def __init__(
        self,
        settings: Settings,
        runner: CheckRunner,
        scoring: Scoring | None,
        relay_networks: Sequence[Any],
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.scoring = scoring
        self.relay_networks = relay_networks
        self.leading_space = False
        self.actions = ActionFlags.NONE
        self.macros: dict[str, str] = {}
        self.ctx = SmtpContext(client_ip="")
        self.client_name: str | None = None
        self.connect_reply: StageOutcome | None = None
        self.pending: StageOutcome | None = None  # a refusal delayed to MAIL
        self.session_results: dict[str, CheckResult] = {}
        self.tx = _Transaction()

    @property
    def busy(self) -> bool:
        """A message is under way (MAIL accepted, its end of message not yet answered)."""
        return self.tx.started

    # ---- the conversation --------------------------------------------------------------
    async def handle(self, msg: Message) -> list[Message] | None:
        """The answer frames for one MTA message; None closes the connection."""
        match msg:
            case Negotiate():
                return [self._negotiate(msg)]
            case Macro():
                self.macros.update(msg.macros)
                return []
            case Connect():
                await self._connect(msg)
                return [Continue()]
            case Helo():
                await self._helo(msg.hostname)
                return [Continue()]
            case EnvelopeFrom():
                return [await self._mail(msg)]
            case EnvelopeRecipient():
                return [await self._rcpt(msg)]
            case Header():
                self._header(msg.name, bytes(msg.value))
                return [Continue()]
            case Body():
                self._body(bytes(msg.content))
                return [Continue()]
            case EndOfMessage():
                self._body(bytes(msg.content))
                try:
                    return await self._end_of_message()
                finally:
                    self._reset_transaction()
            case Data() | EndOfHeaders() | Unknown():
                return [Continue()]
            case Abort():
                self._reset_transaction()
                return []
            case Close():
                return None
        raise MilterProtocolError(f"unexpected message from the MTA: {msg!r}")

    def _negotiate(self, offer: Negotiate) -> Negotiate:
        if offer.version < 2:
            raise MilterProtocolError(f"milter protocol version {offer.version} is too old")
        actions = WANTED_ACTIONS & offer.action_flags
        protocol = WANTED_PROTOCOL & offer.protocol_flags
        self.leading_space = bool(protocol & ProtocolFlags.HEADER_LEADING_SPACE)
        missing = WANTED_ACTIONS & ~actions
        if missing:
            log.warning("the MTA does not offer %r: those actions are skipped", missing)
        self.actions = actions
        return Negotiate(min(offer.version, PROTOCOL_VERSION), actions, protocol)

    async def _connect(self, msg: Connect) -> None:
        addr = msg.address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            ip, port = str(addr.ipv4_mapped), msg.port
        elif isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            ip, port = str(addr), msg.port
        else:
            # a Unix-socket or unknown peer (local submission): counts as the local host
            ip, port = "127.0.0.1", 0
        name = msg.hostname.strip()
        self.client_name = None if not name or name.startswith("[") or name == "unknown" else name
        self.ctx = SmtpContext(client_ip=ip, client_port=port, session_id=self.macros.get("i", ""))
        self.ctx.in_relay_network = ip_in(ip, self.relay_networks)
        out = await self.runner.run(Stage.CONNECT, self.ctx)
        self.connect_reply = out if out.reply else None
        self.pending = self.connect_reply
        self.session_results = dict(self.ctx.results)

    async def _helo(self, hostname: str) -> None:
        ctx = self.ctx
        ctx.helo = hostname
        ctx.tls = bool(self.macros.get("{tls_version}"))
        self._reset_transaction()
        out = await self.runner.run(Stage.HELO, ctx)
        helo_reply = out if out.reply else None
        candidates = [r for r in (self.connect_reply, helo_reply) if r is not None]
        rejects = [r for r in candidates if r.action is CheckAction.REJECT]
        chosen = rejects or candidates
        self.pending = chosen[0] if chosen else None
        self.session_results = dict(ctx.results)

    async def _mail(self, msg: EnvelopeFrom) -> Message:
        self._reset_transaction()
        ctx = self.ctx
        auth = self.macros.get("{auth_authen}", "")
        ctx.auth_user = auth.lower() or None
        ctx.tls = ctx.tls or bool(self.macros.get("{tls_version}"))
        if self.pending is not None and not ctx.auth_user:
            return _refusal(self.pending)
        sender = _address(bytes(msg.sender))
        ctx.mail_from = sender
        self.tx.mail_from = sender
        out = await self.runner.run(Stage.MAIL, ctx)
        if out.reply:
            self._reset_transaction()
            return _refusal(out)
        self.tx.started = True
        return Continue()

    async def _rcpt(self, msg: EnvelopeRecipient) -> Message:
        ctx = self.ctx
        rcpt = _address(bytes(msg.recipient))
        ctx.current_rcpt = rcpt
        try:
            out = await self.runner.run(Stage.RCPT, ctx)
        finally:
            ctx.current_rcpt = None
        if out.reply:
            return _refusal(out)
        ctx.rcpt_to.append(rcpt)
        self.tx.rcpt_to.append(rcpt)
        return Continue()

    def _header(self, name: str, value: bytes) -> None:
        tx = self.tx
        if self.leading_space:
            line = name.encode("ascii") + b":" + value
        else:
            line = name.encode("ascii") + b": " + value
        # the MTA separates folded lines with LF; the message we score has CRLF
        line = line.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
        self._count(len(line))
        if not tx.too_big:
            tx.headers.append((name, line))

    def _body(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._count(len(chunk))
        if not self.tx.too_big:
            self.tx.body.append(chunk)

    def _count(self, n: int) -> None:
        tx = self.tx
        tx.size += n
        if tx.size > self.settings.milter.max_message_size and not tx.too_big:
            tx.too_big = True
            tx.headers.clear()
            tx.body.clear()

    async def _end_of_message(self) -> list[Message]:
        tx, ctx = self.tx, self.ctx
        if tx.too_big:
            return [reply_code(TOO_BIG)]
        raw = b"".join(line for _, line in tx.headers) + b"\r\n" + b"".join(tx.body)
        authserv_id = self.settings.smtp.authserv_id
        j = await judge(
            raw,
            ctx,
            runner=self.runner,
            scoring=self.scoring,
            authserv_id=authserv_id,
            mail_from=tx.mail_from,
            rcpt_to=tx.rcpt_to,
            client_name=self.client_name,
        )
        qid = self.macros.get("i", "")
        verdict = j.verdict
        if j.reply:
            if verdict is not None and verdict.action is Action.REJECT:
                log.info("%s rejected as spam (score %.1f)", qid, verdict.score)
            return [reply_code(outages.counted("milter", j.reply, j.reason, outage=j.outage))]
        out: list[Message] = []
        if self.actions & ActionFlags.CHANGE_HEADERS:
            out.extend(self._delete_untrusted(authserv_id))
        if self.actions & ActionFlags.ADD_HEADERS:
            fields = result_headers(authserv_id, ctx, verdict, j.symbols)
            for i, (name, value) in enumerate(fields):
                out.append(InsertHeader(i, name, self._header_value(name, value)))
        if verdict is not None and verdict.action is Action.HOLD:
            if self.actions & ActionFlags.QUARANTINE:
                reason = f"mailsift: spam score {verdict.score:.1f} ({verdict.verdict_id})"
                out.append(Quarantine(reason))
                log.info("%s held (score %.1f)", qid, verdict.score)
            else:
                log.warning("%s: verdict HOLD but the MTA offers no quarantine: tagged", qid)
        out.append(Continue())
        return out

    def _delete_untrusted(self, authserv_id: str) -> list[Message]:
        """``SMFIR_CHGHEADER`` with an empty value deletes the n-th field of that name;
        the highest n first, so the earlier indexes stay valid."""
        seen: dict[str, int] = {}
        drop: list[tuple[str, int]] = []
        for name, line in self.tx.headers:
            key = name.lower()
            seen[key] = seen.get(key, 0) + 1
            if hdr.is_untrusted(key, hdr.field_value(line), authserv_id):
                drop.append((name, seen[key]))
        return [ChangeHeader(index, name, b"") for name, index in reversed(drop)]

    def _header_value(self, name: str, value: str) -> bytes:
        """A value folded as the milter API wants it: LF + TAB between lines."""
        folded = hdr.fold(name, value).decode("utf-8").rstrip("\r\n")
        text = folded.split(":", 1)[1].replace("\r\n", "\n")
        return (text if self.leading_space else text.lstrip(" ")).encode("utf-8")

    def _reset_transaction(self) -> None:
        ctx = self.ctx
        ctx.mail_from = None
        ctx.rcpt_to = []
        ctx.current_rcpt = None
        ctx.raw_message = None
        ctx.results = dict(self.session_results)
        ctx.whitelisted = any(
            r.action is CheckAction.WHITELIST for r in self.session_results.values()
        )
        self.tx = _Transaction()


def _refusal(out: StageOutcome) -> ReplyCode:
    """A check's refusal as the MTA's reply; a 4xx is counted and logged as the SMTP
    filter's are (``mailsift_tempfails_total{service="milter", reason}``)."""
    assert out.reply is not None
    return reply_code(outages.counted("milter", out.reply, out.reason, outage=out.outage))


def _address(arg: bytes) -> str:
    """``<a@b>`` -> ``a@b``; ``<>`` -> "" (the null sender)."""
    text = arg.decode("utf-8", "replace").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


class MilterServer(LoopThread):
    thread_name = "mailsift-milter"
    """The milter on its own event loop in a background thread (like ``FilterServer``).

    ``MilterServer(settings, service, checks)``: listens on ``milter.socket`` (a Unix socket)
    when set, else on ``milter.host:milter.port`` (port 0 picks a free one: read ``.port``).
    Scores in-process through ``service`` or over HTTP when ``api.scorer_url`` is set.
    """

    def __init__(
        self,
        settings: Settings,
        service: Any = None,
        checks: Sequence[Check] | None = None,
        *,
        scoring: Scoring | None = None,
        sock: socket.socket | None = None,
        model_sync: Any = None,
    ) -> None:
        """``sock``: a listening socket (TCP or Unix) to serve on, bound by the supervisor
        of ``mailsift serve milter``'s workers, which also removes the Unix socket's file.
        ``model_sync``: the ModelSync that follows model reloads for ``service``, made
        before its model was loaded; the serving command starts it."""
        super().__init__()
        self._sock = sock
        self.model_sync = model_sync
        self.settings = settings
        self.verdict_writer: VerdictWriter | None = None
        if scoring is None:
            if settings.api.scorer_url:
                scoring = HttpScoring(settings.api.scorer_url, settings.api.scorer_api_key)
            elif service is not None:
                self.verdict_writer = verdict_writer_for(service)
                scoring = InProcessScoring(service, self.verdict_writer)
        self.scoring = scoring
        self.runner = CheckRunner(checks or [], settings.smtp.check_timeout)
        self.relay_networks = parse_networks(settings.smtp.relay_networks)
        self.port: int | None = None
        self.socket_path: Path | None = settings.milter.socket
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.StreamWriter, MilterSession] = {}
        self._draining = False

    @property
    def address(self) -> str:
        """The address in Postfix's ``smtpd_milters`` syntax."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"inet:{self.settings.milter.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = MilterSession(self.settings, self.runner, self.scoring, self.relay_networks)
        self._sessions[writer] = session
        timeout = self.settings.milter.idle_timeout
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(4), timeout)
                (size,) = _LEN.unpack(head)
                if size < 1 or size > MAX_FRAME:
                    raise MilterProtocolError(f"frame of {size} bytes")
                frame = head + await asyncio.wait_for(reader.readexactly(size), timeout)
                try:
                    answers = await session.handle(decode(frame))
                except MilterProtocolError:
                    raise
                except Exception:
                    log.exception("milter: internal error; the MTA applies its default action")
                    return
                if answers is None:
                    return
                if answers:
                    writer.write(b"".join(encode(a) for a in answers))
                    await writer.drain()
                if self._draining and not session.busy:
                    return  # stopping: the message is answered; the MTA reconnects elsewhere
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the MTA closed the connection (it does so between sessions)
        except TimeoutError:
            log.info("milter: MTA connection idle for %.0fs, closed", timeout)
        except MilterProtocolError as exc:
            log.warning("milter: protocol error, closing: %s", exc)
        finally:
            self._sessions.pop(writer, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _start_async(self) -> None:
        m = self.settings.milter
        if self._sock is not None:
            if self._sock.family == socket.AF_UNIX:
                self._server = await asyncio.start_unix_server(self._serve, sock=self._sock)
            else:
                self._server = await asyncio.start_server(self._serve, sock=self._sock)
                self.port = int(self._server.sockets[0].getsockname()[1])
        elif self.socket_path is not None:
            path = self.socket_path
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()  # a stale socket of an earlier run
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, m.socket_mode)
        else:
            self._server = await asyncio.start_server(self._serve, m.host, m.port)
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def _drain(self, timeout: float) -> None:
        """Stop listening; close each MTA connection once it is between messages, waiting
        up to ``timeout`` s for the messages under way to be answered (a connection closed
        mid-message makes the MTA apply its default action: a tempfail, a delay)."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._sessions and loop.time() < deadline:
            for writer, session in list(self._sessions.items()):
                if not session.busy:
                    writer.close()
            await asyncio.sleep(0.05)
        if self._sessions:
            log.warning("milter: %d messages still under way after %g s: closed",
                        len(self._sessions), timeout)  # fmt: skip

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._sessions):
            w.close()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        if isinstance(self.scoring, HttpScoring):
            await self.scoring.aclose()
        if self.socket_path is not None and self._sock is None:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()

    def start(self) -> MilterServer:
        self._start_thread()
        log.info("milter listening on %s", self.address)
        return self

    def stop(self, drain: float = 0.0) -> None:
        """Stop; with ``drain`` > 0, first let the messages under way be answered (up to
        ``drain`` seconds, see ``_drain``)."""
        self._drain_thread(drain)
        self._stop_thread()
        if self.verdict_writer is not None:  # the sessions are over: write what is queued
            self.verdict_writer.close(max(drain, self.settings.milter.shutdown_timeout))
