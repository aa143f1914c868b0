"""SpamAssassin's FreeMail plugin: its eval tests on hand-written messages.

The stock rules (``20_freemail.cf`` with the domain lists of ``20_freemail_domains.cf``) run
as ``load_ruleset`` builds them; small rule sets check the configuration directives.
"""

from __future__ import annotations

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.message import ParsedMessage, parse

from .conftest import hits


def msg(
    headers: dict[str, str] | list[tuple[str, str]],
    body: str = "Hello, please reply soon.\n",
    content_type: str = "text/plain; charset=utf-8",
) -> ParsedMessage:
    """A message with exactly these headers (To, Subject and MIME added)."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    lines = [f"{k}: {v}" for k, v in pairs]
    lines += [
        "To: someone@example.net",
        "Subject: about the offer",
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
        "",
        body,
    ]
    return parse("\r\n".join(lines).encode("utf-8"))


# ---- the stock rules ----------------------------------------------------------------------


def test_freemail_rules_load(stock_rules: RuleSet) -> None:
    reasons = dict(stock_rules.skipped)
    for name in (
        "FREEMAIL_FROM",
        "FREEMAIL_REPLYTO",
        "FREEMAIL_REPLY",
        "FREEMAIL_FORGED_REPLYTO",
        "FREEMAIL_ENVFROM_END_DIGIT",
        "FREEMAIL_REPLYTO_END_DIGIT",
    ):
        assert name in stock_rules.names, reasons.get(name)
    assert not any("check_freemail" in r for r in reasons.values())


def test_freemail_from(stock_rules: RuleSet) -> None:
    assert "FREEMAIL_FROM" in hits(stock_rules, msg({"From": "John <john.smith@gmail.com>"}))
    # a wildcard entry: yahoo.*
    assert "FREEMAIL_FROM" in hits(stock_rules, msg({"From": "jsmith@yahoo.fr"}))
    assert "FREEMAIL_FROM" not in hits(stock_rules, msg({"From": "John <john@example.com>"}))
    # FreeMail's default welcomelist: role addresses are not taken as freemail
    assert "FREEMAIL_FROM" not in hits(stock_rules, msg({"From": "support@gmail.com"}))


def test_freemail_forged_replyto(stock_rules: RuleSet) -> None:
    headers = {"From": "CEO <ceo@acme-widgets.com>", "Reply-To": "ceo.acme@gmail.com"}
    got = hits(stock_rules, msg(headers))
    assert "FREEMAIL_FORGED_REPLYTO" in got
    assert "FREEMAIL_FROM" not in got
    # mailing-list mail is __freemail_safe
    got = hits(stock_rules, msg({**headers, "X-Mailing-List": "widgets@lists.example.com"}))
    assert "__freemail_hdr_replyto" in got
    assert "FREEMAIL_FORGED_REPLYTO" not in got
    # a freemail From: not forged
    got = hits(stock_rules, msg({"From": "a@gmail.com", "Reply-To": "a@gmail.com"}))
    assert "FREEMAIL_FORGED_REPLYTO" not in got and "FREEMAIL_FROM" in got


def test_freemail_replyto_different_freemails(stock_rules: RuleSet) -> None:
    got = hits(stock_rules, msg({"From": "mr.k@gmail.com", "Reply-To": "mr.k.office@yahoo.com"}))
    assert "FREEMAIL_REPLYTO" in got
    assert "FREEMAIL_REPLY" not in got  # FREEMAIL_REPLY excludes __freemail_replyto
    # the same address in both
    got = hits(stock_rules, msg({"From": "mr.k@gmail.com", "Reply-To": "Mr K <mr.k@gmail.com>"}))
    assert "FREEMAIL_REPLYTO" not in got
    # a list's envelope sender: the check does not run (freemail_skip_bulk_envfrom)
    bulk = {
        "Return-Path": "<owner-list@example.org>",
        "From": "mr.k@gmail.com",
        "Reply-To": "mr.k.office@yahoo.com",
    }
    assert "__freemail_replyto" not in hits(stock_rules, msg(bulk))


def test_freemail_end_digit(stock_rules: RuleSet) -> None:
    got = hits(stock_rules, msg({"Return-Path": "<john1987@gmail.com>", "From": "john@x.org"}))
    assert "FREEMAIL_ENVFROM_END_DIGIT" in got
    got = hits(stock_rules, msg({"Return-Path": "<john@gmail.com>", "From": "john@x.org"}))
    assert "FREEMAIL_ENVFROM_END_DIGIT" not in got
    got = hits(stock_rules, msg({"From": "a@x.org", "Reply-To": "winner2024@outlook.com"}))
    assert "FREEMAIL_REPLYTO_END_DIGIT" in got
    # not freemail: the digit alone does not hit
    got = hits(stock_rules, msg({"From": "a@x.org", "Reply-To": "winner2024@example.com"}))
    assert "FREEMAIL_REPLYTO_END_DIGIT" not in got


def _reply_hits(stock_rules: RuleSet, body: str) -> set[str]:
    return hits(stock_rules, msg({"From": "Mr K <mr.k@gmail.com>"}, body))


def test_freemail_reply_compares_body(stock_rules: RuleSet) -> None:
    # From is freemail, no Reply-To, another freemail address in the body
    body = "Contact my lawyer at barrister.j@yahoo.com for the transfer.\n"
    assert "FREEMAIL_REPLY" in _reply_hits(stock_rules, body)
    # the From address itself in the body
    assert "FREEMAIL_REPLY" not in _reply_hits(stock_rules, "Write to mr.k@gmail.com.\n")
    # an address in <...> or before "wrote:" is quoted, not offered: stripped
    assert "FREEMAIL_REPLY" not in _reply_hits(stock_rules, "Ask <barrister.j@yahoo.com> now.\n")
    quoted = "barrister.j@yahoo.com wrote: hello\n"
    assert "FREEMAIL_REPLY" not in _reply_hits(stock_rules, quoted)
    # forwarded mail is __freemail_safe
    fwd = "---------- Forwarded message ----------\nFrom barrister.j@yahoo.com\n"
    got = _reply_hits(stock_rules, fwd)
    assert "__freemail_reply" in got and "FREEMAIL_REPLY" not in got


def test_freemail_body_limits(stock_rules: RuleSet) -> None:
    # freemail_max_body_emails 5: the fifth distinct address stops the body check
    others = [f"office{i}@example.com" for i in range(4)]
    four = " ".join([*others[:3], "barrister.j@yahoo.com"]) + "\n"
    assert "FREEMAIL_REPLY" in _reply_hits(stock_rules, four)
    five = " ".join([*others, "barrister.j@yahoo.com"]) + "\n"
    assert "FREEMAIL_REPLY" not in _reply_hits(stock_rules, five)
    # freemail_max_body_freemails 3: the third distinct freemail stops it
    two = "barrister.j@yahoo.com agent.m@hotmail.com\n"
    assert "FREEMAIL_REPLY" in _reply_hits(stock_rules, two)
    three = "barrister.j@yahoo.com agent.m@hotmail.com banker.z@aol.com\n"
    assert "FREEMAIL_REPLY" not in _reply_hits(stock_rules, three)


def test_freemail_body_mailto_link(stock_rules: RuleSet) -> None:
    html = '<html><body><p>Reply <a href="mailto:barrister.j@yahoo.com">here</a></p></body></html>'
    got = hits(stock_rules, msg({"From": "mr.k@gmail.com"}, html, "text/html; charset=utf-8"))
    assert "FREEMAIL_REPLY" in got


def test_header_from_different_domains(stock_rules: RuleSet) -> None:
    headers = {"Return-Path": "<bounce@mail.sender.example.com>", "From": "a@gmail.com"}
    got = hits(stock_rules, msg(headers))
    assert "HEADER_FROM_DIFFERENT_DOMAINS" in got
    assert "FREEMAIL_FORGED_FROMDOMAIN" in got
    # the same second-level domain
    same = {"Return-Path": "<bounce@mx.gmail.com>", "From": "a@gmail.com"}
    assert "HEADER_FROM_DIFFERENT_DOMAINS" not in hits(stock_rules, msg(same))


# ---- the configuration directives --------------------------------------------------------

RULES = """
util_rb_tld com net org
freemail_domains freebox.com mail.*.net m?il.org
freemail_welcomelist boss@freebox.com
header FM_FROM eval:check_freemail_from()
header FM_FROM_DIGIT eval:check_freemail_from('\\d@')
header FM_CC eval:check_freemail_header('Cc')
header FM_BODY eval:check_freemail_body()
header FM_BODY_X eval:check_freemail_body('^x')
"""


@pytest.fixture(scope="module")
def small() -> RuleSet:
    return RuleSet.from_text(RULES, use_hyperscan=False)


@pytest.mark.parametrize(
    ("sender", "hit"),
    [
        ("a@freebox.com", True),
        ("a@mail.foo.net", True),
        ("a@mail.foo.bar.net", False),  # "*" does not span a dot
        ("a@mil.org", False),  # "?" is one character
        ("a@mxil.org", True),
        ("boss@freebox.com", False),  # freemail_welcomelist
        ("a@example.com", False),
    ],
)
def test_domain_wildcards(small: RuleSet, sender: str, hit: bool) -> None:
    assert ("FM_FROM" in hits(small, msg({"From": sender}))) is hit


def test_regex_and_header_args(small: RuleSet) -> None:
    assert "FM_FROM_DIGIT" in hits(small, msg({"From": "a7@freebox.com"}))
    assert "FM_FROM_DIGIT" not in hits(small, msg({"From": "a@freebox.com"}))
    got = hits(small, msg({"From": "a@example.com", "Cc": "b@example.com, c@freebox.com"}))
    assert "FM_CC" in got and "FM_FROM" not in got


def test_body_regex_and_settings(small: RuleSet) -> None:
    body = "write to xavier@freebox.com or yann@freebox.com\n"
    got = hits(small, msg({"From": "a@example.com"}, body))
    assert {"FM_BODY", "FM_BODY_X"} <= got
    # a lower freemail_max_body_freemails stops at the second
    strict = RuleSet.from_text(RULES + "freemail_max_body_freemails 2\n", use_hyperscan=False)
    assert "FM_BODY" not in hits(strict, msg({"From": "a@example.com"}, body))
    # ... unless freemail_skip_when_over_max is off
    lax = RuleSet.from_text(
        RULES + "freemail_max_body_freemails 2\nfreemail_skip_when_over_max 0\n",
        use_hyperscan=False,
    )
    assert "FM_BODY" in hits(lax, msg({"From": "a@example.com"}, body))
    # an address must end in a util_rb_tld TLD
    assert "FM_BODY" not in hits(small, msg({"From": "a@example.com"}, "x@freebox.comx\n"))


def test_bad_arguments_are_skipped_with_a_reason() -> None:
    rs = RuleSet.from_text(
        RULES
        + "header FM_BAD eval:check_freemail_replyto('nonsense')\n"
        + "header FM_NOHDR eval:check_freemail_header()\n",
        use_hyperscan=False,
    )
    reasons = dict(rs.skipped)
    assert "nonsense" in reasons["FM_BAD"]
    assert "header name" in reasons["FM_NOHDR"]
    none = RuleSet.from_text("header FM_X eval:check_freemail_from()\n", use_hyperscan=False)
    assert dict(none.skipped)["FM_X"] == "no freemail_domains defined"


# ---- FromNameSpoof -------------------------------------------------------------------------


def test_fromname_spoof(stock_rules: RuleSet) -> None:
    spoof = {"From": '"billing@paypal.com" <alerts@secure-pay.example.net>'}
    got = hits(stock_rules, msg(spoof))
    assert "__PLUGIN_FROMNAME_SPOOF" in got
    assert "T_FROMNAME_SPOOFED_EMAIL" in got
    # the name's address is the From address
    same = {"From": '"alerts@secure-pay.example.net" <alerts@secure-pay.example.net>'}
    assert "__PLUGIN_FROMNAME_SPOOF" not in hits(stock_rules, msg(same))
    # fns_check 1: another address of the same owner (domain's first label) is no spoof
    owner = {"From": '"billing@paypal.com" <alerts@mail.paypal.com>'}
    assert "__PLUGIN_FROMNAME_SPOOF" not in hits(stock_rules, msg(owner))
    # fns_extrachars 50: an address lost in a long name is not taken
    long_name = "Please read this long note from our team about billing@paypal.com today ok"
    assert "__PLUGIN_FROMNAME_SPOOF" not in hits(
        stock_rules, msg({"From": f'"{long_name}" <alerts@secure-pay.example.net>'})
    )
    # fns_ignore_headers List-Id
    listed = {**spoof, "List-Id": "<announce.lists.example.org>"}
    assert "__PLUGIN_FROMNAME_SPOOF" not in hits(stock_rules, msg(listed))


def test_fromname_equals_to(stock_rules: RuleSet) -> None:
    got = hits(stock_rules, msg({"From": '"someone@example.net" <x@spam.example.org>'}))
    assert "T_FROMNAME_EQUALS_TO" in got


FNS_RULES = """
util_rb_tld com net org
fns_add_addrlist (bank) *@bank.com *@bank-alerts.net
header FNS_SPOOF eval:check_fromname_spoof()
header FNS_DIFF eval:check_fromname_different()
header FNS_DOM eval:check_fromname_domain_differ()
header FNS_OWN eval:check_fromname_owners_differ()
header FNS_EMAIL eval:check_fromname_contains_email()
header FNS_REPLY eval:check_fromname_equals_replyto()
"""


def test_fromname_owner_lists() -> None:
    rs = RuleSet.from_text(FNS_RULES, use_hyperscan=False)
    got = hits(rs, msg({"From": '"info@bank.com" <notice@bank-alerts.net>'}))
    # another address and domain, but one owner (fns_add_addrlist): not a spoof at fns_check 1
    assert {"FNS_EMAIL", "FNS_DIFF", "FNS_DOM"} <= got
    assert "FNS_OWN" not in got and "FNS_SPOOF" not in got
    got = hits(
        rs,
        msg({"From": '"info@bank.com" <notice@other.org>', "Reply-To": "info@bank.com"}),
    )
    assert {"FNS_SPOOF", "FNS_OWN", "FNS_REPLY"} <= got
    level2 = RuleSet.from_text(FNS_RULES + "fns_check 2\n", use_hyperscan=False)
    got = hits(level2, msg({"From": '"info@bank.com" <notice@bank-alerts.net>'}))
    assert "FNS_SPOOF" in got  # fns_check 2: the domains differ
