"""The relays of the Received headers (SpamAssassin's Received.pm port), the X-Spam-Relays-*
pseudo-headers rules read and the RelayEval tests.

``data/relays_sa.json`` holds Received headers (most from Received.pm's own comments) and
what ``spamassassin -L -D received-header,metadata -t`` 4.0.1 printed for a message made of
them: each relay as parsed, the four X-Spam-Relays strings, the unparseable count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.classifier.rules.relays import (
    FETCHER,
    MAX_LINE,
    MAX_RECEIVED,
    SKIP,
    NetSet,
    Relay,
    Trust,
    message_relays,
    parse_received_line,
    parse_relays,
)
from mailsift.classifier.rules.views import MessageViews, header_request
from mailsift.message import ParsedMessage, parse

from .conftest import hits

Build = Callable[[str], RuleSet]
SA = json.loads((Path(__file__).parent / "data" / "relays_sa.json").read_text())
DATE = " Mon, 1 Jan 2024 00:00:00 +0000"


def _message(received: list[str], more: dict[str, str] | None = None) -> ParsedMessage:
    head = "".join(f"Received: {r}\n" for r in received)
    head += "".join(f"{k}: {v}\n" for k, v in (more or {}).items())
    body = "From: a@example.org\nTo: b@example.net\nSubject: x\nMessage-ID: <1@x>\n\nhello\n"
    return parse((head + body).encode())


def _cases() -> list[tuple[str, list[str], dict[str, str]]]:
    out = [(name, rcvd, {}) for name, rcvd in SA["cases"].items()]
    for name, spec in SA["extra"].items():
        more = {k: v for k, v in spec.items() if k != "Received"}
        out.append((name, spec["Received"], more))
    return out


@pytest.mark.parametrize(("name", "received", "more"), _cases(), ids=[c[0] for c in _cases()])
def test_relays_as_spamassassin_gives_them(
    name: str, received: list[str], more: dict[str, str]
) -> None:
    r = message_relays(_message(received, more).raw_headers)
    sa: dict[str, Any] = SA["sa"][name]
    assert r.trusted_str == sa["Trusted"]
    assert r.untrusted_str == sa["Untrusted"]
    assert r.internal_str == sa["Internal"]
    assert r.external_str == sa["External"]
    assert r.unparseable == sa["unparseable"]
    # each relay as SpamAssassin parsed it (before trust set intl)
    parsed = [x.as_string.replace(" intl=1 ", " intl=0 ") for x in r.trusted + r.untrusted]
    assert parsed == sa["parsed"]


def _one(line: str) -> Relay:
    relay = parse_received_line(line)
    assert isinstance(relay, Relay)
    return relay


def test_fields_of_common_formats() -> None:
    # Postfix: the MTA looks rDNS up, "unknown" means none
    pf = _one(SA["cases"]["postfix"][0])
    assert (pf.ip, pf.rdns, pf.helo, pf.by, pf.id) == (
        "127.0.0.1",
        "",
        "localhost",
        "cabbage.jmason.org",
        "A96E18BD97",
    )
    assert pf.no_reverse_dns and pf.ip_private
    # Exim with helo= and the rDNS first
    ex = _one(SA["cases"]["exim_helo"][0])
    assert (ex.rdns, ex.helo, ex.ip) == (
        "sc8-sf-list1-b.sourceforge.net",
        "sc8-sf-list1.sourceforge.net",
        "10.3.1.13",
    )
    # Exchange SMTPSVC does not look rDNS up: no rdns is not "no reverse DNS"
    ms = _one(SA["cases"]["smtpsvc"][0])
    assert ms.rdns == "" and not ms.no_reverse_dns and ms.rdns_not_in_headers
    # a bracketed IP HELO reads with "!" for the brackets; ESMTPSA is authentication
    gm = _one(SA["cases"]["gmail_esmtpsa"][0])
    assert (gm.helo, gm.auth) == ("!192.168.1.10!", "ESMTPSA")
    # the envelope sender
    assert _one(SA["cases"]["envfrom"][0]).envfrom == "bob@example.com"


def test_skipped_and_unparseable_lines() -> None:
    assert parse_received_line(SA["cases"]["exim_local"][0]) == SKIP
    assert parse_received_line(SA["cases"]["qmail_invoked"][0]) == SKIP
    assert parse_received_line("by mx.example.org with SMTP id 1;" + DATE) == SKIP
    fetch = "from pop.example.net [10.0.0.1] by localhost with POP3 (fetchmail-6.4.0);" + DATE
    assert parse_received_line(fetch) == FETCHER
    assert parse_received_line(SA["cases"]["unparseable"][0]) is None


def test_trust_private_hop_then_public_hop() -> None:
    r = message_relays(_message(SA["cases"]["private_then_public"]).raw_headers)
    assert [x.ip for x in r.trusted] == ["192.168.1.5"]
    assert [x.ip for x in r.untrusted] == ["203.0.113.5", "198.51.100.20"]
    assert r.internal == r.trusted and r.external == r.untrusted
    assert r.trusted[0].internal and not r.untrusted[0].internal
    # trust never comes back once a public hop ended it
    back = parse_relays(
        [
            "from a (a [203.0.113.5]) by b (Postfix) with ESMTP id 111;" + DATE,
            "from c (c [10.0.0.2]) by a (Postfix) with ESMTP id 222;" + DATE,
        ]
    )
    assert back.trusted == [] and [x.ip for x in back.untrusted] == ["203.0.113.5", "10.0.0.2"]


def test_trust_authenticated_hop() -> None:
    r = message_relays(_message(SA["cases"]["authenticated_hop"]).raw_headers)
    assert [x.ip for x in r.trusted] == ["198.51.100.7"]
    assert r.trusted[0].auth == "ESMTPSA" and not r.trusted[0].ip_private
    assert r.untrusted == []


def test_fetcher_marker_restarts_the_trusted_list() -> None:
    fetch = "from pop.example.net [10.0.0.1] by localhost with POP3 (fetchmail-6.4.0);" + DATE
    local = "from desk (desk [192.168.1.5]) by pop.example.net (Postfix) with ESMTP id 11;" + DATE
    # inside the trusted part: the relays above the marker are forgotten
    r = parse_relays([local, fetch, local])
    assert len(r.trusted) == 1 and r.untrusted == []
    # below an untrusted relay the marker is ignored
    public = "from m (m [203.0.113.5]) by gw.example.net (Postfix) with ESMTP id 22;" + DATE
    r = parse_relays([public, fetch, local])
    assert r.trusted == [] and len(r.untrusted) == 2


def test_originating_ip_header_is_a_synthetic_relay() -> None:
    spec = SA["extra"]["x_originating"]
    pm = _message(spec["Received"], {"X-Originating-IP": spec["X-Originating-IP"]})
    r = message_relays(pm.raw_headers)
    assert [x.ip for x in r.untrusted] == ["203.0.113.5", "198.51.100.9"]
    assert r.untrusted[-1].by == ""


def test_work_is_bounded() -> None:
    line = "from a (a [203.0.113.5]) by b (Postfix) with ESMTP id 111;" + DATE
    r = message_relays(_message([line] * (MAX_RECEIVED + 10)).raw_headers)
    assert len(r.untrusted) == MAX_RECEIVED
    # a header longer than the cut is parsed on its first MAX_LINE characters
    long = "from a (a [203.0.113.5]) by b (Postfix) with ESMTP id 111 " + "x" * (3 * MAX_LINE)
    relay = parse_received_line(long)
    assert isinstance(relay, Relay) and relay.ip == "203.0.113.5"


@pytest.mark.parametrize(
    "odd",
    # blanks for str.split() but not for Perl's \s: they stay part of the field they are in
    ["\x1c", "\x1f", "\x85", "\xa0"],
)
def test_only_perl_blanks_separate_fields(odd: str) -> None:
    line = f"from a (a{odd}x [203.0.113.5]) by b (Postfix) with ESMTP id 111;" + DATE
    relay = parse_received_line(line)
    assert isinstance(relay, Relay) and relay.rdns == f"a{odd}x"
    # folded, tabbed and doubled blanks are one blank
    relay = parse_received_line(line.replace(" by ", "\r\n\t by  ").replace(odd, ""))
    assert isinstance(relay, Relay) and relay.by == "b" and relay.rdns == "ax"


def test_date_cut_after_blank_or_semicolon_only() -> None:
    # the date at the end is cut from the blanks and semicolons before it, not further
    base = "from a (a [203.0.113.5]) by b (Postfix) with ESMTP id 111"
    assert _one(base + " ;;" + DATE).id == "111"
    assert _one(base + ";" + DATE.lstrip()).id == "111"
    # a date glued to a word is not a date: it stays in the id
    assert _one(base + "x1 Jan 2024 00:00:00 +0000").id == "111x1"


RULES = r"""
header RDNS_NONE        X-Spam-Relays-Untrusted =~ /^[^\]]+ rdns= /
header RDNS_FROM_SENDER X-Spam-Relays-External =~ /^[^\]]+ rdns=mail\.sender\.example /
header TRUSTED_PRIVATE  X-Spam-Relays-Trusted =~ / ip=192\.168\.1\.5 /
header INTERNAL_ANY     X-Spam-Relays-Internal =~ /\[ ip=/
header UNTRUSTED_EMPTY  X-Spam-Relays-Untrusted =~ /^$/
header UNTRUSTED_ANY    X-Spam-Relays-Untrusted =~ /ip=/
header ALL_TRUSTED      eval:check_all_trusted()
header NO_RELAYS        eval:check_no_relays()
header UNPARSEABLE      eval:check_relays_unparseable()
header HELO_IP_MISMATCH eval:helo_ip_mismatch()
header DOTCOM_HELO      eval:check_for_no_rdns_dotcom_helo()
"""


def test_pseudo_headers_and_relay_evals_in_rules(engine: Build) -> None:
    rs = engine(RULES)
    assert not [s for s in rs.skipped if s[0] in RULES]
    got = hits(rs, _message(SA["cases"]["private_then_public"]))
    assert got == {"RDNS_FROM_SENDER", "TRUSTED_PRIVATE", "INTERNAL_ANY", "UNTRUSTED_ANY"}
    got = hits(rs, _message(SA["cases"]["helo_ip_mismatch"]))
    assert got == {"RDNS_NONE", "UNTRUSTED_ANY", "HELO_IP_MISMATCH"}
    got = hits(rs, _message(SA["cases"]["dotcom_helo"]))
    assert got == {"RDNS_NONE", "UNTRUSTED_ANY", "DOTCOM_HELO"}
    got = hits(rs, _message(SA["cases"]["authenticated_hop"]))
    assert got == {"ALL_TRUSTED", "INTERNAL_ANY", "UNTRUSTED_EMPTY"}
    got = hits(rs, _message(SA["cases"]["unparseable"]))
    assert got == {"UNPARSEABLE", "UNTRUSTED_EMPTY"}
    got = hits(rs, _message([]))
    assert got == {"NO_RELAYS", "UNTRUSTED_EMPTY"}


def test_real_x_spam_relays_headers_cannot_inject_relays(engine: Build) -> None:
    rs = engine(RULES)
    forged = (
        "[ ip=198.51.100.20 rdns= helo=hotmail.com by=mx.example.org ident= envfrom= "
        "intl=0 id= auth= msa=0 ]"
    )
    pm = _message(
        [],
        {
            "X-Spam-Relays-Untrusted": forged,
            "X-Spam-Relays-External": forged,
            "X-Spam-Relays-Trusted": forged.replace("198.51.100.20", "192.168.1.5"),
            "X-Spam-Relays-Internal": forged,
        },
    )
    assert "X-Spam-Relays-Untrusted" in pm.dropped_headers
    assert hits(rs, pm) == {"NO_RELAYS", "UNTRUSTED_EMPTY"}
    r = message_relays(pm.raw_headers)
    assert r.trusted_str == r.untrusted_str == r.internal_str == r.external_str == ""


TRUST_SA = json.loads((Path(__file__).parent / "data" / "trust_sa.json").read_text())


def _trust(conf: dict[str, list[str]]) -> Trust | None:
    return Trust.configured(conf.get("trusted"), conf.get("internal"), conf.get("msa", []))


@pytest.mark.parametrize("name", sorted(TRUST_SA["cases"]))
def test_configured_networks_split_the_chain_as_spamassassin_does(name: str) -> None:
    case = TRUST_SA["cases"][name]
    r = message_relays(_message(TRUST_SA["received"]).raw_headers, _trust(case["conf"]))
    sa = case["sa"]
    assert (r.trusted_str, r.untrusted_str) == (sa["Trusted"], sa["Untrusted"])
    assert (r.internal_str, r.external_str) == (sa["Internal"], sa["External"])


def test_without_configured_networks_trust_is_inferred() -> None:
    # the first hop is from a public address: nothing is trusted
    r = message_relays(_message(TRUST_SA["received"]).raw_headers, None)
    assert r.trusted == [] and len(r.untrusted) == 3
    assert Trust.configured(None, None, ["198.51.100.7"]) is None
    # an authenticated hop stays trusted under configured networks too
    hop = (
        "from laptop (dyn-7.example.net [192.0.2.55]) (authenticated sender: a) by "
        "sub.example.org (Postfix) with ESMTPSA id D1;" + DATE
    )
    r = message_relays(_message([hop]).raw_headers, Trust.configured(["203.0.113.0/24"], None))
    assert [x.ip for x in r.trusted] == ["192.0.2.55"] and r.trusted[0].internal


def test_network_lists_read_as_spamassassin_writes_them() -> None:
    n = NetSet.parse(["!10.1.2.3 10.1.", "2001:db8::/32 !2001:db8:1::/64", "2001:db8:1::1"])
    inside = ["10.1.2.4", "10.1.255.1", "2001:db8::5", "2001:db8:1::1", "::ffff:10.1.9.9"]
    outside = ["10.1.2.3", "10.2.0.1", "2001:db8:1::2", "192.0.2.1", "junk", ""]
    assert all(ip in n for ip in inside)
    assert not any(ip in n for ip in outside)
    # loopback is always in, unless excluded; the most specific entry decides
    assert "127.0.0.1" in n and "::1" in n
    assert "127.0.0.2" not in NetSet.parse(["!127.0.0.2"])
    assert "10.0.1.5" in NetSet.parse(["10.0.1/24"])
    for bad in ("10.1", "10.1.2.300", "10.0.0.0/x", "example.org"):
        with pytest.raises(ValueError):
            NetSet.parse([bad])


def test_settings_take_the_networks_and_refuse_bad_ones(tmp_path: Path) -> None:
    from mailsift.classifier.rules import load_ruleset
    from mailsift.config import load_settings

    with pytest.raises(ValueError, match="incomplete IPv4"):
        load_settings(rules={"trusted_networks": ["10.1"]})
    cf = tmp_path / "relay.cf"
    cf.write_text("header UNTRUSTED_HOP X-Spam-Relays-Untrusted =~ /ip=203\\.0\\.113\\.10 /\n")
    common = {"use_stock": False, "use_default": False, "extra_paths": [str(cf)]}
    common["cache_dir"] = str(tmp_path / "cache")
    pm = _message(TRUST_SA["received"])
    inferred = load_ruleset(load_settings(rules=common))
    assert inferred.trust is None and hits(inferred, pm) == {"UNTRUSTED_HOP"}
    site = load_ruleset(load_settings(rules={**common, "trusted_networks": ["203.0.113.0/24"]}))
    assert site.trust is not None and hits(site, pm) == set()


def test_rule_files_give_the_networks_and_settings_rule_over_them(tmp_path: Path) -> None:
    import pickle

    from mailsift.classifier.rules import load_ruleset
    from mailsift.config import load_settings

    cf = tmp_path / "local.cf"
    cf.write_text(
        "header UNTRUSTED_HOP X-Spam-Relays-Untrusted =~ /ip=203\\.0\\.113\\.10 /\n"
        "trusted_networks 10.9.9.9\n"
        "clear_trusted_networks\n"
        "trusted_networks 203.0.113.0/24 not-a-network\n"
    )
    common = {"use_stock": False, "use_default": False, "extra_paths": [str(cf)]}
    common["cache_dir"] = str(tmp_path / "cache")
    pm = _message(TRUST_SA["received"])
    rs = load_ruleset(load_settings(rules=common))
    # as in a site's local.cf: the cleared line is gone, the bad word is warned about
    assert rs.trust is not None and "203.0.113.10" in rs.trust.trusted
    assert "10.9.9.9" not in rs.trust.trusted
    assert any("not-a-network" in w for w in rs.warnings)
    assert hits(rs, pm) == set()
    # the setting is kept across the copies a worker pool or an engine switch makes
    for copy in (pickle.loads(pickle.dumps(rs)), rs.variant(use_hyperscan=False)):
        assert hits(copy, pm) == set()
    # mailsift's own settings, when they name networks, rule over the rule files'
    site = load_ruleset(load_settings(rules={**common, "trusted_networks": ["192.0.2.0/24"]}))
    assert site.trust is not None and "203.0.113.10" not in site.trust.trusted
    assert hits(site, pm) == {"UNTRUSTED_HOP"}
    for copy in (pickle.loads(pickle.dumps(site)), site.variant(use_pcre=False)):
        assert hits(copy, pm) == {"UNTRUSTED_HOP"}


RANGE_HEADERS = (
    # unparseable (no IP): counted while inside the trusted / internal part
    "Received: by mx.example.net (Postfix, from userid 1001) id 1; Mon, 7 Dec 2026 10:00:00 +0000",
    "Received: from mail.example.net (mail.example.net [10.1.1.1]) by mx.example.net"
    " (Postfix) with ESMTP id 2; Mon, 7 Dec 2026 10:00:00 +0000",
    "X-Between: one",
    "Received: from host.example.com (host.example.com [203.0.113.9]) by mail.example.net"
    " (Postfix) with ESMTP id 3; Mon, 7 Dec 2026 10:00:00 +0000",
    "X-Between: two",
    "Received: from pc by host.example.com with SMTP id 4; Mon, 7 Dec 2026 10:00:00 +0000",
    "From: a@example.com",
)


def test_header_ranges_count_every_received_header() -> None:
    """SpamAssassin's ALL-TRUSTED / ALL-INTERNAL run up to and with the first Received header
    past the trusted (internal) part, ALL-UNTRUSTED / ALL-EXTERNAL from it on; the index
    counts the unparseable header inside the internal part."""
    pm = parse(("\n".join(RANGE_HEADERS) + "\n\nbody\n").encode())
    views = MessageViews(pm, 1 << 20)
    relays = views.relays()
    assert (relays.last_trusted_index, relays.last_internal_index) == (1, 1)
    head = "".join(h + "\n" for h in RANGE_HEADERS[:4])
    tail = "".join(h + "\n" for h in RANGE_HEADERS[3:])
    for name, text in (
        ("ALL-TRUSTED", head),
        ("ALL-INTERNAL", head),
        ("ALL-UNTRUSTED", tail),
        ("ALL-EXTERNAL", tail),
    ):
        assert header_request(views, name, ()) == text.encode()
        assert header_request(views, name, ("raw",)) == text.encode()
    # no Received header at all: the trusted ranges hold every line, the others none
    bare = MessageViews(parse(b"From: a@example.com\nSubject: hi\n\nbody\n"), 1 << 20)
    assert header_request(bare, "ALL-TRUSTED", ()) == b"From: a@example.com\nSubject: hi\n"
    assert header_request(bare, "ALL-EXTERNAL", ()) is None


def test_header_range_rules_compile(engine: Build) -> None:
    rs = engine(
        r"""
        header RELAYED_EXT ALL-EXTERNAL =~ /(?:^|\n)Received:\s.+\nReceived:\s/s
        header TRUSTED_BETWEEN ALL-TRUSTED =~ /^X-Between: two/m
        """
    )
    assert rs.names == ["RELAYED_EXT", "TRUSTED_BETWEEN"]
    pm = parse(("\n".join(RANGE_HEADERS) + "\n\nbody\n").encode())
    assert hits(rs, pm) == {"RELAYED_EXT"}
