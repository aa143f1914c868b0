"""What makes a model travel: rule-score priors, out-of-source stacking and calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.features import Sample, hash_columns
from mailsift.classifier.model import (
    CALIBRATION_FLOOR,
    CALIBRATION_MIN_HAM,
    Hyper,
    SpamModel,
    calibrate_thresholds,
    per_source_thresholds,
)
from mailsift.classifier.scorer import Scorer, thresholds_for
from mailsift.config import load_settings
from mailsift.verdict import Action


def _sources(n: int = 40, seed: int = 0) -> tuple[list[Sample], np.ndarray, np.ndarray]:
    """Two sources with their own ham and spam vocabularies, plus words shared by both."""
    rng = np.random.default_rng(seed)
    samples, y, groups = [], [], []
    for g, (ham_w, spam_w) in enumerate(
        [
            (["meeting", "agenda", "patch"], ["viagra", "casino", "pills"]),
            (["kernel", "review", "lunch"], ["loan", "prize", "winner"]),
        ]
    ):
        for i in range(n):
            label = i % 2
            words = spam_w if label else ham_w
            toks = (*(f"w:{words[k]}" for k in rng.integers(0, 3, 4)), "w:common")
            meta = ("rule:SEEN_SPAMMY",) if label and i % 4 == 1 else ()
            samples.append(Sample(toks, meta))
            y.append(label)
            groups.append(f"source{g}")
    return samples, np.array(y), np.array(groups)


def test_calibration_lets_through_at_most_the_target_share_of_ham() -> None:
    rng = np.random.default_rng(1)
    ham = rng.uniform(0.0, 1.0, 10_000)
    t = calibrate_thresholds(ham, None, Hyper())
    assert np.mean(ham >= t["spam"]) <= 0.01 < np.mean(ham >= t["spam"] - 0.002)
    assert np.mean(ham >= t["hold"]) <= 0.003
    assert np.mean(ham >= t["reject"]) <= 0.0005
    assert t["spam"] <= t["hold"] <= t["reject"] < 1
    # weights: the same ham, its top tenth weighing ten times more, needs a stricter cut
    w = np.where(ham > 0.9, 10.0, 1.0)
    tw = calibrate_thresholds(ham, w, Hyper())
    top = ham >= tw["spam"]
    assert w[top].sum() / w.sum() <= 0.01 and tw["spam"] > t["spam"]
    # very clean ham never pulls a threshold below the floor
    low = calibrate_thresholds(np.full(100, 1e-6), None, Hyper())
    assert low == CALIBRATION_FLOOR


def test_each_source_gets_at_most_the_target_share_tagged() -> None:
    """Pooled out-of-source ham sets the thresholds for the average source; a hard source
    (newsletters among mailing lists) raises them until its own ham is within the targets."""
    rng = np.random.default_rng(2)
    easy, hard = rng.uniform(0.0, 0.6, 5000), rng.uniform(0.0, 1.0, 200)
    p = np.concatenate([easy, hard, rng.uniform(0.9, 1.0, 300)])
    y = np.array([0] * 5200 + [1] * 300)
    groups = np.array(["lists"] * 5000 + ["newsletters"] * 200 + ["spam"] * 300)
    pooled = calibrate_thresholds(p[y == 0], None, Hyper())
    assert np.mean(hard >= pooled["spam"]) > 0.01  # the average hides the hard source
    t = per_source_thresholds(pooled, p, y, groups, Hyper())
    for ham in (easy, hard):
        assert np.mean(ham >= t["spam"]) <= 0.01
        assert np.mean(ham >= t["hold"]) <= 0.003 and np.mean(ham >= t["reject"]) <= 0.0005
    assert all(t[k] >= pooled[k] for k in t) and t["spam"] <= t["hold"] <= t["reject"]
    # a source with too few ham messages to say anything does not move them
    tiny = rng.uniform(0.95, 1.0, CALIBRATION_MIN_HAM - 1)
    p3 = np.concatenate([easy, tiny, rng.uniform(0.9, 1.0, 300)])
    y3 = np.array([0] * (5000 + len(tiny)) + [1] * 300)
    g3 = np.array(["lists"] * 5000 + ["tiny"] * len(tiny) + ["spam"] * 300)
    pooled3 = calibrate_thresholds(p3[y3 == 0], None, Hyper())
    assert per_source_thresholds(pooled3, p3, y3, g3, Hyper()) == pooled3


def test_blend_is_stacked_out_of_source_and_calibrated() -> None:
    samples, y, groups = _sources()
    m = SpamModel("blend", n_features=2**16).fit(samples, y, groups=groups)
    assert m.oof_metrics_ is not None and m.oof_metrics_["out_of_source"] is True
    # each source's spam words are unknown to the part trained on the other source, so the
    # out-of-source ranking is worse than the in-source one a shuffled fold would give
    shuffled = SpamModel("blend", n_features=2**16).fit(samples, y)
    assert shuffled.oof_metrics_ is not None and shuffled.oof_metrics_["out_of_source"] is False
    assert m.oof_metrics_["one_minus_roca_pct"] > shuffled.oof_metrics_["one_minus_roca_pct"]
    assert m.thresholds_ is not None
    assert 0.5 <= m.thresholds_["spam"] <= m.thresholds_["hold"] <= m.thresholds_["reject"] < 1


def test_rules_start_from_their_scores_and_learn_bounded_corrections() -> None:
    samples, y, groups = _sources()
    priors = {"SEEN_SPAMMY": 1.0, "NEVER_SEEN_BIG": 4.0, "NEVER_SEEN_SMALL": 0.5, "NICE": -2.0}
    m = SpamModel("blend", n_features=2**16, hyper=Hyper(rule_bound=0.5)).fit(
        samples, y, groups=groups, rule_priors=priors
    )
    assert m.meta_ is not None
    coef = np.asarray(m.meta_.coef_[0])
    col = dict(zip(priors, hash_columns([f"rule:{n}" for n in priors], m.vectorizer.n_meta)))
    # rules the training mail never hit keep their score, scaled by one learned factor
    big, small, nice = (coef[col[n]] for n in ("NEVER_SEEN_BIG", "NEVER_SEEN_SMALL", "NICE"))
    assert big > small > 0 > nice
    assert big / small == pytest.approx(8.0) and nice / small == pytest.approx(-4.0)
    # a rule the mail did hit moves from there by at most the bound: 0.5 score points at the
    # learned scale (log-odds per point)
    scale = small / 0.5
    assert scale > 0
    assert abs(coef[col["SEEN_SPAMMY"]] - scale * 1.0) <= 0.5 * scale + 1e-9
    # without priors an unseen rule weighs nothing
    plain = SpamModel("blend", n_features=2**16).fit(samples, y, groups=groups)
    assert plain.meta_ is not None and plain.meta_.coef_[0][col["NEVER_SEEN_BIG"]] == 0


def test_corrections_of_stock_scores_are_bounded_tighter_than_hand_set_ones() -> None:
    samples, y, groups = _sources()
    # two rules that hit the same spam, neither with a score of its own: what each weighs is
    # its learned correction, clipped to its bound
    twins = [
        Sample(s.tokens, (*s.meta, "rule:OURS", "rule:STOCK", "st:SHAPE")) if label else s
        for s, label in zip(samples, y, strict=True)
    ]
    priors = {"OURS": 1.0, "STOCK": 1.0, "NEVER_SEEN": 1.0}
    hyper = Hyper(meta_c=10.0, prior_bound=0.3, rule_bound=1.0, stock_rule_bound=0.25)
    m = SpamModel("blend", n_features=2**16, hyper=hyper).fit(
        twins, y, groups=groups, rule_priors=priors, stock_rules={"STOCK"}
    )
    assert m.meta_ is not None
    coef = np.asarray(m.meta_.coef_[0])
    names = [f"rule:{n}" for n in priors] + ["st:SHAPE"]
    col = dict(zip([*priors, "SHAPE"], hash_columns(names, m.vectorizer.n_meta)))
    # a rule's bound is in score points at the learned scale (what NEVER_SEEN's score of 1
    # weighs): each twin weighs its score of 1 point plus its bound
    scale = coef[col["NEVER_SEEN"]]
    assert scale > 0
    assert coef[col["OURS"]] == pytest.approx((1.0 + 1.0) * scale)
    assert coef[col["STOCK"]] == pytest.approx((1.0 + 0.25) * scale)
    # a column no rule's score speaks for is bounded in log-odds
    assert coef[col["SHAPE"]] == pytest.approx(0.3)
    # the same rule trusted as a hand-set one learns as far as the wider bound
    m2 = SpamModel("blend", n_features=2**16, hyper=hyper).fit(
        twins, y, groups=groups, rule_priors=priors
    )
    assert m2.meta_ is not None
    scale2 = m2.meta_.coef_[0][col["NEVER_SEEN"]]
    assert m2.meta_.coef_[0][col["STOCK"]] == pytest.approx((1.0 + 1.0) * scale2)


def test_thresholds_come_from_the_model_unless_configured(tmp_path: Path) -> None:
    samples, y, groups = _sources()
    m = SpamModel("blend", n_features=2**16).fit(samples, y, groups=groups)
    m.thresholds_ = {"spam": 0.6, "hold": 0.95, "reject": 0.999}
    m.save(tmp_path / "m")
    loaded = SpamModel.load(tmp_path / "m", serving=True)
    assert loaded.thresholds_ == m.thresholds_
    t = thresholds_for(load_settings(), loaded)
    assert (t.spam, t.hold, t.reject) == (0.6, 0.95, 0.999)
    t = thresholds_for(load_settings(thresholds={"reject": 0.9999}), loaded)
    assert (t.spam, t.hold, t.reject) == (0.6, 0.95, 0.9999)
    # the verdict's action follows the thresholds in force
    raw = b"From: a@b.example\nSubject: hi\n\nviagra casino pills common viagra\n"
    p = Scorer(loaded, None, load_settings()).score(raw).probability
    assert 0.5 < p < 0.999
    above = load_settings(thresholds={"spam": (1 + p) / 2, "hold": (1 + p) / 2, "reject": 1.0})
    below = load_settings(thresholds={"spam": p / 2, "hold": p / 2, "reject": 1.0})
    assert Scorer(loaded, None, above).score(raw).action is Action.HAM
    assert Scorer(loaded, None, below).score(raw).action is Action.HOLD


def test_stacker_never_turns_a_base_models_sign_around() -> None:
    from sklearn.linear_model import LogisticRegression

    from mailsift.classifier.model import _nonnegative_logistic

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    good = (2 * y - 1) * 1.5 + rng.normal(0, 1, 2000)  # evidence for spam
    bad = -(2 * y - 1) * 0.8 + rng.normal(0, 1, 2000)  # a base model that fits "which source"
    x = np.column_stack([good, bad])
    free = LogisticRegression(C=1.0).fit(x, y)
    assert free.coef_[0][1] < 0  # an unbounded stacker would use the wrong sign
    st = _nonnegative_logistic(x, y, None)
    assert st.coef_[0][0] > 0 and st.coef_[0][1] == 0.0
    # with only positive evidence it is the ordinary L2 logistic regression
    x2 = np.column_stack([good, (2 * y - 1) * 0.5 + rng.normal(0, 1, 2000)])
    ref = LogisticRegression(C=1.0).fit(x2, y)
    got = _nonnegative_logistic(x2, y, None)
    assert np.allclose(got.coef_, ref.coef_, atol=1e-3)
    assert np.allclose(got.intercept_, ref.intercept_, atol=1e-3)
