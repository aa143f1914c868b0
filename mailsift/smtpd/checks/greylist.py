"""Greylisting: defer the first attempt of an unknown triplet.

The triplet is (client network, normalised sender, recipient): IPv4 clients are grouped by
/24 and IPv6 by /64 (a retry often comes from a sibling host); senders lose their ``+ext``, a
BATV ``prvs=TAG=`` prefix and VERP numbers (so each mailing-list bounce address is one sender);
large sender pools (``settings.greylist.sender_pool_domains``: many IPs, one domain) use the
sender domain instead of the network, so they are not delayed for hours.

- unknown triplet: ``TEMPFAIL`` (``451 4.7.1 Greylisted, please try again later``);
- a retry before ``delay`` (300 s): deferred again; after it and within ``retry_window``
  (2 days): accepted and remembered for ``expire`` (35 days, refreshed on every delivery);
- a client network that passed ``auto_whitelist_after`` (5) times is not greylisted any more;
- authenticated users and relay networks (``skip_authenticated``, ``skip_relay_clients``:
  ``GREYLIST_SKIPPED`` with the reason), whitelisted sessions (skipped by the runner) and
  senders on the recipient's own white list (``lists.RecipientLists``) are never greylisted.

RFC 5321 4.5.4.1 (clients must retry after a 4xx), RFC 6647 (greylisting BCP).
Store: ``mailsift.store.greylist`` (SQLite / Redis); its failure is a result
(``GREYLIST_TEMPERROR``; tempfail or accept by ``on_error``).

Symbols: ``GREYLIST_DEFERRED``, ``GREYLIST_EARLY``, ``GREYLIST_PASSED``, ``GREYLIST_KNOWN``,
``GREYLIST_CLIENT_WHITELISTED``, ``GREYLIST_SKIPPED``, ``GREYLIST_TEMPERROR``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

from mailsift.config import GreylistSettings
from mailsift.smtpd.checks.base import (
    CheckAction,
    CheckResult,
    Clock,
    SmtpContext,
    Stage,
    system_clock,
)
from mailsift.smtpd.checks.context import domain_of, local_part_of
from mailsift.smtpd.checks.dns import parse_ip
from mailsift.smtpd.checks.lists import TRUSTED_RCPTS_KEY
from mailsift.smtpd.checks.scores import symbol
from mailsift.store.greylist import GreylistStore, GreylistStoreError, Triplet

GREYLIST_TEXT = "Greylisted, please try again later"
_BATV_RE = re.compile(r"^(?:prvs|msprvs\d*|btv1)=[^=]*=(.+)$", re.IGNORECASE)
_VERP_NUMBER_RE = re.compile(r"\b\d+\b")
MAX_PART = 256
PURGE_EVERY = 1000  # decisions between purges of expired state


def client_network(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of `ip`; `ip` itself when it is not an address."""
    addr = parse_ip(ip)
    if addr is None:
        return ip[:MAX_PART]
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def normalise_sender(address: str | None) -> str:
    """Lower-case, without BATV tag, ``+extension`` and VERP numbers (``<>`` stays "")."""
    addr = (address or "").strip().strip("<>").lower()
    if not addr:
        return ""
    local, domain = local_part_of(addr), domain_of(addr)
    m = _BATV_RE.match(local)
    if m:
        local = m.group(1)
    local = local.split("+", 1)[0]
    local = _VERP_NUMBER_RE.sub("#", local)
    return f"{local}@{domain}"[:MAX_PART] if domain else local[:MAX_PART]


@dataclass(frozen=True, slots=True)
class TripletKey:
    origin: str  # client network, or "pool:<domain>"
    sender: str
    recipient: str

    def __str__(self) -> str:
        return f"{self.origin}|{self.sender}|{self.recipient}"


