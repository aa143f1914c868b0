"""DNS plumbing shared by the checks: one configured resolver and a per-session budget.

``make_resolver(settings.dns)`` builds a dnspython asyncio resolver that never reads
``/etc/resolv.conf`` when nameservers are configured (``Resolver(configure=False)``), so tests
point it at a local unbound and production at the site's recursive resolver.

``session_dns(ctx, resolver, settings)`` returns the :class:`SessionDns` of one SMTP session
(kept in ``ctx.extra``). Every DNS question a check asks goes through it:

* each query waits at most ``settings.timeout`` and never past the session's
  ``settings.session_budget``;
* the first timeout marks DNS *dead* for the session: later questions fail at once, so a slow
  or black-holed DNS server costs a session about one timeout, not one per query;
* failures are values (:class:`Lookup` with status ``timeout``/``error``), never exceptions.

Synchronous libraries (pyspf, dkimpy) run in worker threads and reach the same session state
through :meth:`SessionDns.sync_lookup`, which hands the query to the event loop.

``DnsCheck`` is the base of the checks that ask DNS: it keeps their settings block, the DNS
settings and the resolver, and hands out the session's :class:`SessionDns`.

RFC 1035 (DNS), RFC 3596 (AAAA, ip6.arpa). No symbols of its own: callers turn a
``timeout``/``error`` status into their ``*_TEMPERROR`` symbol.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from pydantic import BaseModel

from mailsift import outages
from mailsift.config import DnsSettings
from mailsift.smtpd.checks.base import SmtpContext

SESSION_KEY = "mailsift.dns"

# Lookup.status values
OK = "ok"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
TIMEOUT = "timeout"
ERROR = "error"
FAILED = (TIMEOUT, ERROR)


def make_resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver:
    """An async resolver for `settings` (the system resolver when no nameservers are set)."""
    if settings.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(settings.nameservers)
    else:
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.port = settings.port
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.timeout
    resolver.retry_servfail = False
    return resolver


@dataclass(slots=True)
class Lookup:
    """The answer to one DNS question, or why there is none."""

    name: str
    rdtype: str
    status: str
    records: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed(self) -> bool:
        """A temporary failure (timeout, SERVFAIL, budget spent): the answer is unknown."""
        return self.status in FAILED


def _rdata_text(rdtype: str, rdata: Any) -> str:
    if rdtype in ("A", "AAAA"):
        return str(rdata.address)
    if rdtype in ("PTR", "CNAME", "NS"):
        return str(rdata.target.to_text(omit_final_dot=True)).lower()
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return str(rdata.to_text())


class SessionDns:
    """The DNS view of one SMTP session: bounded time, failures as values."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        timeout: float,
        budget: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.timeout = timeout
        self._monotonic = monotonic
        self.deadline = monotonic() + budget
        self.dead = False  # set by the first timeout: no more waiting in this session
        self.queries = 0
        self._cache: dict[tuple[str, str], Lookup] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._monotonic())

    async def lookup(self, name: str, rdtype: str) -> Lookup:
        """Ask once per session for (name, type); at most `timeout` seconds."""
        self._loop = asyncio.get_running_loop()
        key = (name.lower().rstrip("."), rdtype.upper())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = await self._query(*key)
        if not result.failed:
            self._cache[key] = result
        return result

    async def _query(self, name: str, rdtype: str) -> Lookup:
        if self.dead:
            return Lookup(name, rdtype, TIMEOUT, error="DNS unavailable in this session")
        lifetime = min(self.timeout, self.remaining())
        if lifetime <= 0.01:
            self.dead = True
            return Lookup(name, rdtype, TIMEOUT, error="DNS time budget of the session spent")
        self.queries += 1
        result = await self._ask(name, rdtype, lifetime)
        # the resolver's health, for mailsift.outages: any answer (NXDOMAIN and NODATA
        # included) means it works; a timeout or a failure to reach it means it is down; a
        # SERVFAIL it relays is the queried domain's problem, not the resolver's
        if result.status in (OK, NODATA, NXDOMAIN):
            outages.dependency_ok("dns")
        elif result.status == TIMEOUT or "SERVFAIL" not in result.error:
            outages.dependency_failed("dns", f"{name}/{rdtype}: {result.error}")
        return result

    async def _ask(self, name: str, rdtype: str, lifetime: float) -> Lookup:
        try:
            answer = await self.resolver.resolve(
                dns.name.from_text(name),
                rdtype,
                lifetime=lifetime,
                search=False,
                raise_on_no_answer=False,
            )
        except dns.resolver.NXDOMAIN:
            return Lookup(name, rdtype, NXDOMAIN)
        except dns.exception.Timeout as exc:
            self.dead = True
            return Lookup(name, rdtype, TIMEOUT, error=str(exc) or "timeout")
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN) as exc:
            return Lookup(name, rdtype, ERROR, error=str(exc)[:200])
        except (dns.exception.DNSException, ValueError, OSError) as exc:
            return Lookup(name, rdtype, ERROR, error=f"{type(exc).__name__}: {exc}"[:200])
        if answer.rrset is None:
            return Lookup(name, rdtype, NODATA)
        return Lookup(name, rdtype, OK, [_rdata_text(rdtype, r) for r in answer.rrset])

    def sync_lookup(self, name: str, rdtype: str) -> Lookup:
        """`lookup` for code running in a worker thread (pyspf, dkimpy).

        The query runs on the session's event loop, so the budget and the dead flag are
        shared with the async checks. Call :meth:`bind` (or any `lookup`) on the loop first.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return Lookup(name, rdtype, ERROR, error="no event loop bound to the session")
        future = asyncio.run_coroutine_threadsafe(self.lookup(name, rdtype), loop)
        try:
            return future.result(timeout=self.timeout + 1.0)
        except Exception as exc:  # the loop went away or the query overran: a failure value
            future.cancel()
            return Lookup(name, rdtype, TIMEOUT, error=f"{type(exc).__name__}")

    def bind(self) -> None:
        """Remember the running loop (call from async code before starting threads)."""
        self._loop = asyncio.get_running_loop()


def session_dns(
    ctx: SmtpContext, resolver: dns.asyncresolver.Resolver, settings: DnsSettings
) -> SessionDns:
    """The session's :class:`SessionDns`, created on first use."""
    sd = ctx.extra.get(SESSION_KEY)
    if not isinstance(sd, SessionDns):
        sd = SessionDns(resolver, timeout=settings.timeout, budget=settings.session_budget)
        ctx.extra[SESSION_KEY] = sd
    return sd


