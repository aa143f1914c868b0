"""WLBLEval's ``check_from_in_list`` and HeaderEval's ``check_for_matching_env_and_hdr_from``
against what SpamAssassin 4.0.1 answered for the same hand-written messages
(``sa_fromaddrs_cases``): the sender addresses of ``all_from_addrs`` (a Resent-From alone,
else From, Envelope-Sender, Resent-Sender, X-Envelope-From and the envelope sender) and
the envelope sender of ``get_envelope_from``."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.classifier.rules.views import MessageViews, envelope_sender
from mailsift.message import parse

from .sa_fromaddrs_cases import DATA, RULES, cases

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    assert {h for hit in SA.values() for h in hit} == set(RULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]


@pytest.mark.parametrize(
    ("name", "sender"),
    [
        ("return_path_paypal", "bounce@paypal.com"),
        ("return_path_after_received", None),
        ("relay_envfrom_before_return_path", "other@bank.example"),
        ("late_x_envelope_from", None),
        ("x_sender_fetchmail", None),
        ("no_envelope_sender", None),
    ],
)
def test_envelope_sender(name: str, sender: str | None) -> None:
    assert envelope_sender(MessageViews(parse(CASES[name]), 1 << 20)) == sender