class Greylist:
    name: ClassVar[str] = "greylist"
    stage: ClassVar[Stage] = Stage.RCPT
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True

    def __init__(
        self, settings: GreylistSettings, store: GreylistStore, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        # the backend a temperror result counts against ("redis", "sqlite")
        self.dependency = str(getattr(store, "dependency", "greylist store"))
        self.pools = [d.lower().strip(".") for d in settings.sender_pool_domains]
        self._decisions = 0

    def pool_of(self, sender: str) -> str | None:
        dom = domain_of(sender)
        for p in self.pools:
            if dom == p or dom.endswith("." + p):
                return p
        return None

    def triplet(self, ctx: SmtpContext) -> TripletKey:
        sender = normalise_sender(ctx.mail_from)
        pool = self.pool_of(sender)
        origin = f"pool:{pool}" if pool else client_network(ctx.client_ip)
        rcpt = (ctx.current_rcpt or "").strip().strip("<>").lower()[:MAX_PART]
        return TripletKey(origin, sender, rcpt)

    def on_skip(self, ctx: SmtpContext, why: str) -> CheckResult:
        """The result for a session greylisting does not apply to (an authenticated or relay
        client, by the skip flags; a sender on the recipient's own white list)."""
        return CheckResult(self.name, symbols=[symbol("GREYLIST_SKIPPED", why)], result="skip")

    async def run(self, ctx: SmtpContext) -> CheckResult:
        pair = ((ctx.mail_from or "").lower(), (ctx.current_rcpt or "").lower())
        if pair in ctx.extra.get(TRUSTED_RCPTS_KEY, ()):
            return self.on_skip(ctx, "on the recipient's white list")
        key = self.triplet(ctx)
        now = self.clock()
        try:
            return await asyncio.to_thread(self._decide, key, client_network(ctx.client_ip), now)
        except GreylistStoreError as exc:
            return self._store_error(str(exc))

    def _decide(self, key: TripletKey, client: str, now: float) -> CheckResult:
        s = self.settings
        self._decisions += 1
        if self._decisions % PURGE_EVERY == 0:
            self.store.purge(now)  # expired triplets and clients (Redis also expires by TTL)
        details = {"triplet": str(key)}
        if s.auto_whitelist_after > 0 and self.store.client_passes(client, now) >= (
            s.auto_whitelist_after
        ):
            return self._accept("GREYLIST_CLIENT_WHITELISTED", f"{client} passed often", details)
        t = self.store.get_triplet(str(key), now)
        if t is None or (t.passed is None and now - t.first_seen > s.retry_window):
            self.store.put_triplet(str(key), Triplet(now, None, now, now + s.retry_window))
            return self._defer("GREYLIST_DEFERRED", s.delay, details)
        if t.passed is None:
            waited = now - t.first_seen
            if waited < s.delay:
                self.store.put_triplet(
                    str(key), Triplet(t.first_seen, None, now, t.first_seen + s.retry_window)
                )
                return self._defer("GREYLIST_EARLY", s.delay - waited, details)
            self.store.put_triplet(str(key), Triplet(t.first_seen, now, now, now + s.expire))
            passes = self.store.add_client_pass(client, now, now + s.expire)
            details["client_passes"] = str(passes)
            return self._accept("GREYLIST_PASSED", f"retried after {waited:.0f} s", details)
        self.store.put_triplet(str(key), Triplet(t.first_seen, t.passed, now, now + s.expire))
        return self._accept("GREYLIST_KNOWN", "triplet seen before", details)

    def _accept(self, name: str, desc: str, details: dict[str, str]) -> CheckResult:
        return CheckResult(self.name, symbols=[symbol(name, desc)], result="pass", details=details)

    def _defer(self, name: str, retry_after: float, details: dict[str, str]) -> CheckResult:
        return CheckResult(
            self.name,
            action=CheckAction.TEMPFAIL,
            symbols=[symbol(name)],
            reason=GREYLIST_TEXT,
            enhanced_code="4.7.1",
            result="deferred",
            details={**details, "retry_after": f"{max(0.0, retry_after):.0f}"},
        )

    def _store_error(self, why: str) -> CheckResult:
        res = CheckResult(
            self.name, symbols=[symbol("GREYLIST_TEMPERROR", why)], result="temperror"
        )
        if self.settings.on_error == "tempfail":
            res.action = CheckAction.TEMPFAIL
            res.enhanced_code = "4.7.1"
            res.reason = "Greylisting temporarily unavailable, please try again later"
        return res
