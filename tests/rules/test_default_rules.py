"""The project's own default ruleset: golden .eml fixtures and the rule-count promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsift.classifier.rules import DEFAULT_RULES_DIR, RuleSet
from mailsift.message import parse

from .conftest import DATA

GOLDEN: dict[str, set[str]] = {
    "gtube.eml": {"GTUBE", "MS_BODY_BULK_EMAIL"},
    "ham_personal.eml": set(),
    "phish_html.eml": {
        "MS_SUBJ_YOUR_ACCOUNT",
        "MS_BODY_VERIFY_ACCT",
        "MS_BODY_ACCT_LOCKED",
        "MS_BODY_DEAR_FRIEND",
        "MS_HTML_ONLY",
        "MS_LINK_MISMATCH",
        "MS_URI_IP",
        "MS_URI_PHISH_PATH",
        "MS_HTML_FORM",
        "MS_META_PHISH",
        "MS_META_SHORT_HTML_LINK",
    },
    "malware_attach.eml": {
        "MS_TO_UNDISCLOSED",
        "MS_ATTACH_EXECUTABLE",
        "MS_ATTACH_DOUBLE_EXT",
        "MS_MISSING_DATE",
        "MS_MISSING_MESSAGE_ID",
        "MS_FAKE_REPLY",
        "MS_META_FORGED",
        "MS_META_MALWARE",
    },
    "pharma_obfuscated.eml": {
        "MS_SUBJ_ALL_CAPS",
        "MS_SUBJ_EXCESS_PUNCT",
        "MS_SUBJ_OBFUSCATED",
        "MS_SUBJ_ODD_CHARSET",
        "MS_BODY_EXCLAIM",
        "MS_BODY_VIAGRA_OBFU",
        "MS_BODY_CIALIS_OBFU",
        "MS_BODY_SPACED_WORD",
        "MS_BODY_CLICK_HERE",
        "MS_BODY_NO_PRESCRIPT",
        "MS_URI_SHORTENER",
        "MS_TEXT_BASE64",
        "MS_META_PHARMA",
        "MS_META_SHOUTING",
    },
    "advance_fee.eml": {
        "MS_REPLYTO_MISMATCH",
        "MS_SUBJ_ALL_CAPS",
        "MS_BODY_BIG_MONEY",
        "MS_BODY_FREE_OFFER",
        "MS_BODY_419_KIN",
        "MS_BODY_419_SECRET",
        "MS_BODY_419_BANK",
        "MS_BODY_DEAR_FRIEND",
        "MS_BODY_WIRE_FEE",
        "MS_META_419",
    },
    "image_only.eml": {
        "MS_HTML_ONLY",
        "MS_IMAGE_ONLY",
        "MS_URI_SHORTENER",
        "MS_HTML_TINY_IMAGE",
        "MS_META_SHORT_HTML_LINK",
    },
}


@pytest.fixture(scope="module", params=[True, False], ids=["hyperscan", "re"])
def default_rules(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RuleSet:
    return RuleSet.load(
        [DEFAULT_RULES_DIR],
        use_hyperscan=request.param,
        cache_dir=tmp_path_factory.mktemp("default-cache"),
    )


def test_default_ruleset_is_complete(default_rules: RuleSet) -> None:
    assert default_rules.skipped == []
    scored = [n for n in default_rules.names if not n.startswith("__")]
    assert len(scored) >= 60
    for name in scored:
        assert default_rules.description(name), f"{name} has no describe"
        assert name in default_rules._parsed.scores, f"{name} has no score"
    kinds = {default_rules.rule_kind(n) for n in scored}
    assert kinds == {"header", "body", "rawbody", "full", "uri", "meta"}


def test_default_rules_are_packaged() -> None:
    files = sorted(p.name for p in Path(DEFAULT_RULES_DIR).glob("*.cf"))
    assert files[0] == "10_gtube.cf" and len(files) >= 7


@pytest.mark.parametrize("fixture", sorted(GOLDEN))
def test_golden_hits(default_rules: RuleSet, fixture: str) -> None:
    pm = parse((DATA / fixture).read_bytes())
    got = {s.name for s in default_rules.evaluate(pm)}
    assert got == GOLDEN[fixture]


def test_gtube_alone_makes_spam(default_rules: RuleSet) -> None:
    pm = parse((DATA / "gtube.eml").read_bytes())
    gtube = [s for s in default_rules.evaluate(pm) if s.name == "GTUBE"]
    assert gtube and gtube[0].score >= 1000
    assert "GTUBE" in gtube[0].description


def test_gtube_in_html_and_multipart(default_rules: RuleSet) -> None:
    gt = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    raw = (
        "Subject: hi\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n"
        f"--b\nContent-Type: text/html\n\n<p>{gt}</p>\n--b--\n"
    ).encode()
    assert "GTUBE" in {s.name for s in default_rules.evaluate(parse(raw))}


def test_future_and_past_dates(default_rules: RuleSet) -> None:
    base = (
        "Received: from x by y; Mon, 02 Mar 2026 10:00:00 +0000\n"
        "From: a@example.org\nTo: b@example.org\nMessage-ID: <1@example.org>\n"
        "Subject: hello\nDate: {date}\n\nhi\n"
    )
    future = parse(base.format(date="Mon, 09 Mar 2026 10:00:00 +0000").encode())
    past = parse(base.format(date="Sat, 02 Mar 2024 10:00:00 +0000").encode())
    ok = parse(base.format(date="Mon, 02 Mar 2026 09:59:00 +0000").encode())
    bad = parse(base.format(date="yesterday-ish").encode())
    assert "MS_DATE_IN_FUTURE" in {s.name for s in default_rules.evaluate(future)}
    assert "MS_DATE_FAR_PAST" in {s.name for s in default_rules.evaluate(past)}
    assert {s.name for s in default_rules.evaluate(ok)} == set()
    assert "MS_DATE_MALFORMED" in {s.name for s in default_rules.evaluate(bad)}
