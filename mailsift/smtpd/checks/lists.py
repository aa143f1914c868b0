"""Black and white lists at SMTP time, global and per user.

The lists live in the store (``store.lists``) and are read through
``mailsift.store.lists.StoreListPolicy``: entries by address, ``*@domain``, domain (and its
subdomains), Type 2 wildcard, IP or CIDR; kinds ``allow``/``block`` (global) and
``trusted``/``untrusted`` (one recipient's own lists). A white entry beats a black one, so a
sender on both lists is whitelisted, and the whitelist overrides the anti-spam verdict.

- ``ClientLists`` (CONNECT): the client IP on the global allow list: ``WHITELIST`` at once
  (DNSBL and reverse-DNS rejections no longer apply). A blocked IP is decided at MAIL, where
  a white-listed sender can still win.
- ``SenderLists`` (MAIL): MAIL FROM and client IP against the global lists: ``allow`` ->
  ``WHITELIST`` (``ctx.whitelisted``: greylisting, DNSBL and the spam verdict are skipped);
  ``block`` -> ``REJECT`` (``550 5.7.1``).
- ``RecipientLists`` (RCPT): the recipient's own lists: ``trusted`` -> accepted with
  ``USER_WHITELIST``, not greylisted for that recipient (``ctx.extra``); the scoring service
  then applies the same list to the verdict (when every recipient trusts the sender);
  ``untrusted`` -> that recipient is refused (``550 5.7.1``), the others still get the message.

A store failure is a result (``LISTS_TEMPERROR``, ``451 4.3.0``). The header From is matched
later by the scoring service with the same policy (it is only known after DATA).

Symbols: ``WHITELIST_IP``, ``WHITELIST_SENDER``, ``BLACKLIST_IP``, ``BLACKLIST_SENDER``,
``USER_WHITELIST``, ``USER_BLACKLIST``, ``LISTS_TEMPERROR``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import ClassVar

from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.registry import register_check
from mailsift.smtpd.checks.scores import symbol
from mailsift.store.lists import StoreListPolicy
from mailsift.verdict import Envelope, ListDecision

TRUSTED_RCPTS_KEY = "mailsift.trusted_rcpts"  # (sender, recipient) pairs: recipient trusts sender


def _is_ip_pattern(reason: str) -> bool:
    """Whether the decisive pattern (in parentheses at the end of the reason) is an IP/CIDR."""
    if not reason.endswith(")") or "(" not in reason:
        return False
    pattern = reason.rsplit("(", 1)[1][:-1].split(": ")[-1]
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return True


class _ListCheck:
    name: ClassVar[str]
    stage: ClassVar[Stage]

    def __init__(self, policy: StoreListPolicy) -> None:
        self.policy = policy

    async def _decide(
        self, ctx: SmtpContext, *, sender: bool, rcpt: str | None
    ) -> ListDecision | None:
        env = Envelope(
            client_ip=ctx.client_ip,
            helo=ctx.helo,
            mail_from=ctx.mail_from if sender else None,
            rcpt_to=(rcpt,) if rcpt else (),
            auth_user=ctx.auth_user,
        )
        snap = self.policy.cached()
        if snap is not None:  # the lists in memory: no store query, no thread
            if rcpt:
                return self.policy.decide_for_recipient(rcpt, env, "", snap)
            return self.policy.decide(env, "", snap)
        if rcpt:  # the store is asked: off the event loop
            return await asyncio.to_thread(self.policy.decide_for_recipient, rcpt, env, "")
        return await asyncio.to_thread(self.policy.decide, env, "")

    async def run(self, ctx: SmtpContext) -> CheckResult:
        try:
            decision = await self._lookup(ctx)
        except Exception as exc:  # the store is down: say so, never guess
            return CheckResult(
                self.name,
                action=CheckAction.TEMPFAIL,
                symbols=[symbol("LISTS_TEMPERROR", f"{type(exc).__name__}: {exc}"[:200])],
                reason="Sender lists temporarily unavailable, please try again later",
                enhanced_code="4.3.0",
                result="temperror",
            )
        if decision is None:
            return CheckResult(self.name, result="none")
        return self._result(decision)

    async def _lookup(self, ctx: SmtpContext) -> ListDecision | None:
        raise NotImplementedError

    def _result(self, d: ListDecision) -> CheckResult:
        by_ip = _is_ip_pattern(d.reason)
        if d.kind == "allow":
            name = "WHITELIST_IP" if by_ip else "WHITELIST_SENDER"
            return self._white(name, d)
        if d.kind == "trusted":
            return CheckResult(
                self.name,
                symbols=[symbol("USER_WHITELIST", d.reason)],
                result=d.kind,
                details={"decision": d.kind, "why": d.reason},
            )
        name = {"block": "BLACKLIST_IP" if by_ip else "BLACKLIST_SENDER"}.get(
            d.kind, "USER_BLACKLIST"
        )
        return CheckResult(
            self.name,
            action=CheckAction.REJECT,
            symbols=[symbol(name, d.reason)],
            reason="Sender refused by local policy",
            enhanced_code="5.7.1",
            result=d.kind,
            details={"decision": d.kind, "why": d.reason},
        )

    def _white(self, name: str, d: ListDecision) -> CheckResult:
        return CheckResult(
            self.name,
            action=CheckAction.WHITELIST,
            symbols=[symbol(name, d.reason)],
            result=d.kind,
            details={"decision": d.kind, "why": d.reason},
        )


@register_check(
    build=lambda env: ClientLists(env.lists),
    symbols=("WHITELIST_IP", "WHITELIST_SENDER", "LISTS_TEMPERROR"),
)
class ClientLists(_ListCheck):
    name = "lists_client"
    stage = Stage.CONNECT

    async def _lookup(self, ctx: SmtpContext) -> ListDecision | None:
        d = await self._decide(ctx, sender=False, rcpt=None)
        return d if d is not None and d.kind == "allow" else None


@register_check(
    build=lambda env: SenderLists(env.lists),
    symbols=(
        "WHITELIST_IP",
        "WHITELIST_SENDER",
        "BLACKLIST_IP",
        "BLACKLIST_SENDER",
        "LISTS_TEMPERROR",
    ),
)
class SenderLists(_ListCheck):
    name = "lists_sender"
    stage = Stage.MAIL

    async def _lookup(self, ctx: SmtpContext) -> ListDecision | None:
        return await self._decide(ctx, sender=True, rcpt=None)


@register_check(
    build=lambda env: RecipientLists(env.lists),
    symbols=("USER_WHITELIST", "USER_BLACKLIST", "LISTS_TEMPERROR"),
)
class RecipientLists(_ListCheck):
    name = "lists_recipient"
    stage = Stage.RCPT

    async def _lookup(self, ctx: SmtpContext) -> ListDecision | None:
        rcpt = ctx.current_rcpt
        if not rcpt:
            return None
        d = await self._decide(ctx, sender=True, rcpt=rcpt)
        if d is not None and d.kind == "trusted":
            pair = ((ctx.mail_from or "").lower(), rcpt.lower())
            ctx.extra.setdefault(TRUSTED_RCPTS_KEY, set()).add(pair)
        return d if d is not None and d.kind in ("trusted", "untrusted") else None
