"""DNSBL, URIBL, reverse DNS and HELO checks against a real unbound serving data/zones/."""

from __future__ import annotations

import pytest

from mailsift.smtpd.checks.base import CheckAction
from mailsift.smtpd.checks.dns import reverse_name
from mailsift.smtpd.checks.dnsbl import Dnsbl, UriDnsbl
from mailsift.smtpd.checks.rdns import HeloCheck, ReverseDns
from tests.checks.helpers import ctx, make_settings, names, run_in_runner


def test_reverse_names() -> None:
    assert reverse_name("192.0.2.66", "zen.dnsbl.test") == "66.2.0.192.zen.dnsbl.test"
    assert reverse_name("192.0.2.66") == "66.2.0.192.in-addr.arpa"
    assert reverse_name("2001:db8::66", "z.test") == (
        "6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.z.test"
    )


# ---- DNSBL ------------------------------------------------------------------------------------


async def test_dnsbl_sbl_listing_scores_both_zones(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    res = await Dnsbl(settings.dnsbl, settings.dns, resolver).run(ctx("192.0.2.66"))
    assert names(res) == {"DNSBL_ZEN_SBL", "DNSBL_OTHER_DNSBL_LISTED"}
    assert res.action is CheckAction.ACCEPT  # no threshold: score only
    assert res.score == pytest.approx(4.0 + 1.5)
    assert res.result == "listed"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.0.2.67", {"DNSBL_ZEN_XBL"}),
        ("192.0.2.68", {"DNSBL_ZEN_PBL"}),
        ("2001:db8::66", {"DNSBL_ZEN_SBL"}),
        ("192.0.2.10", set()),
    ],
)
async def test_dnsbl_return_codes_and_ipv6(settings, resolver, ip, expected) -> None:  # type: ignore[no-untyped-def]
    res = await Dnsbl(settings.dnsbl, settings.dns, resolver).run(ctx(ip))
    assert names(res) == expected


