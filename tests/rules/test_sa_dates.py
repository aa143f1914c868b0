"""HeaderEval's ``check_for_shifted_date`` against what SpamAssassin 4.0.1 answered for the
same hand-written messages (``sa_dates_cases``): Resent-Date before Date, a Date without a
zone read as UTC, each Received header's first date-like text, the local and fetchmail hops
set aside, and the oldest hop's zero difference dropped."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.message import parse

from .sa_dates_cases import DATA, RULES, cases

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    assert SA["date_on_time"] == [] and SA["resent_date_first"] == []
    assert SA["oldest_equal_dropped"] == ["DATE_IN_PAST_03_06"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]
