"""The aiosmtpd handler: what happens at each SMTP command (RFC 5321, 3207, 4954, 1870).

* EHLO/HELO: CONNECT- and HELO-stage checks run (once per connection for CONNECT). Their
  refusals are *delayed* to MAIL/RCPT (like Postfix's ``smtpd_delay_reject``), so a user on a
  listed dynamic address can still AUTH, and the log shows who was refused.
* AUTH PLAIN / LOGIN (only over TLS; aiosmtpd neither advertises nor accepts AUTH before
  STARTTLS): argon2 verification off the event loop, failed attempts throttled per IP.
* MAIL: pending connect-stage refusal, MAIL-stage checks (SIZE was checked by aiosmtpd).
* RCPT: recipient limit (``452 4.5.3``), forward-path resolution + relay control + recipient
  validation (``mailsift.smtpd.relay``), RCPT-stage checks per recipient.
* DATA: smuggling forms refused, bare line endings normalised, DATA-stage checks, incoming
  ``X-Spam-*`` and our-id ``Authentication-Results`` removed, scoring, headers stamped, then
  reject (550) / quarantine (250 after its durable write) / next hop (250 only after it
  accepted, or its own 4xx/5xx) / spool (250 after fsync). Without a quarantine, HOLD is
  delivered tagged (``X-Spam-Flag: YES``) and logged. The DATA-stage decision is
  ``mailsift.smtpd.content.judge``, shared with the milter. With ``smtp.after_queue`` (behind
  Postfix's ``content_filter``) a spam reject or a check's rejection is held in the
  quarantine instead of answered 550, which the MTA would turn into a bounce.

No backscatter: every refusal is an SMTP reply in the dialogue; nothing is ever mailed to
anyone about blocked mail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.smtp import MISSING, SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from mailsift import outages
from mailsift.config import Settings
from mailsift.smtpd import headers as hdr
from mailsift.smtpd import replies
from mailsift.smtpd.accounts import Accounts
from mailsift.smtpd.addresses import PathSyntaxError, parse_path
from mailsift.smtpd.checks.base import CheckAction, SmtpContext, Stage
from mailsift.smtpd.content import Judgement, judge, result_headers
from mailsift.smtpd.delivery import DeliveryError, NextHopPool, deliver_async
from mailsift.smtpd.limits import (
    AuthThrottle,
    LineEndings,
    inspect_line_endings,
    normalise_line_endings,
)
from mailsift.smtpd.relay import RecipientPolicy, ip_in, parse_networks
from mailsift.smtpd.runner import CheckRunner, StageOutcome
from mailsift.smtpd.scoring import Scoring
from mailsift.store.base import StoreError
from mailsift.verdict import Action, Envelope, Verdict

if TYPE_CHECKING:
    from mailsift.smtpd.spool import Spool, SpoolRunner

log = logging.getLogger("mailsift.smtpd")


class QuarantineLike(Protocol):
    def hold(self, raw: bytes, envelope: Envelope, verdict: Verdict) -> str: ...


@dataclass(slots=True)
class ConnState:
    """Per connection (survives STARTTLS, unlike aiosmtpd's Session)."""

    ctx: SmtpContext
    our_ip: str = ""
    peer_ip: str = ""  # the connecting client; ctx.client_ip is the XFORWARD one, if any
    peer_port: int = 0
    forwarded: bool = False  # ctx describes a client XFORWARD named
    connect_done: bool = False
    pending: str | None = None  # a delayed CONNECT/HELO-stage refusal
    pending_why: tuple[str, bool] = ("", False)  # (tempfail reason, from an outage)
    connect_reply: tuple[str, CheckAction, str, bool] | None = None
    session_results: dict[str, Any] = field(default_factory=dict)
    deliver_to: list[str] = field(default_factory=list)  # resolved, parallel to rcpt_tos
    messages: int = 0


# the attributes Postfix may send (XFORWARD_README); values are xtext, [UNAVAILABLE] and
# [TEMPUNAVAIL] mean "not known"
XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


def new_queue_id() -> str:
    return uuid.uuid4().hex[:16].upper()


class FilterHandler:
    def __init__(
        self,
        settings: Settings,
        *,
        runner: CheckRunner,
        recipients: RecipientPolicy,
        accounts: Accounts | None,
        scoring: Scoring | None,
        quarantine: QuarantineLike | None = None,
        spool: Spool | None = None,
        spool_runner: SpoolRunner | None = None,
        auth_throttle: AuthThrottle | None = None,
        next_hop: NextHopPool | None = None,
    ) -> None:
        self.settings = settings
        self.next_hop = next_hop  # proxy mode: the kept connections to the next hop
        self.smtp = settings.smtp
        self.runner = runner
        self.recipients = recipients
        self.accounts = accounts
        self.scoring = scoring
        self.quarantine = quarantine
        self.spool = spool
        self.spool_runner = spool_runner
        self._xforward_nets = parse_networks(self.smtp.xforward_hosts)
        self.throttle = auth_throttle or AuthThrottle(
            self.smtp.auth_failures_before_throttle, self.smtp.auth_throttle_window
        )

    # ---- state ---------------------------------------------------------------------------
    def state(self, server: SMTP) -> ConnState:
        st: ConnState | None = getattr(server, "mailsift_state", None)
        if st is None:
            peer = server.session.peer if server.session else None
            ip = peer[0] if isinstance(peer, tuple) else str(peer or "")
            port = peer[1] if isinstance(peer, tuple) else 0
            ctx = SmtpContext(client_ip=ip, client_port=port, session_id=new_queue_id())
            ctx.in_relay_network = self.recipients.in_relay_network(ip)
            st = ConnState(ctx=ctx, peer_ip=ip, peer_port=port)
            transport = server.transport
            sock = transport.get_extra_info("sockname") if transport else None
            st.our_ip = sock[0] if isinstance(sock, tuple) else ""
            server.mailsift_state = st  # type: ignore[attr-defined]
        st.ctx.tls = bool(getattr(server, "is_tls", lambda: False)())
        return st

    def _reset_transaction(self, st: ConnState) -> None:
        ctx = st.ctx
        ctx.mail_from = None
        ctx.rcpt_to = []
        ctx.current_rcpt = None
        ctx.raw_message = None
        ctx.results = dict(st.session_results)
        ctx.whitelisted = any(
            r.action is CheckAction.WHITELIST for r in st.session_results.values()
        )
        st.deliver_to = []

    # ---- greeting stage ------------------------------------------------------------------
    async def _helo_stage(self, server: SMTP, hostname: str) -> None:
        st = self.state(server)
        if st.forwarded:  # HELO/EHLO ends what XFORWARD said (as in Postfix)
            self._set_client(st, st.peer_ip, st.peer_port, None)
            st.forwarded = False
        await self._greeting_checks(st, hostname)

    def _set_client(self, st: ConnState, ip: str, port: int, name: str | None) -> None:
        ctx = st.ctx
        ctx.client_ip, ctx.client_port = ip, port
        ctx.in_relay_network = self.recipients.in_relay_network(ip)
        if name:
            ctx.extra["client_name"] = name
        else:
            ctx.extra.pop("client_name", None)
        st.connect_done = False  # the CONNECT-stage checks are about this client
        st.session_results = {}  # and none of the earlier client's results carry over

    async def _greeting_checks(self, st: ConnState, hostname: str) -> None:
        st.ctx.helo = hostname
        self._reset_transaction(st)
        if not st.connect_done:
            st.connect_done = True
            out = await self.runner.run(Stage.CONNECT, st.ctx)
            st.connect_reply = _delayed(out)
        helo_reply = _delayed(await self.runner.run(Stage.HELO, st.ctx))
        candidates = [r for r in (st.connect_reply, helo_reply) if r is not None]
        rejects = [r for r in candidates if r[1] is CheckAction.REJECT]
        chosen = rejects or candidates
        st.pending = chosen[0][0] if chosen else None
        st.pending_why = (chosen[0][2], chosen[0][3]) if chosen else ("", False)
        st.session_results = dict(st.ctx.results)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        await self._helo_stage(server, hostname)
        session.host_name = hostname
        out = [r for r in responses if not (r.startswith("250-AUTH") and self.accounts is None)]
        out.insert(len(out) - 1, "250-PIPELINING")
        if self.xforward_allowed(self.state(server).peer_ip):
            out.insert(len(out) - 1, "250-XFORWARD " + " ".join(XFORWARD_ATTRS))
        return out

    # ---- XFORWARD (Postfix's XFORWARD_README) ---------------------------------------------
    def xforward_allowed(self, peer_ip: str) -> bool:
        return bool(self._xforward_nets) and ip_in(peer_ip, self._xforward_nets)

    async def xforward(self, server: SMTP, attrs: dict[str, str]) -> str:
        """The Postfix in front names the client it is passing on: from now on (until the
        next XFORWARD, HELO or EHLO) the checks, the Received field and the verdict see that
        client; the CONNECT and HELO stages run again for it (their refusals delayed to MAIL,
        as always). Relaying is still decided by the connecting peer (the Postfix in front
        applied its own relay restrictions)."""
        st = self.state(server)
        if not self.xforward_allowed(st.peer_ip):
            return "550 5.7.0 Error: insufficient authorization"
        if server.envelope is not None and server.envelope.mail_from is not None:
            return "503 5.5.1 Error: MAIL transaction in progress"
        ctx = st.ctx
        addr = attrs.get("ADDR", "")
        if addr:
            try:
                addr = str(ipaddress.ip_address(addr.removeprefix("IPV6:").removeprefix("IPv6:")))
            except ValueError:
                return "501 5.5.4 Bad XFORWARD address syntax"
        port = attrs.get("PORT", "")
        if port and not port.isdigit():
            return "501 5.5.4 Bad XFORWARD port syntax"
        name = attrs.get("NAME", "")
        self._set_client(
            st,
            addr or ctx.client_ip,
            int(port) if port else (0 if addr else ctx.client_port),
            name if name and name.lower() != "unknown" else None,
        )
        st.forwarded = True
        log.info("XFORWARD from %s: client %s (%s)", st.peer_ip, ctx.client_ip, name or "unknown")
        await self._greeting_checks(st, attrs.get("HELO") or ctx.helo or "")
        return "250 2.0.0 Ok"

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, hostname: str
    ) -> str:
        await self._helo_stage(server, hostname)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        self._reset_transaction(self.state(server))
        return "250 2.0.0 OK"

    # ---- AUTH ----------------------------------------------------------------------------
    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, args: list[str]
    ) -> str | None:
        st = self.state(server)
        ip = st.ctx.client_ip
        if self.accounts is None:
            return "504 5.5.4 Unrecognized authentication type"
        try:
            blocked = await asyncio.to_thread(self.throttle.blocked, ip)
        except StoreError as exc:  # the failure count is in the store: no AUTH without it
            return _counted(_AUTH_TEMPFAIL, "auth_store", exc)
        if blocked:
            return _counted(
                "454 4.7.0 Too many failed authentication attempts, try again later",
                "auth_throttle",
                outage=False,
            )
        mech = args[0].upper()
        initial = args[1] if len(args) > 1 else None
        creds = await (
            self._auth_plain(server, initial)
            if mech == "PLAIN"
            else self._auth_login(server, initial)
        )
        if creds is None:
            return None  # the client aborted or sent bad base64; aiosmtpd already answered
        user, password = creds
        try:
            ok = bool(user) and await asyncio.to_thread(self.accounts.verify, user, password)
            if not ok:
                await asyncio.to_thread(self.throttle.failure, ip, user.lower())
            else:
                await asyncio.to_thread(self.throttle.success, ip, user.lower())
        except StoreError as exc:  # accounts or the failure count unreachable
            return _counted(_AUTH_TEMPFAIL, "auth_store", exc)
        if not ok:
            log.info("AUTH failed for %r from %s", user, ip)
            await asyncio.sleep(self.smtp.auth_failure_delay)
            return "535 5.7.8 Authentication credentials invalid"
        session.authenticated = True
        session.auth_data = user  # type: ignore[assignment]
        st.ctx.auth_user = user.lower()
        log.info("AUTH ok for %s from %s", user, ip)
        return "235 2.7.0 Authentication successful"

    async def _auth_plain(self, server: SMTP, initial: str | None) -> tuple[str, str] | None:
        blob: object
        if initial is None or initial == "=":
            blob = await server.challenge_auth("", encode_to_b64=False)
        else:
            blob = _b64(initial)
            if blob is None:
                await server.push("501 5.5.2 Can't decode base64")
                return None
        if blob is MISSING or not isinstance(blob, bytes):
            return None
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 Bad PLAIN response")
            return None
        authz, authc, pw = (p.decode("utf-8", "replace") for p in parts)
        if authz and authz.lower() != authc.lower():
            return "", ""  # no proxy authorisation: counts as a failure
        return authc, pw

    async def _auth_login(self, server: SMTP, initial: str | None) -> tuple[str, str] | None:
        if initial is not None:
            user_b = _b64(initial)
            if user_b is None:
                await server.push("501 5.5.2 Can't decode base64")
                return None
        else:
            got = await server.challenge_auth("Username:")
            if got is MISSING or not isinstance(got, bytes):
                return None
            user_b = got
        pw_b = await server.challenge_auth("Password:")
        if pw_b is MISSING or not isinstance(pw_b, bytes):
            return None
        return user_b.decode("utf-8", "replace"), pw_b.decode("utf-8", "replace")

    # ---- MAIL ----------------------------------------------------------------------------
    def _pending(self, st: ConnState) -> str | None:
        """A delayed connect-stage refusal still applies (not for AUTH users)."""
        if st.pending and not st.ctx.auth_user:
            reason, outage = st.pending_why
            return _counted(st.pending, reason or "connect", outage=outage)
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str,
        mail_options: list[str],
    ) -> str:  # fmt: skip
        st = self.state(server)
        self._reset_transaction(st)
        refusal = self._pending(st)
        if refusal:
            return refusal
        if address != "<>":
            try:
                address = parse_path(address).address  # a source route is dropped (RFC 5321 C)
            except PathSyntaxError as exc:
                return f"553 5.1.7 Bad sender address syntax ({exc})"
        st.ctx.mail_from = "" if address == "<>" else address
        out = await self.runner.run(Stage.MAIL, st.ctx)
        if out.reply:
            self._reset_transaction(st)
            return _stage_reply(out)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.OK_SENDER

    # ---- RCPT ----------------------------------------------------------------------------
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        st = self.state(server)
        if len(envelope.rcpt_tos) >= self.smtp.max_recipients:
            return _counted(replies.TOO_MANY_RCPTS, "too_many_recipients", outage=False)
        refusal = self._pending(st)
        if refusal:
            return refusal
        decision = self.recipients.decide(
            address,
            client_ip=st.peer_ip,
            authenticated=bool(st.ctx.auth_user),
            our_ips=[st.our_ip] if st.our_ip else [],
        )
        if not decision.accepted:
            log.info("RCPT %r from %s refused: %s", address, st.ctx.client_ip, decision.reason)
            return _counted(decision.reply, "recipient_policy", decision.reason, outage=False)
        st.ctx.current_rcpt = decision.deliver_to
        out = await self.runner.run(Stage.RCPT, st.ctx)
        st.ctx.current_rcpt = None
        if out.reply:
            return _stage_reply(out)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        st.deliver_to.append(decision.deliver_to)
        st.ctx.rcpt_to.append(decision.deliver_to)
        return decision.reply

    # ---- DATA ----------------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        st = self.state(server)
        st.messages += 1
        try:
            return await self._data(server, st, envelope)
        finally:
            self._reset_transaction(st)

    async def _data(self, server: SMTP, st: ConnState, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        kind = inspect_line_endings(raw)
        if kind is LineEndings.SMUGGLING:
            log.warning("smuggling attempt from %s refused", st.ctx.client_ip)
            return replies.SMUGGLING
        if kind is LineEndings.BARE:
            if self.smtp.bare_newlines == "reject":
                return replies.BARE_NEWLINE
            raw = normalise_line_endings(raw)
        ctx = st.ctx
        mail_from = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        j = await judge(
            raw,
            ctx,
            runner=self.runner,
            scoring=self.scoring,
            authserv_id=self.smtp.authserv_id,
            mail_from=mail_from,
            rcpt_to=st.deliver_to,
            client_name=_client_name(ctx),
        )
        queue_id = new_queue_id()
        verdict = j.verdict
        held_refusal = j.reply is not None and self._hold_refusal(j)
        if j.reply is not None and not held_refusal:
            if verdict is not None and verdict.action is Action.REJECT:
                log.info("%s rejected as spam (score %.1f)", queue_id, verdict.score)
            return _counted(j.reply, j.reason, j.reply, outage=j.outage)
        stamped = hdr.prepend(j.raw, self._trace_headers(server, st, queue_id, verdict, j.symbols))
        if held_refusal or (
            verdict is not None and verdict.action is Action.HOLD and self.quarantine is not None
        ):
            assert self.quarantine is not None
            hold_as = verdict if verdict is not None else _refusal_verdict(queue_id, j)
            try:
                qid = await asyncio.to_thread(self.quarantine.hold, stamped, j.envelope, hold_as)
            except Exception as exc:
                log.exception("quarantine failed for %s", queue_id)
                return _counted(replies.TEMP_LOCAL_ERROR, "quarantine", exc)
            if held_refusal:
                log.info("%s after the queue: held instead of %r", queue_id, j.reply)
            return replies.accepted(str(qid), "held in quarantine")
        if verdict is not None and verdict.action is Action.HOLD:
            log.warning("%s: verdict HOLD but no quarantine configured: delivered tagged", queue_id)
        return await self._forward(mail_from, st.deliver_to, stamped, queue_id)

    async def _forward(self, mail_from: str, rcpts: list[str], data: bytes, queue_id: str) -> str:
        if self.smtp.mode == "spool" and self.spool is not None:
            try:
                await asyncio.to_thread(self.spool.put, mail_from, rcpts, data, queue_id)
            except OSError as exc:
                log.exception("spool write failed for %s", queue_id)
                return _counted(replies.TEMP_LOCAL_ERROR, "spool", exc)
            if self.spool_runner is not None:
                self.spool_runner.wake(queue_id)
            return replies.accepted(queue_id)
        try:
            if self.next_hop is not None:
                await self.next_hop.deliver(mail_from, rcpts, data)
            else:
                await deliver_async(
                    self.smtp.next_hop_host,
                    self.smtp.next_hop_port,
                    mail_from,
                    rcpts,
                    data,
                    self.smtp.delivery_timeout,
                    helo=self.smtp.hostname,
                )
        except DeliveryError as exc:
            log.info("%s: next hop refused: %s", queue_id, exc)
            if exc.unreachable:
                outages.dependency_failed("next_hop", exc)
            else:
                outages.dependency_ok("next_hop")
            return _counted(replies.from_next_hop(exc.code, exc.message), "next_hop", exc)
        outages.dependency_ok("next_hop")
        return replies.accepted(queue_id, "delivered")

    def _trace_headers(
        self, server: SMTP, st: ConnState, queue_id: str, verdict: Verdict | None,
        symbols: list[Any],
    ) -> list[tuple[str, str]]:  # fmt: skip
        ctx = st.ctx
        tls = getattr(server, "tls_description", lambda: None)()
        fields = [
            hdr.received(
                helo=ctx.helo,
                client_ip=ctx.client_ip,
                client_name=_client_name(ctx),
                by=self.smtp.hostname,
                queue_id=queue_id,
                esmtp=bool(server.session and server.session.extended_smtp),
                tls=tls,
                auth_user=ctx.auth_user,
                recipients=st.deliver_to,
                when=time.time(),
            ),
        ]
        fields.extend(result_headers(self.smtp.authserv_id, ctx, verdict, symbols))
        return fields

    def _hold_refusal(self, j: Judgement) -> bool:
        """After the MTA's queue (``smtp.after_queue``) a refusal would make the MTA bounce
        the message to its (possibly forged) sender: a spam reject or a check's rejection
        (a virus) is held in the quarantine instead. Tempfails stay tempfails."""
        if not self.smtp.after_queue or self.quarantine is None:
            return False
        return j.refused_by is CheckAction.REJECT or (
            j.verdict is not None and j.verdict.action is Action.REJECT
        )

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return _counted("451 4.3.0 Error: internal error, try again later", "internal_error")


def _delayed(out: StageOutcome) -> tuple[str, CheckAction, str, bool] | None:
    """A CONNECT/HELO-stage refusal kept for MAIL/RCPT, with its tempfail reason and
    whether it comes from an outage."""
    if not out.reply:
        return None
    return out.reply, out.action, out.reason, out.outage


# RFC 4954: 454 4.7.0 "Temporary authentication failure"
_AUTH_TEMPFAIL = "454 4.7.0 Temporary authentication failure, try again later"


def _counted(reply: str, reason: str, detail: object = "", outage: bool = True) -> str:
    """``reply``, counted and logged by ``mailsift.outages`` when it is a 4xx."""
    return outages.counted("smtp", reply, reason, detail, outage)


def _stage_reply(out: StageOutcome) -> str:
    assert out.reply is not None
    return _counted(out.reply, out.reason, out.reply, outage=out.outage)


def _refusal_verdict(queue_id: str, j: Judgement) -> Verdict:
    """A check's rejection as a verdict, for the quarantine's record (after the queue)."""
    return Verdict(
        verdict_id=queue_id,
        probability=1.0,
        score=sum(s.score for s in j.symbols),
        required_score=0.0,
        action=Action.REJECT,
        rules=list(j.symbols),
        reason=replies.clean_text(j.reply or "", 200),
    )


def _client_name(ctx: SmtpContext) -> str | None:
    name = ctx.extra.get("client_name") if ctx.extra else None
    return str(name) if name else None


def _b64(text: str) -> bytes | None:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
