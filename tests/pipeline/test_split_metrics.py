"""Held-out split (time order, stratified fallback, seed) and metrics against scikit-learn."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from mailsift.pipeline.metrics import compute_metrics, format_table, recall_at_fpr
from mailsift.pipeline.split import dates_are_sane, split_index, time_order


def _index(n: int, dates: list | None = None, spam_every: int = 3) -> pd.DataFrame:
    if dates is None:
        dates = list(pd.date_range("2002-01-01", periods=n, freq="h", tz="UTC"))
    return pd.DataFrame(
        {
            "id": [f"m{i}" for i in range(n)],
            "label": ["spam" if i % spam_every == 0 else "ham" for i in range(n)],
            "date": pd.to_datetime(dates, utc=True),
        }
    )


def test_time_split_trains_on_older_mail() -> None:
    df = _index(100).sample(frac=1.0, random_state=3).reset_index(drop=True)  # shuffled
    s = split_index(df, test_fraction=0.2, seed=1)
    assert s.method == "time"
    assert len(s.train) == 80 and len(s.test) == 20
    assert s.train["date"].max() < s.test["date"].min()
    assert s.cutoff == s.test["date"].min()
    assert s.summary()["split"] == "time"


def test_stratified_when_dates_are_not_sane() -> None:
    n = 90
    dates = [None] * 50 + list(pd.date_range("2002-01-01", periods=40, freq="h", tz="UTC"))
    df = _index(n, dates)
    assert not dates_are_sane(df["date"])
    s = split_index(df, test_fraction=0.2, seed=7)
    assert s.method == "stratified"
    # label balance kept on both sides
    assert abs((s.test["label"] == "spam").mean() - (df["label"] == "spam").mean()) < 0.02
    # same seed, same split; another seed, another split
    assert list(split_index(df, seed=7).test["id"]) == list(s.test["id"])
    assert list(split_index(df, seed=8).test["id"]) != list(s.test["id"])


def test_implausible_dates_fall_back() -> None:
    future = [datetime(2090, 1, 1, tzinfo=UTC)] * 60 + [datetime(2002, 1, 1, tzinfo=UTC)] * 40
    assert not dates_are_sane(pd.Series(pd.to_datetime(future, utc=True)))
    same = pd.Series(pd.to_datetime([datetime(2002, 1, 1, tzinfo=UTC)] * 10, utc=True))
    assert not dates_are_sane(same)  # one instant is no timeline
    assert dates_are_sane(_index(10)["date"])


def test_time_split_seeded_tiebreak_and_forced_method() -> None:
    df = _index(40, [datetime(2002, 1, 1 + i // 10, tzinfo=UTC) for i in range(40)])
    a = split_index(df, seed=5, method="time")
    b = split_index(df, seed=5, method="time")
    assert list(a.test["id"]) == list(b.test["id"])
    assert split_index(_index(40), method="stratified").method == "stratified"
    with pytest.raises(ValueError):
        split_index(df, method="random")
    assert list(time_order(df.iloc[::-1])["date"]) == sorted(df["date"])


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = np.clip(y * 0.35 + rng.normal(0.35, 0.2, 2000), 0, 1)
    labels = np.where(y == 1, "spam", "ham")
    m = compute_metrics(labels, s, threshold=0.5, elapsed_s=2.0)
    assert m.roc_auc == pytest.approx(roc_auc_score(y, s))
    assert m.one_minus_roca_pct == pytest.approx(100 * (1 - roc_auc_score(y, s)))
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()
    assert m.confusion == [[tn, fp], [fn, tp]]
    assert m.fpr == pytest.approx(fp / (fp + tn)) and m.fnr == pytest.approx(fn / (fn + tp))
    fpr, tpr, _ = roc_curve(y, s)
    for target in (0.001, 0.01):
        assert m.recall_at_fpr[target] == pytest.approx(tpr[fpr <= target].max())
    assert m.messages_per_s == pytest.approx(1000.0)
    flat = m.flat()
    assert flat["recall_at_fpr_0.001"] == m.recall_at_fpr[0.001]
    assert "1-ROCA%" in format_table(m)


def test_recall_at_fpr_exact_small_case() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.95, 0.8, 0.7, 0.05])
    # with no ham above the threshold (FPR 0) only 0.95 is caught
    assert recall_at_fpr(y, s, 0.0) == pytest.approx(0.25)
    assert recall_at_fpr(y, s, 0.25) == pytest.approx(0.75)
    perfect = compute_metrics([0, 1], [0.1, 0.9])
    assert perfect.one_minus_roca_pct == 0.0 and perfect.recall_at_fpr[0.001] == 1.0


def test_metrics_refuse_one_class() -> None:
    with pytest.raises(ValueError, match="both spam and ham"):
        compute_metrics(["spam", "spam"], [0.1, 0.2])
    with pytest.raises(ValueError, match="unknown labels"):
        compute_metrics(["spam", "eggs"], [0.1, 0.2])


def test_time_split_with_one_class_held_out_falls_back() -> None:
    df = _index(50)
    df["label"] = ["spam"] * 25 + ["ham"] * 25  # the newest 20% is all ham
    assert split_index(df).method == "stratified"
    assert split_index(df, method="time").method == "time"
