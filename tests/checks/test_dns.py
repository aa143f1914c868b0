"""The DNS plumbing: configured resolver, failures as values, a dead server costs one timeout."""

from __future__ import annotations

import asyncio

from mailsift.config import DnsSettings, load_settings
from mailsift.smtpd.checks.authentication import SpfCheck
from mailsift.smtpd.checks.base import CheckAction, SmtpContext
from mailsift.smtpd.checks.dns import SESSION_KEY, SessionDns, make_resolver, session_dns
from mailsift.smtpd.checks.dnsbl import Dnsbl
from mailsift.smtpd.checks.rdns import HeloCheck, ReverseDns
from tests.checks.helpers import make_settings


def test_make_resolver_uses_configured_servers_only() -> None:
    r = make_resolver(DnsSettings(nameservers=["127.0.0.1"], port=5353, timeout=1.5))
    assert r.nameservers == ["127.0.0.1"]
    assert r.port == 5353 and r.lifetime == 1.5


async def test_lookup_statuses(dns_settings) -> None:  # type: ignore[no-untyped-def]
    sd = SessionDns(make_resolver(dns_settings), timeout=5.0, budget=20.0)
    a = await sd.lookup("mail.good.test", "A")
    assert a.ok and a.records == ["192.0.2.10"]
    assert (await sd.lookup("nothing.good.test", "A")).status == "nxdomain"
    assert (await sd.lookup("soft.test", "MX")).status == "nodata"
    txt = await sd.lookup("sel1._domainkey.good.test", "TXT")
    assert txt.records[0].startswith("v=DKIM1; k=rsa; p=") and len(txt.records[0]) > 300
    queries = sd.queries
    await sd.lookup("MAIL.good.test.", "A")  # cached per session
    assert sd.queries == queries


async def test_dead_dns_costs_one_timeout_per_session(blackhole_dns) -> None:  # type: ignore[no-untyped-def]
    sd = SessionDns(make_resolver(blackhole_dns.settings()), timeout=0.5, budget=5.0)
    first = await sd.lookup("mail.good.test", "A")
    assert first.status == "timeout" and first.failed and sd.dead
    sent = blackhole_dns.received
    assert sent >= 1
    later = await asyncio.gather(*(sd.lookup(f"h{i}.good.test", "A") for i in range(10)))
    assert all(lk.status == "timeout" for lk in later)
    assert blackhole_dns.received == sent  # not one more packet: no more waiting


async def test_session_budget_bounds_all_dns_work(dns_settings) -> None:  # type: ignore[no-untyped-def]
    sd = SessionDns(make_resolver(dns_settings), timeout=5.0, budget=0.0)
    lk = await sd.lookup("mail.good.test", "A")
    assert lk.failed and "budget" in lk.error and sd.queries == 0


def all_dns_checks(settings):  # type: ignore[no-untyped-def]
    res = make_resolver(settings.dns)
    return [
        Dnsbl(settings.dnsbl, settings.dns, res),
        ReverseDns(settings.rdns, settings.dns, res),
        HeloCheck(settings.rdns, settings.smtp, settings.dns, res),
        SpfCheck(settings.auth, settings.smtp, settings.dns, res),
    ]


async def run_session(checks, ctx: SmtpContext, done: list[str], label: str):  # type: ignore[no-untyped-def]
    results = [await c.run(ctx) for c in checks]
    done.append(label)
    return results


async def test_black_holed_resolver_gives_temperrors_not_hangs(blackhole_dns) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(blackhole_dns.settings(timeout=0.5, session_budget=5.0))
    ctx = SmtpContext("192.0.2.66", helo="mail.good.test", mail_from="a@good.test")
    results = await run_session(all_dns_checks(settings), ctx, [], "a")
    names = {s.name for r in results for s in r.symbols}
    assert names == {
        "DNSBL_TEMPERROR",
        "RDNS_TEMPERROR",
        "HELO_TEMPERROR",
        "SPF_TEMPERROR",
        "SPF_HELO_TEMPERROR",
    }
    assert all(r.action is CheckAction.ACCEPT for r in results)
    assert results[-1].auth_results[0] == "spf=temperror smtp.mailfrom=a@good.test"
    # the DNSBL's two parallel questions were the only ones ever sent in this session
    assert blackhole_dns.received <= 2
    assert ctx.extra[SESSION_KEY].dead


async def test_other_sessions_keep_going_while_one_waits_on_dead_dns(  # type: ignore[no-untyped-def]
    blackhole_dns, dns_settings
) -> None:
    dead = make_settings(blackhole_dns.settings(timeout=6.0, session_budget=20.0))
    live = make_settings(dns_settings)
    done: list[str] = []
    stuck = SmtpContext("192.0.2.66", helo="mail.good.test", mail_from="a@good.test")
    sessions = [
        run_session(all_dns_checks(dead), stuck, done, "dead"),
        *(
            run_session(
                all_dns_checks(live),
                SmtpContext("192.0.2.10", helo="mail.good.test", mail_from="a@good.test"),
                done,
                f"live{i}",
            )
            for i in range(5)
        ),
    ]
    results = await asyncio.gather(*sessions)
    assert done[-1] == "dead"  # every healthy session finished while the dead one waited
    live_names = {s.name for r in results[1] for s in r.symbols}
    assert {"RDNS_FCRDNS", "SPF_PASS", "SPF_HELO_PASS"} <= live_names
    assert session_dns(stuck, make_resolver(dead.dns), dead.dns).dead


def test_settings_from_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAILSIFT_DNS__NAMESERVERS", '["127.0.0.1"]')
    monkeypatch.setenv("MAILSIFT_DNS__PORT", "5300")
    s = load_settings()
    assert make_resolver(s.dns).port == 5300
