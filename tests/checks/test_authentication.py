"""SPF, DKIM, ARC and DMARC against real DNS (unbound with data/zones/ and a session DKIM key)."""

from __future__ import annotations

import dkim
import pytest
import spf

from mailsift.smtpd.checks.authentication import DkimCheck, DmarcCheck, SpfCheck, parse_dmarc
from mailsift.smtpd.checks.base import CheckAction, SmtpContext
from tests.checks.helpers import make_settings, names, run_in_runner


def message(from_addr: str = "alice@good.test", body: str = "Hello Bob.\r\n") -> bytes:
    return (
        f"From: Alice <{from_addr}>\r\nTo: bob@mailsift.test\r\nSubject: lunch\r\n"
        f"Date: Sun, 29 Nov 2026 05:00:00 +0000\r\nMessage-ID: <1@good.test>\r\n\r\n{body}"
    ).encode()


def spf_check(settings, resolver) -> SpfCheck:  # type: ignore[no-untyped-def]
    return SpfCheck(settings.auth, settings.smtp, settings.dns, resolver)


# ---- SPF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "sender", "helo", "expected", "word"),
    [
        ("192.0.2.10", "alice@good.test", "mail.good.test", {"SPF_PASS", "SPF_HELO_PASS"}, "pass"),
        (
            "2001:db8::10",
            "alice@good.test",
            "mail.good.test",
            {"SPF_PASS", "SPF_HELO_PASS"},
            "pass",
        ),
        (
            "198.51.100.1",
            "alice@good.test",
            "mail.good.test",
            {"SPF_FAIL", "SPF_HELO_FAIL"},
            "fail",
        ),
        (
            "192.0.2.99",
            "x@soft.test",
            "unknown.example",
            {"SPF_SOFTFAIL", "SPF_HELO_NONE"},
            "softfail",
        ),
        ("192.0.2.99", "x@nospf.test", "[192.0.2.99]", {"SPF_NONE"}, "none"),
        ("192.0.2.99", "x@broken.test", "", {"SPF_PERMERROR"}, "permerror"),
        ("192.0.2.10", "", "mail.good.test", {"SPF_HELO_PASS"}, "pass"),  # null sender: HELO
    ],
)
async def test_spf(settings, resolver, ip, sender, helo, expected, word) -> None:  # type: ignore[no-untyped-def]
    res = await spf_check(settings, resolver).run(SmtpContext(ip, helo=helo, mail_from=sender))
    assert names(res) == expected
    assert res.result == word
    assert res.action is CheckAction.ACCEPT
    if sender:
        assert res.auth_results[0] == f"spf={word} smtp.mailfrom={sender}"