B = TypeVar("B", bound=BaseModel)


class DnsCheck(Generic[B]):
    """What every check that asks DNS holds: its settings block (``B``), the DNS settings and
    the resolver; :meth:`session_dns` gives the SMTP session's :class:`SessionDns`, shared by
    all the checks of the session, so they spend one DNS budget."""

    def __init__(
        self,
        settings: B,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
    ) -> None:
        self.settings = settings
        self.dns_settings = dns_settings
        self.resolver = resolver

    def session_dns(self, ctx: SmtpContext) -> SessionDns:
        return session_dns(ctx, self.resolver, self.dns_settings)


def reverse_name(ip: str, zone: str = "") -> str:
    """The DNS name for `ip` under `zone` (RFC 1035 3.5 / RFC 3596 2.5 nibble order).

    ``reverse_name("192.0.2.1", "zen.example")`` -> ``1.2.0.192.zen.example``;
    without a zone the in-addr.arpa / ip6.arpa name.
    """
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        labels = ".".join(reversed(str(addr).split(".")))
        return f"{labels}.{zone}" if zone else f"{labels}.in-addr.arpa"
    nibbles = ".".join(reversed(addr.exploded.replace(":", "")))
    return f"{nibbles}.{zone}" if zone else f"{nibbles}.ip6.arpa"


def parse_ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (IPv4-mapped IPv6 unwrapped), or None when `value` is not one."""
    if not value:
        return None
    try:
        addr = ipaddress.ip_address(value.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
