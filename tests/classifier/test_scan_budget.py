"""The per-message CPU budget: over it, a message is scored on what was reached."""

from __future__ import annotations

import time

from mailsift.budget import SCAN_BUDGET_SYMBOL, ScanBudget
from mailsift.classifier.rules import RuleSet
from mailsift.classifier.scorer import Scorer
from mailsift.config import Settings
from mailsift.message import parse
from tests.classifier.messages import SPAMMY


def _with_budget(settings: Settings, ms: float) -> Settings:
    message = settings.message.model_copy(update={"scan_budget_ms": ms})
    return settings.model_copy(update={"message": message})


def test_within_the_budget_no_symbol(scorer: Scorer) -> None:
    assert scorer.settings.message.scan_budget_ms == 500.0  # the documented default
    v = scorer.score(SPAMMY)
    assert v.rules and SCAN_BUDGET_SYMBOL not in {r.name for r in v.rules}


def test_over_the_budget_scores_what_was_reached(small_model, ruleset, test_settings) -> None:  # type: ignore[no-untyped-def]
    full = Scorer(small_model, ruleset, test_settings).score(SPAMMY)
    # a microsecond: spent by the parse, so no rule runs
    tight = Scorer(small_model, ruleset, _with_budget(test_settings, 0.001)).score(SPAMMY)
    names = [r.name for r in tight.rules]
    assert names == [SCAN_BUDGET_SYMBOL], names
    over = tight.rules[0]
    assert over.source == "check" and "after parsing" in over.description
    assert "0.001 ms CPU budget" in over.description
    # still a verdict from the model on the message's own tokens
    assert 0.0 < tight.probability < 1.0 and tight.model_version == full.model_version
    assert [r.name for r in full.rules if r.source == "rule"]


def test_the_engine_stops_between_stages_and_still_runs_metas() -> None:
    rs = RuleSet.from_text(
        "body BODY_HELLO /hello/\n"
        "header SUBJ_HI Subject =~ /hi/\n"
        "meta META_HELLO BODY_HELLO\n"
        "score BODY_HELLO 1\nscore SUBJ_HI 1\nscore META_HELLO 1\n"
    )
    pm = parse(b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    assert {s.name for s in rs.evaluate(pm)} == {"BODY_HELLO", "SUBJ_HI", "META_HELLO"}
    budget = ScanBudget(1e-9)
    while time.thread_time() <= budget.deadline:  # spend it
        pass
    got = {s.name for s in rs.evaluate(pm, budget=budget)}
    # the body stage ran (it precedes the first check); the header rules were not reached
    assert got == {"BODY_HELLO", "META_HELLO"}
    assert budget.exceeded and budget.stage == "body rules"


def test_zero_means_unbounded() -> None:
    budget = ScanBudget(0)
    assert not budget.spent("anything") and not budget.exceeded


def test_an_html_bomb_is_scored_quickly(scorer: Scorer) -> None:
    """Nested <div> as deep as the parser's text cap allows (~40,000): before the nesting
    bound, seconds of one scoring thread; now well within the budget."""
    html = "<div>" * 100_000 + "deep" + "</div>" * 100_000
    raw = b"From: a@example.org\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n" + html.encode()
    t0 = time.thread_time()
    v = scorer.score(raw)
    spent = time.thread_time() - t0
    assert spent < 0.5, f"{spent:.3f} s of CPU"
    assert SCAN_BUDGET_SYMBOL not in {r.name for r in v.rules}