async def test_dnsbl_refused_query_is_an_error_not_a_listing(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    s = make_settings(settings.dns, dnsbl={"reject_threshold": 1.0})
    res = await Dnsbl(s.dnsbl, s.dns, resolver).run(ctx("192.0.2.69"))
    assert names(res) == {"DNSBL_BLOCKED_QUERY"}
    assert res.action is CheckAction.ACCEPT
    assert res.score == 0
    assert res.details["refused"] == ["zen.dnsbl.test"]


async def test_dnsbl_rejects_at_threshold(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    s = make_settings(settings.dns, dnsbl={"reject_threshold": 5.0})
    check = Dnsbl(s.dnsbl, s.dns, resolver)
    both = await check.run(ctx("192.0.2.66"))  # 4.0 + 1.5
    assert both.action is CheckAction.REJECT
    assert both.enhanced_code == "5.7.1"
    assert "192.0.2.66" in both.reason and "zen.dnsbl.test" in both.reason and "SBL" in both.reason
    one = await check.run(ctx("192.0.2.67"))  # 4.0 only
    assert one.action is CheckAction.ACCEPT and names(one) == {"DNSBL_ZEN_XBL"}


async def test_dnsbl_skips_relay_and_authenticated_clients(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    check = Dnsbl(settings.dnsbl, settings.dns, resolver)
    assert await run_in_runner(check, ctx("192.0.2.66", in_relay_network=True)) is None
    assert await run_in_runner(check, ctx("192.0.2.66", auth_user="alice")) is None
    listed = await run_in_runner(check, ctx("192.0.2.66"))
    assert listed is not None and listed.symbols


async def test_uribl_domains_of_body_urls(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    raw = (
        b"From: a@good.test\r\nTo: b@mailsift.test\r\nSubject: hi\r\n"
        b"Content-Type: text/html\r\n\r\n"
        b'<p><a href="http://www.spamvertised.test/buy">buy</a> '
        b'<a href="https://login.phish.test/x">bank</a> http://harmless.test/ '
        b"http://refused.test/</p>\r\n"
    )
    res = await UriDnsbl(settings.dnsbl, settings.dns, resolver).run(ctx(raw_message=raw))
    assert names(res) == {"URIBL_DBL_SPAM", "URIBL_DBL_PHISH", "URIBL_BLOCKED_QUERY"}
    assert set(res.details["domains"]) == {
        "spamvertised.test",
        "phish.test",
        "harmless.test",
        "refused.test",
    }
    s = make_settings(settings.dns, dnsbl={"uri_reject_threshold": 6.0})
    rej = await UriDnsbl(s.dnsbl, s.dns, resolver).run(ctx(raw_message=raw))
    assert rej.action is CheckAction.REJECT


# ---- reverse DNS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected", "word"),
    [
        ("192.0.2.10", {"RDNS_FCRDNS"}, "pass"),
        ("2001:db8::10", {"RDNS_FCRDNS"}, "pass"),
        ("192.0.2.20", {"RDNS_NOT_FCRDNS"}, "fail"),  # PTR forged.test -> 198.51.100.99
        ("192.0.2.21", {"RDNS_NOT_FCRDNS"}, "fail"),  # PTR nowhere.test -> NXDOMAIN
        ("192.0.2.30", {"RDNS_NONE"}, "none"),
    ],
)
async def test_fcrdns(settings, resolver, ip, expected, word) -> None:  # type: ignore[no-untyped-def]
    c = ctx(ip)
    res = await ReverseDns(settings.rdns, settings.dns, resolver).run(c)
    assert names(res) == expected
    assert res.result == word
    assert res.action is CheckAction.ACCEPT
    if word == "pass":
        assert c.extra["client_name"] == "mail.good.test"


async def test_rdns_rejects_by_config(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    s = make_settings(settings.dns, rdns={"reject_no_ptr": True, "reject_no_fcrdns": True})
    check = ReverseDns(s.rdns, s.dns, resolver)
    none = await check.run(ctx("192.0.2.30"))
    assert none.action is CheckAction.REJECT and none.enhanced_code == "5.7.25"
    forged = await check.run(ctx("192.0.2.20"))
    assert forged.action is CheckAction.REJECT
    good = await check.run(ctx("192.0.2.10"))
    assert good.action is CheckAction.ACCEPT


# ---- HELO ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helo", "expected"),
    [
        ("mail.good.test", set()),
        ("[192.0.2.10]", set()),
        ("[192.0.2.11]", {"HELO_IP_MISMATCH"}),
        ("192.0.2.10", {"HELO_BARE_IP"}),
        ("", {"HELO_MISSING"}),
        ("bad_name!.test", {"HELO_BAD_SYNTAX"}),
        ("[not-an-ip]", {"HELO_BAD_SYNTAX"}),
        ("localhost", {"HELO_NOT_FQDN"}),
        ("mx.mailsift.test", {"HELO_CLAIMS_US"}),
        ("MAILSIFT.TEST", {"HELO_CLAIMS_US"}),
        ("[203.0.113.25]", {"HELO_CLAIMS_US"}),
        ("203.0.113.25", {"HELO_BARE_IP", "HELO_CLAIMS_US"}),
        ("unknown-host.good.test", {"HELO_NORESOLVE"}),
    ],
)
async def test_helo(settings, resolver, helo, expected) -> None:  # type: ignore[no-untyped-def]
    check = HeloCheck(settings.rdns, settings.smtp, settings.dns, resolver)
    res = await check.run(ctx("192.0.2.10", helo=helo))
    assert names(res) == expected
    assert res.action is CheckAction.ACCEPT


async def test_helo_claiming_us_rejected_by_config(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    s = make_settings(settings.dns, rdns={"reject_bad_helo": True})
    check = HeloCheck(s.rdns, s.smtp, s.dns, resolver)
    res = await check.run(ctx("192.0.2.10", helo="mx.mailsift.test"))
    assert res.action is CheckAction.REJECT and "HELO_CLAIMS_US" in res.reason
    ok = await check.run(ctx("192.0.2.10", helo="mail.good.test"))
    assert ok.action is CheckAction.ACCEPT
    assert (
        await run_in_runner(check, ctx("127.0.0.1", helo="localhost", in_relay_network=True))
        is None
    )


def test_well_known_return_codes() -> None:
    from mailsift.config import DnsblZone
    from mailsift.smtpd.checks.dnsbl import zone_codes, zone_symbol

    zen = DnsblZone(zone="zen.spamhaus.org")
    assert zone_codes(zen)["127.0.0.4"] == "XBL"
    assert zone_symbol(zen) == "ZEN_SPAMHAUS"
    dqs = DnsblZone(zone="KEY.zen.dq.spamhaus.net")
    assert zone_codes(dqs)["127.0.0.2"] == "SBL"
    assert zone_codes(DnsblZone(zone="bl.example.net")) == {}