async def test_spf_fail_rejected_by_config(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    s = make_settings(settings.dns, auth={"reject_spf_fail": True})
    res = await spf_check(s, resolver).run(
        SmtpContext("198.51.100.1", helo="x.example", mail_from="alice@good.test")
    )
    assert res.action is CheckAction.REJECT and res.enhanced_code == "5.7.23"


async def test_spf_uses_our_resolver_not_the_system_one(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    # the .test names exist only on the test unbound: a pass proves pyspf asked it
    res = await spf_check(settings, resolver).run(
        SmtpContext("192.0.2.10", helo="mail.good.test", mail_from="a@good.test")
    )
    assert res.result == "pass"
    assert spf.DNSLookup.__module__ == "mailsift.smtpd.checks.authentication"


# ---- DKIM / ARC -------------------------------------------------------------------------------


async def test_dkim_pass_fail_and_none(settings, resolver, dkim_key) -> None:  # type: ignore[no-untyped-def]
    check = DkimCheck(settings.auth, settings.dns, resolver)
    signed = dkim_key.sign(message())
    ok = await check.run(SmtpContext("192.0.2.10", raw_message=signed))
    assert names(ok) == {"DKIM_PASS", "ARC_NONE"}
    assert ok.details["pass_domains"] == ["good.test"]
    assert ok.auth_results[0].startswith("dkim=pass header.d=good.test header.s=sel1 header.b=")

    tampered = signed.replace(b"Hello Bob.", b"Hello Bob!")
    bad = await check.run(SmtpContext("192.0.2.10", raw_message=tampered))
    assert "DKIM_FAIL" in names(bad) and bad.result == "fail"

    nosig = await check.run(SmtpContext("192.0.2.10", raw_message=message()))
    assert names(nosig) == {"DKIM_NONE", "ARC_NONE"} and nosig.auth_results[0] == "dkim=none"


async def test_dkim_missing_key_is_permerror(settings, resolver, dkim_key) -> None:  # type: ignore[no-untyped-def]
    check = DkimCheck(settings.auth, settings.dns, resolver)
    signed = dkim_key.sign(message("a@soft.test"), domain="soft.test")  # no key published
    res = await check.run(SmtpContext("192.0.2.10", raw_message=signed))
    assert "DKIM_PERMERROR" in names(res)


async def test_arc_chain_verifies(settings, resolver, dkim_key) -> None:  # type: ignore[no-untyped-def]
    raw = b"Authentication-Results: mx.good.test; spf=pass smtp.mailfrom=good.test\r\n" + message()
    arc_headers = dkim.arc_sign(
        raw,
        dkim_key.selector.encode(),
        dkim_key.domain.encode(),
        dkim_key.private_pem,
        b"mx.good.test",
        include_headers=[b"from", b"to", b"subject"],
    )
    sealed = b"".join(arc_headers) + raw
    res = await DkimCheck(settings.auth, settings.dns, resolver).run(
        SmtpContext("192.0.2.10", raw_message=sealed)
    )
    assert "ARC_PASS" in names(res)
    assert res.details["arc"] == "pass"


# ---- DMARC ------------------------------------------------------------------------------------


def test_parse_dmarc() -> None:
    assert parse_dmarc("v=DMARC1; p=reject; adkim=s") == {"p": "reject", "adkim": "s"}
    assert parse_dmarc("v=spf1 -all") is None


async def run_all(settings, resolver, ctx: SmtpContext):  # type: ignore[no-untyped-def]
    """SPF at MAIL, DKIM then DMARC at DATA, as the filter runs them."""
    ctx.results["spf"] = await spf_check(settings, resolver).run(ctx)
    ctx.results["dkim"] = await DkimCheck(settings.auth, settings.dns, resolver).run(ctx)
    return await DmarcCheck(settings.auth, settings.dns, resolver).run(ctx)


async def test_dmarc_pass_by_spf_or_dkim(settings, resolver, dkim_key) -> None:  # type: ignore[no-untyped-def]
    by_spf = await run_all(
        settings,
        resolver,
        SmtpContext(
            "192.0.2.10", helo="mail.good.test", mail_from="a@good.test", raw_message=message()
        ),
    )
    assert names(by_spf) == {"DMARC_PASS"} and by_spf.details["spf_aligned"]
    # forwarded: SPF fails from the forwarder's IP, the DKIM signature still aligns
    by_dkim = await run_all(
        settings,
        resolver,
        SmtpContext(
            "198.51.100.1",
            helo="fwd.example",
            mail_from="a@good.test",
            raw_message=dkim_key.sign(message()),
        ),
    )
    assert names(by_dkim) == {"DMARC_PASS"} and by_dkim.details["dkim_aligned"]
    assert by_dkim.auth_results == ["dmarc=pass (p=reject) header.from=good.test"]


async def test_dmarc_reject_policy_failure(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    ctx = SmtpContext(
        "198.51.100.1", helo="x.example", mail_from="a@good.test", raw_message=message()
    )
    res = await run_all(settings, resolver, ctx)
    assert names(res) == {"DMARC_FAIL_REJECT"}
    assert res.action is CheckAction.ACCEPT  # scoring only by default
    strict = make_settings(settings.dns, auth={"reject_dmarc_reject": True})
    ctx2 = SmtpContext(
        "198.51.100.1", helo="x.example", mail_from="a@good.test", raw_message=message()
    )
    rej = await run_all(strict, resolver, ctx2)
    assert rej.action is CheckAction.REJECT and rej.enhanced_code == "5.7.1"
    assert "good.test" in rej.reason


async def test_dmarc_unaligned_spf_pass_is_a_fail(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    # envelope from soft.test passes SPF, but the From header says good.test
    ctx = SmtpContext(
        "198.51.100.7", helo="x.example", mail_from="list@soft.test", raw_message=message()
    )
    res = await run_all(settings, resolver, ctx)
    assert ctx.results["spf"].result == "pass"
    assert names(res) == {"DMARC_FAIL_REJECT"}


@pytest.mark.parametrize(
    ("from_addr", "expected", "policy"),
    [
        ("x@soft.test", {"DMARC_FAIL_QUARANTINE"}, "quarantine"),
        ("x@monitor.test", {"DMARC_FAIL_NONE"}, "none"),
        ("x@sub.monitor.test", {"DMARC_FAIL_QUARANTINE"}, "quarantine"),  # org record, sp=
        ("x@nospf.test", {"DMARC_NONE"}, None),
        ("x@np.test", {"DMARC_FAIL_NONE"}, "none"),  # the org itself: p=
        ("x@real.np.test", {"DMARC_FAIL_QUARANTINE"}, "quarantine"),  # exists: sp=
        ("x@ghost.np.test", {"DMARC_FAIL_REJECT"}, "reject"),  # NXDOMAIN: np= (RFC 9091)
    ],
)
async def test_dmarc_policies(settings, resolver, from_addr, expected, policy) -> None:  # type: ignore[no-untyped-def]
    ctx = SmtpContext(
        "192.0.2.99", helo="x.example", mail_from=from_addr, raw_message=message(from_addr)
    )
    res = await run_all(settings, resolver, ctx)
    assert names(res) == expected
    if policy:
        assert res.details["policy"] == policy
        assert res.details["nonexistent_domain"] == from_addr.endswith("@ghost.np.test")


async def test_dmarc_without_single_from_is_permerror(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    raw = b"From: a@good.test\r\nFrom: b@soft.test\r\nSubject: x\r\n\r\nhi\r\n"
    res = await DmarcCheck(settings.auth, settings.dns, resolver).run(
        SmtpContext("192.0.2.10", raw_message=raw)
    )
    assert names(res) == {"DMARC_PERMERROR"}


async def test_authenticated_users_are_not_checked(settings, resolver, dkim_key) -> None:  # type: ignore[no-untyped-def]
    ctx = SmtpContext(
        "198.51.100.1", mail_from="a@good.test", auth_user="alice", raw_message=message()
    )
    assert await run_in_runner(spf_check(settings, resolver), ctx) is None
    assert await run_in_runner(DmarcCheck(settings.auth, settings.dns, resolver), ctx) is None
    assert await run_in_runner(DkimCheck(settings.auth, settings.dns, resolver), ctx) is None


def test_auth_results_values_cannot_inject_clauses() -> None:
    from mailsift.smtpd.checks.context import ar_comment, ar_value

    assert ar_value("alice@good.test") == "alice@good.test"
    assert ar_value("x;dkim=pass") == '"x;dkim=pass"'
    assert ar_value('a"b\\c') == '"a\\"b\\\\c"'
    assert ar_value("a\r\nX-Evil: 1") == '"aX-Evil: 1"'
    assert ar_comment("no (nested) comments\\") == "no nested comments"


async def test_hostile_mail_from_is_quoted_in_the_clause(settings, resolver) -> None:  # type: ignore[no-untyped-def]
    sender = '"x; dkim=pass"@nospf.test'
    res = await spf_check(settings, resolver).run(
        SmtpContext("192.0.2.99", helo="[192.0.2.99]", mail_from=sender)
    )
    assert res.auth_results == ['spf=none smtp.mailfrom="\\"x; dkim=pass\\"@nospf.test"']
