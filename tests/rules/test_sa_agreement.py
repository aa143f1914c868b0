"""Stock rules against what SpamAssassin 4.0.1 answered for the same hand-written messages
(``sa_agreement_cases``): the ``ALL-EXTERNAL`` header range, ``check_illegal_chars`` on
UTF-8, MIMEEval's ``mime_base64_encoded_text``, ``mime_qp_long_line`` and
``check_for_mime_html_only``, ``html_tag_exists`` on end tags and
``check_for_faraway_charset``."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet, evals
from mailsift.classifier.rules.views import MessageViews
from mailsift.message import parse

from .sa_agreement_cases import DATA, RULES, cases

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    # every rule the cases are about hits somewhere, but CHARSET_FARAWAY: SpamAssassin's
    # default ok_locales all finds every charset fine
    hit = {h for hits in SA.values() for h in hits}
    assert hit == set(RULES) - {"CHARSET_FARAWAY"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]


def test_sa_evals_leave_mailsifts_own_measures_alone() -> None:
    """SpamAssassin's MIME_HTML_ONLY counts part types and CHARSET_FARAWAY never fires;
    mailsift's own MS_HTML_ONLY (no text to read) and MS_CHARSET_MISMATCH keep their
    meanings."""
    empty_text = MessageViews(parse(CASES["html_alt_empty_text"]), 1 << 20)
    assert evals.EVALS["check_for_mime_html_only"](empty_text, ()) == 0
    assert evals.EVALS["mailsift_html_only"](empty_text, ()) == 1
    eight_bit = MessageViews(parse(CASES["charset_ascii_8bit_body"]), 1 << 20)
    assert evals.EVALS["check_for_faraway_charset"](eight_bit, ()) == 0
    assert evals.EVALS["mailsift_charset_mismatch"](eight_bit, ()) == 1


def test_qp_long_line_is_read_once_while_parsing() -> None:
    assert parse(CASES["qp_line_79"]).qp_long_line
    assert not parse(CASES["qp_line_78"]).qp_long_line
    # the same 78 characters: CRLF is one line end when the message uses it throughout
    assert not parse(CASES["qp_line_78_crlf"]).qp_long_line
    assert parse(CASES["qp_line_78_lone_crlf"]).qp_long_line
