"""Scorer: actions at thresholds, GTUBE, personal mail, lists, learning, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.model import SpamModel
from mailsift.classifier.scorer import (
    GTUBE_SCORE,
    Scorer,
    action_for,
    probability_to_score,
)
from mailsift.config import load_settings
from mailsift.pipeline.registry import NoModelError, serving_model_dir
from mailsift.verdict import Action, Envelope, Label, ListDecision, Symbol
from tests.classifier.messages import GTUBE_MESSAGE, PERSONAL, SPAMMY, with_header


def test_gtube_is_rejected(scorer: Scorer) -> None:
    v = scorer.score(GTUBE_MESSAGE)
    assert v.action is Action.REJECT
    assert v.probability == 1.0 and v.score == GTUBE_SCORE
    assert "GTUBE" in v.reason
    assert v.is_spam


def test_personal_message_is_ham(scorer: Scorer) -> None:
    v = scorer.score(PERSONAL)
    assert v.action is Action.HAM, v
    assert v.probability < 0.5 and v.score < v.required_score
    assert v.model_version == scorer.model_version != ""
    assert v.digest and len(v.verdict_id) == 32 and v.elapsed_ms > 0
    assert v.tokens and all(t.token for t in v.tokens)


def test_spammy_message_is_spam_with_reasons(scorer: Scorer) -> None:
    v = scorer.score(SPAMMY)
    assert v.action is not Action.HAM, v
    assert v.score >= v.required_score
    assert v.rules, "the default rules fire on this message"
    assert all(r.description for r in v.rules if r.source == "rule")
    assert sum(t.weight for t in v.tokens) > 0


def test_other_filters_headers_do_not_change_the_verdict(scorer: Scorer) -> None:
    tagged = with_header(PERSONAL, b"X-Spam-Status: Yes, score=25.0 required=5.0")
    tagged = with_header(tagged, b"X-Spam-Flag: YES")
    a, b = scorer.score(PERSONAL), scorer.score(tagged)
    assert a.probability == b.probability and a.action is b.action
    assert [r.name for r in a.rules] == [r.name for r in b.rules]


def test_score_map_and_actions_at_thresholds() -> None:
    s = load_settings(thresholds={"spam": 0.6, "hold": 0.9, "reject": 0.99, "required_score": 5.0})
    assert probability_to_score(0.6, s) == 5.0
    assert probability_to_score(0.99, s) == 10.0
    ps = np.linspace(0.001, 0.999, 50)
    scores = [probability_to_score(float(p), s) for p in ps]
    assert scores == sorted(scores)
    assert action_for(0.59, s) is Action.HAM
    assert action_for(0.6, s) is Action.SPAM
    assert action_for(0.9, s) is Action.HOLD
    assert action_for(0.99, s) is Action.REJECT
    assert action_for(1.0, s) is Action.REJECT


class FixedPolicy:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self.calls: list[tuple[Envelope, str]] = []

    def decide(self, envelope: Envelope, from_addr: str) -> ListDecision | None:
        self.calls.append((envelope, from_addr))
        return ListDecision(self.kind, f"{from_addr} on a {self.kind} list") if self.kind else None


@pytest.mark.parametrize(
    ("kind", "message", "expected"),
    [
        ("trusted", GTUBE_MESSAGE, Action.HAM),
        ("allow", SPAMMY, Action.HAM),
        ("block", PERSONAL, Action.REJECT),
        ("untrusted", PERSONAL, Action.SPAM),
        ("untrusted", GTUBE_MESSAGE, Action.REJECT),
        (None, PERSONAL, Action.HAM),
    ],
)
def test_list_policy_applied_last(
    small_model, ruleset, test_settings, kind, message, expected
) -> None:
    policy = FixedPolicy(kind)
    sc = Scorer(small_model, ruleset, test_settings, list_policy=policy)
    env = Envelope(client_ip="192.0.2.1", mail_from="x@example.org", rcpt_to=("alice@example.com",))
    v = sc.score(message, env)
    assert v.action is expected
    assert v.list_decision == kind
    if kind:
        assert kind in v.reason
    assert policy.calls[0][0] is env and "@" in policy.calls[0][1]


def test_check_symbols_become_features(scorer: Scorer) -> None:
    v = scorer.score(PERSONAL, symbols=[Symbol("DNSBL_TEST", 3.0, "listed", "check")])
    assert any(r.name == "DNSBL_TEST" and r.source == "check" for r in v.rules)
    sample = scorer.sample(PERSONAL, symbols=[Symbol("DNSBL_TEST")])
    assert "sym:DNSBL_TEST" in sample.meta


def test_learn_moves_a_message_and_is_thread_safe(
    small_model_dir: Path, ruleset, test_settings
) -> None:
    sc = Scorer(SpamModel.load(small_model_dir), ruleset, test_settings)
    before = sc.score(SPAMMY).probability
    errors: list[BaseException] = []

    def score_many() -> None:
        try:
            for _ in range(10):
                sc.score(PERSONAL)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=score_many) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(3):
        sc.learn(SPAMMY, Label.HAM)
    for t in threads:
        t.join()
    assert not errors
    assert sc.score(SPAMMY).probability < before


def test_replace_model(small_model_dir: Path, ruleset, test_settings) -> None:
    sc = Scorer(SpamModel.load(small_model_dir), ruleset, test_settings)
    other = SpamModel.load(small_model_dir)
    other.version = "other-version"
    sc.replace_model(other)
    assert sc.score(PERSONAL).model_version == "other-version"


def test_from_model_dir(small_model_dir: Path, tmp_path: Path, test_settings) -> None:
    """The service's path: the registry says which folder serves (a configured path comes
    first), the scorer loads that folder; no folder at all is NoModelError."""
    s = load_settings(
        paths={"var_dir": tmp_path, "models_dir": tmp_path / "models"},
        model={"path": small_model_dir},
        rules={"use_stock": False, "cache_dir": test_settings.rules_cache_dir},
    )
    assert serving_model_dir(s) == Path(small_model_dir)
    sc = Scorer.from_model_dir(serving_model_dir(s), s)
    assert sc.score(GTUBE_MESSAGE).action is Action.REJECT
    assert sc.model_version == SpamModel.load(small_model_dir).version
    empty = load_settings(paths={"var_dir": tmp_path, "models_dir": tmp_path / "none"})
    with pytest.raises(NoModelError, match="no trained model"):
        serving_model_dir(empty)


def test_hostile_input_never_raises(scorer: Scorer) -> None:
    for raw in (
        b"",
        b"\x00\xff" * 100,
        b"Subject: =?bogus?Q?x?=\n\n" + b"A" * 100000,
        "héllo".encode(),
    ):
        v = scorer.score(raw)
        assert 0.0 <= v.probability <= 1.0
