"""DNS block lists for the client IP and for the domains of the URLs in the body (item 12).

IP lists (RFC 5782): the client address is reversed (IPv4 octets; IPv6 nibbles, RFC 3596
order) and looked up as an A record under each configured ``kind = "ip"`` zone; domain lists
(Spamhaus DBL / SURBL / URIBL style) look up ``<registrable domain>.<zone>`` for the distinct
URL domains of the message (``kind = "domain"``, DATA stage).

An answer in 127.0.0.0/8 is a listing; its return code maps to a reason through the zone's
``codes`` (e.g. ``127.0.0.2 -> SBL``, ``127.0.0.4 -> XBL``). An answer in 127.255.255.0/24 is
the list telling us it refuses our query (public resolver, over quota): an error, never a
listing. An answer outside 127/8 is a broken/hijacked zone and is ignored. Timeouts and
SERVFAIL are results (``*_TEMPERROR``), and the session's DNS budget bounds the wait.

Each listing scores its zone's ``weight`` once per zone; when the total reaches
``reject_threshold`` (connect) or ``uri_reject_threshold`` (DATA) the check rejects
(``550 5.7.1``), otherwise it only scores.

Symbols: ``DNSBL_<ZONE>_<REASON>`` (e.g. ``DNSBL_SPAMHAUS_ZEN_SBL``), ``DNSBL_BLOCKED_QUERY``,
``DNSBL_TEMPERROR``; ``URIBL_<ZONE>_<REASON>``, ``URIBL_BLOCKED_QUERY``, ``URIBL_TEMPERROR``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

import dns.asyncresolver

from mailsift.config import DnsblSettings, DnsblZone, DnsSettings, MessageSettings, Settings
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.context import parsed_message, symbol_part
from mailsift.smtpd.checks.dns import DnsCheck, Lookup, parse_ip, reverse_name
from mailsift.smtpd.checks.registry import CheckEnv, register_check
from mailsift.smtpd.checks.scores import symbol
from mailsift.verdict import Symbol

LISTING_NET = ipaddress.ip_network("127.0.0.0/8")
REFUSED_NET = ipaddress.ip_network("127.255.255.0/24")


# Return codes of well-known lists, used when a zone's `codes` is empty
# (https://docs.spamhaus.com/datasets/docs/source/40-real-world-usage/PublicMirrors/MTAs/020-Postfix.html)
WELL_KNOWN_CODES: dict[str, dict[str, str]] = {
    "zen.spamhaus.org": {
        "127.0.0.2": "SBL", "127.0.0.3": "SBL_CSS", "127.0.0.4": "XBL", "127.0.0.5": "XBL",
        "127.0.0.6": "XBL", "127.0.0.7": "XBL", "127.0.0.9": "DROP", "127.0.0.10": "PBL_ISP",
        "127.0.0.11": "PBL",
    },
    "dbl.spamhaus.org": {
        "127.0.1.2": "SPAM", "127.0.1.4": "PHISH", "127.0.1.5": "MALWARE",
        "127.0.1.6": "BOTNET_CC", "127.0.1.102": "ABUSED_SPAM", "127.0.1.103": "ABUSED_REDIRECTOR",
        "127.0.1.104": "ABUSED_PHISH", "127.0.1.105": "ABUSED_MALWARE",
        "127.0.1.106": "ABUSED_BOTNET_CC",
    },
}  # fmt: skip


def zone_codes(zone: DnsblZone) -> dict[str, str]:
    if zone.codes:
        return zone.codes
    name = zone.zone.strip(".").lower()
    for known, codes in WELL_KNOWN_CODES.items():
        if name == known or name.endswith("." + known.split(".", 1)[0] + ".dq.spamhaus.net"):
            return codes
    return {}


def zone_symbol(zone: DnsblZone) -> str:
    if zone.symbol:
        return symbol_part(zone.symbol)
    labels = [lb for lb in zone.zone.strip(".").split(".") if lb]
    return symbol_part("_".join(labels[:2]))


@dataclass(slots=True)
class ZoneOutcome:
    """What one zone said about one IP address or domain (`queried`)."""

    zone: DnsblZone
    queried: str
    reasons: list[str] = field(default_factory=list)  # listing reasons, e.g. ["SBL"]
    codes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 127.255.255.x answers
    failed: str = ""  # timeout / error text

    @property
    def listed(self) -> bool:
        return bool(self.reasons)


def classify(zone: DnsblZone, queried: str, lookup: Lookup) -> ZoneOutcome:
    out = ZoneOutcome(zone, queried)
    if lookup.failed:
        out.failed = f"{lookup.status}: {lookup.error}"
        return out
    for rec in lookup.records:
        try:
            addr = ipaddress.ip_address(rec)
        except ValueError:
            continue
        if addr.version != 4 or addr not in LISTING_NET:
            continue  # not a DNSBL answer (NXDOMAIN hijack, wildcard zone): ignore
        if addr in REFUSED_NET:
            out.refused.append(rec)
            continue
        out.codes.append(rec)
        out.reasons.append(symbol_part(zone_codes(zone).get(rec, "LISTED")))
    return out


def outcome_symbols(prefix: str, outcomes: list[ZoneOutcome]) -> tuple[list[Symbol], float]:
    """Symbols for the outcomes and the total listing weight (each zone counted once)."""
    symbols: list[Symbol] = []
    total = 0.0
    for o in outcomes:
        stem = f"{prefix}_{zone_symbol(o.zone)}"
        for i, reason in enumerate(dict.fromkeys(o.reasons)):
            desc = f"{o.queried} listed by {o.zone.zone} ({reason})"
            symbols.append(symbol(f"{stem}_{reason}", desc, score=o.zone.weight if i == 0 else 0))
        if o.listed:
            total += o.zone.weight
        if o.refused:
            symbols.append(
                symbol(f"{prefix}_BLOCKED_QUERY", f"{o.zone.zone} refused: {o.refused[0]}")
            )
        if o.failed:
            symbols.append(symbol(f"{prefix}_TEMPERROR", f"{o.zone.zone}: {o.failed}"))
    return _dedupe(symbols), total


def _dedupe(symbols: list[Symbol]) -> list[Symbol]:
    seen: set[str] = set()
    out: list[Symbol] = []
    for s in symbols:
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out


def _result(
    name: str,
    outcomes: list[ZoneOutcome],
    prefix: str,
    threshold: float | None,
    subject: str,
) -> CheckResult:
    symbols, total = outcome_symbols(prefix, outcomes)
    listed = [o for o in outcomes if o.listed]
    details = {
        "listed": {o.zone.zone: {"name": o.queried, "codes": o.codes} for o in listed},
        "refused": [o.zone.zone for o in outcomes if o.refused],
        "failed": [o.zone.zone for o in outcomes if o.failed],
        "total_weight": total,
    }
    word = "listed" if listed else ("temperror" if details["failed"] else "none")
    res = CheckResult(name, symbols=symbols, result=word, details=details)
    if listed and threshold is not None and total >= threshold:
        first = listed[0]
        res.action = CheckAction.REJECT
        res.enhanced_code = "5.7.1"
        res.reason = (
            f"{subject} {first.queried} is listed by {first.zone.zone} ({', '.join(first.reasons)})"
        )
    return res


def _has_zones(settings: Settings, kind: str) -> bool:
    dnsbl = settings.check_block(DnsblSettings)
    return dnsbl.enabled and any(z.kind == kind for z in dnsbl.zones)


def _build_dnsbl(env: CheckEnv) -> Dnsbl:
    return Dnsbl(env.block(DnsblSettings), env.settings.dns, env.resolver)


def _build_uribl(env: CheckEnv) -> UriDnsbl:
    settings = env.settings
    return UriDnsbl(env.block(DnsblSettings), settings.dns, env.resolver, settings.message)


class _ZoneCheck(DnsCheck[DnsblSettings]):
    """A DNSBL check over the configured zones of its ``zone_kind`` ("ip" or "domain")."""

    zone_kind: ClassVar[str]

    def __init__(
        self,
        settings: DnsblSettings,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
    ) -> None:
        super().__init__(settings, dns_settings, resolver)
        self.zones = [z for z in settings.zones if z.kind == self.zone_kind]


@register_check(
    block="dnsbl",
    settings=DnsblSettings,
    enabled=lambda settings: _has_zones(settings, "ip"),
    build=_build_dnsbl,
    symbols=("DNSBL_BLOCKED_QUERY", "DNSBL_TEMPERROR"),
    dynamic_symbols="DNSBL_<ZONE>_<REASON>: the zone's weight",
)
class Dnsbl(_ZoneCheck):
    """Client IP against the ``kind = "ip"`` zones, at connect (EHLO)."""

    name: ClassVar[str] = "dnsbl"
    stage: ClassVar[Stage] = Stage.CONNECT
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True
    zone_kind: ClassVar[str] = "ip"

    async def run(self, ctx: SmtpContext) -> CheckResult:
        addr = parse_ip(ctx.client_ip)
        if addr is None or not self.zones:
            return CheckResult(self.name, result="none")
        sd = self.session_dns(ctx)

        async def one(zone: DnsblZone) -> ZoneOutcome:
            qname = reverse_name(str(addr), zone.zone.strip("."))
            lk = await sd.lookup(qname, "A")
            return classify(zone, str(addr), lk)

        outcomes = list(await asyncio.gather(*(one(z) for z in self.zones)))
        return _result(self.name, outcomes, "DNSBL", self.settings.reject_threshold, "Client")


@register_check(
    block="dnsbl",
    settings=DnsblSettings,
    enabled=lambda settings: _has_zones(settings, "domain"),
    build=_build_uribl,
    symbols=("URIBL_BLOCKED_QUERY", "URIBL_TEMPERROR"),
    dynamic_symbols="URIBL_<ZONE>_<REASON>: the zone's weight",
)
class UriDnsbl(_ZoneCheck):
    """Registrable domains of the body's URLs against the ``kind = "domain"`` zones."""

    name: ClassVar[str] = "uribl"
    stage: ClassVar[Stage] = Stage.DATA
    zone_kind: ClassVar[str] = "domain"

    def __init__(
        self,
        settings: DnsblSettings,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
        message_settings: MessageSettings | None = None,
    ) -> None:
        super().__init__(settings, dns_settings, resolver)
        self.message_settings = message_settings

    def domains(self, ctx: SmtpContext) -> list[str]:
        pm = parsed_message(ctx, self.message_settings)
        out: dict[str, None] = {}
        for url in pm.urls:
            if url.domain and not url.is_ip and "." in url.domain:
                out.setdefault(url.domain.lower(), None)
                if len(out) >= self.settings.max_uri_domains:
                    break
        return list(out)

    async def run(self, ctx: SmtpContext) -> CheckResult:
        if not self.zones or ctx.raw_message is None:
            return CheckResult(self.name, result="none")
        domains = self.domains(ctx)
        if not domains:
            return CheckResult(self.name, result="none")
        sd = self.session_dns(ctx)

        async def one(zone: DnsblZone, domain: str) -> ZoneOutcome:
            lk = await sd.lookup(f"{domain}.{zone.zone.strip('.')}", "A")
            return classify(zone, domain, lk)

        outcomes = list(await asyncio.gather(*(one(z, d) for z in self.zones for d in domains)))
        res = _result(
            self.name, outcomes, "URIBL", self.settings.uri_reject_threshold, "URL domain"
        )
        res.details["domains"] = domains
        return res
