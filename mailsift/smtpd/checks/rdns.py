"""Reverse DNS of the client and sanity of its HELO/EHLO name.

``ReverseDns``: the client IP's PTR names (RFC 1035 3.5, RFC 3596) and forward confirmation
(FCrDNS): some PTR name must resolve (A/AAAA) back to the client IP. The verified name is left
in ``ctx.extra["client_name"]`` (and ``details``) for the ``Received`` header and the envelope.
No PTR can be rejected (``reject_no_ptr``, ``550 5.7.25``, RFC 7372), so can a PTR that is not
forward-confirmed (``reject_no_fcrdns``); otherwise they only score.

``HeloCheck``: the HELO/EHLO argument must be a domain or an address literal (RFC 5321
4.1.2/4.1.3): a bare IP without brackets, bad syntax, a name without a dot, a name that does not
resolve, a literal that is not the client's address, and a client that claims to be us (our
host name, one of our local domains, one of our IPs) score, or are rejected with
``reject_bad_helo``. Clients in the relay networks and authenticated users are not checked
(both checks declare ``skip_relay_clients`` and ``skip_authenticated``).

Symbols: ``RDNS_FCRDNS``, ``RDNS_NONE``, ``RDNS_NOT_FCRDNS``, ``RDNS_TEMPERROR``,
``HELO_MISSING``, ``HELO_BAD_SYNTAX``, ``HELO_BARE_IP``, ``HELO_NOT_FQDN``, ``HELO_IP_MISMATCH``,
``HELO_CLAIMS_US``, ``HELO_NORESOLVE``, ``HELO_TEMPERROR``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from typing import ClassVar

import dns.asyncresolver

from mailsift.config import DnsSettings, RdnsSettings, Settings, SmtpSettings
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.dns import DnsCheck, SessionDns, parse_ip, reverse_name
from mailsift.smtpd.checks.registry import CheckEnv, register_check
from mailsift.smtpd.checks.scores import symbol, table_symbols
from mailsift.verdict import Symbol

MAX_PTR_NAMES = 5
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
BAD_HELO = ("HELO_MISSING", "HELO_BAD_SYNTAX", "HELO_BARE_IP")
REJECTABLE_HELO = (*BAD_HELO, "HELO_CLAIMS_US", "HELO_NORESOLVE")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def forward_addresses(sd: SessionDns, name: str, version: int) -> tuple[set[str], bool]:
    """The addresses of `name` of the given IP version, and whether the lookup failed."""
    lk = await sd.lookup(name, "A" if version == 4 else "AAAA")
    return {str(ipaddress.ip_address(r)) for r in lk.records}, lk.failed


def _rdns_enabled(settings: Settings) -> bool:
    return settings.check_block(RdnsSettings).enabled


@register_check(
    block="rdns",
    settings=RdnsSettings,
    enabled=_rdns_enabled,
    build=lambda env: ReverseDns(env.block(RdnsSettings), env.settings.dns, env.resolver),
    symbols=table_symbols("RDNS_"),
)
class ReverseDns(DnsCheck[RdnsSettings]):
    name: ClassVar[str] = "rdns"
    stage: ClassVar[Stage] = Stage.CONNECT
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True

    async def run(self, ctx: SmtpContext) -> CheckResult:
        addr = parse_ip(ctx.client_ip)
        if addr is None:
            return CheckResult(self.name, result="none")
        sd = self.session_dns(ctx)
        ptr = await sd.lookup(reverse_name(str(addr)), "PTR")
        if ptr.failed:
            return self._temperror(f"PTR {addr}: {ptr.error}")
        names = [n for n in dict.fromkeys(ptr.records) if n][:MAX_PTR_NAMES]
        if not names:
            return self._no_ptr(str(addr))
        forward = await asyncio.gather(*(forward_addresses(sd, n, addr.version) for n in names))
        for n, (addrs, _failed) in zip(names, forward, strict=True):
            if str(addr) in addrs:
                ctx.extra["client_name"] = n
                return CheckResult(
                    self.name,
                    symbols=[symbol("RDNS_FCRDNS", f"{addr} <-> {n}")],
                    result="pass",
                    details={"ptr": names, "client_name": n},
                )
        if any(failed for _a, failed in forward):
            return self._temperror(f"forward lookup of {', '.join(names)} failed")
        res = CheckResult(
            self.name,
            symbols=[
                symbol(
                    "RDNS_NOT_FCRDNS", f"{addr} -> {', '.join(names)}, which do not resolve back"
                )
            ],
            result="fail",
            details={"ptr": names},
        )
        if self.settings.reject_no_fcrdns:
            res.action = CheckAction.REJECT
            res.enhanced_code = "5.7.25"
            res.reason = f"Reverse DNS of {addr} ({names[0]}) does not resolve back to it"
        return res

    def _no_ptr(self, addr: str) -> CheckResult:
        res = CheckResult(
            self.name,
            symbols=[symbol("RDNS_NONE", f"{addr} has no PTR")],
            result="none",
        )
        if self.settings.reject_no_ptr:
            res.action = CheckAction.REJECT
            res.enhanced_code = "5.7.25"
            res.reason = f"Client {addr} has no reverse DNS"
        return res

    def _temperror(self, why: str) -> CheckResult:
        return CheckResult(self.name, symbols=[symbol("RDNS_TEMPERROR", why)], result="temperror")


def _build_helo(env: CheckEnv) -> HeloCheck:
    s = env.settings
    return HeloCheck(env.block(RdnsSettings), s.smtp, s.dns, env.resolver)


@register_check(
    block="rdns",
    settings=RdnsSettings,
    enabled=_rdns_enabled,
    build=_build_helo,
    symbols=table_symbols("HELO_"),
)
class HeloCheck(DnsCheck[RdnsSettings]):
    name: ClassVar[str] = "helo"
    stage: ClassVar[Stage] = Stage.HELO
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True

    def __init__(
        self,
        settings: RdnsSettings,
        smtp: SmtpSettings,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
    ) -> None:
        super().__init__(settings, dns_settings, resolver)
        self.our_names = {smtp.hostname.lower().rstrip(".")} | {
            d.lower().rstrip(".") for d in smtp.local_domains
        }
        ours: set[IPAddress] = set()
        for ip in [*settings.our_ips, smtp.host]:
            a = parse_ip(ip)
            if a is not None and not a.is_unspecified:
                ours.add(a)
        self.our_ips = ours

    def _sym(self, name: str, desc: str) -> Symbol:
        return symbol(name, desc)

    async def run(self, ctx: SmtpContext) -> CheckResult:
        helo = (ctx.helo or "").strip()
        syms = await self._symbols(ctx, helo)
        res = CheckResult(
            self.name,
            symbols=syms,
            result="fail" if syms else "pass",
            details={"helo": helo},
        )
        bad = [s.name for s in syms if s.name in REJECTABLE_HELO]
        if bad and self.settings.reject_bad_helo:
            res.action = CheckAction.REJECT
            res.enhanced_code = "5.7.1"
            res.reason = f"HELO/EHLO {helo[:100]!r} rejected ({bad[0]})"
        return res

    async def _symbols(self, ctx: SmtpContext, helo: str) -> list[Symbol]:
        if not helo:
            return [self._sym("HELO_MISSING", "no HELO name")]
        client = parse_ip(ctx.client_ip)
        if helo.startswith("[") and helo.endswith("]"):
            return self._literal(helo, client)
        bare = parse_ip(helo) if ":" in helo or helo.replace(".", "").isdigit() else None
        if bare is not None:
            out = [self._sym("HELO_BARE_IP", f"HELO {helo} without brackets")]
            if bare in self.our_ips:
                out.append(self._sym("HELO_CLAIMS_US", f"HELO is our address {helo}"))
            return out
        if len(helo) > 253 or not HOSTNAME_RE.fullmatch(helo):
            return [self._sym("HELO_BAD_SYNTAX", f"HELO {helo[:100]!r} is not a domain")]
        name = helo.lower().rstrip(".")
        if name in self.our_names:
            return [self._sym("HELO_CLAIMS_US", f"HELO {name} is our name")]
        if "." not in name:
            return [self._sym("HELO_NOT_FQDN", f"HELO {name} has no dot")]
        return await self._resolves(ctx, name)

    def _literal(self, helo: str, client: IPAddress | None) -> list[Symbol]:
        inner = helo[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        lit = parse_ip(inner)
        if lit is None:
            return [self._sym("HELO_BAD_SYNTAX", f"bad address literal {helo[:100]!r}")]
        if lit in self.our_ips:
            return [self._sym("HELO_CLAIMS_US", f"HELO is our address {helo}")]
        if client is not None and lit != client:
            return [self._sym("HELO_IP_MISMATCH", f"HELO {helo} from {client}")]
        return []

    async def _resolves(self, ctx: SmtpContext, name: str) -> list[Symbol]:
        sd = self.session_dns(ctx)
        a, aaaa = await asyncio.gather(sd.lookup(name, "A"), sd.lookup(name, "AAAA"))
        if a.ok or aaaa.ok:
            if any(parse_ip(r) in self.our_ips for r in a.records + aaaa.records):
                return [self._sym("HELO_CLAIMS_US", f"HELO {name} resolves to our address")]
            return []
        if a.failed or aaaa.failed:
            return [self._sym("HELO_TEMPERROR", f"HELO {name}: {a.error or aaaa.error}")]
        return [self._sym("HELO_NORESOLVE", f"HELO {name} does not resolve")]
