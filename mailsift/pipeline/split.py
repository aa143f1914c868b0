"""Held-out split of a corpus index: time-ordered when the dates are sane, else stratified.

A time-ordered split (train on older mail, test on newer) measures what matters in
production, where the model always scores mail from after its training data. It needs sane
dates: most messages dated (``min_dated``), and the dated ones inside a plausible range
(not before 1990, not in the future). Otherwise the split is stratified by label with a
fixed seed; also when the newest share of the mail holds only one class (nothing to
evaluate). Undated messages in a time-ordered split go to the training side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

MIN_DATE = pd.Timestamp("1990-01-01", tz="UTC")


@dataclass(frozen=True, slots=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    method: str  # "time" or "stratified"
    cutoff: pd.Timestamp | None = None  # first test date for a time split

    def summary(self) -> dict[str, object]:
        return {
            "split": self.method,
            "train_messages": len(self.train),
            "test_messages": len(self.test),
            "train_spam": int((self.train["label"] == "spam").sum()),
            "test_spam": int((self.test["label"] == "spam").sum()),
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
        }


def dates_are_sane(
    dates: pd.Series, *, min_dated: float = 0.9, now: datetime | None = None
) -> bool:
    """True when at least ``min_dated`` of the messages have a plausible date."""
    if len(dates) == 0:
        return False
    d = pd.to_datetime(dates, utc=True, errors="coerce")
    upper = pd.Timestamp(now or datetime.now(UTC)) + timedelta(days=2)
    plausible = d.notna() & (d >= MIN_DATE) & (d <= upper)
    if plausible.mean() < min_dated:
        return False
    # all mail on one instant is no timeline either
    return bool(d[plausible].nunique() > 1)


def split_index(
    df: pd.DataFrame,
    *,
    test_fraction: float = 0.2,
    seed: int = 42,
    method: str = "auto",
    min_dated: float = 0.9,
    now: datetime | None = None,
) -> Split:
    """Split ``df`` into train and test. ``method``: "auto", "time" or "stratified"."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be between 0 and 1")
    if len(df) < 2:
        raise ValueError("need at least two messages to split")
    if method not in ("auto", "time", "stratified"):
        raise ValueError(f"unknown split method {method!r}")
    use_time = method == "time" or (
        method == "auto" and dates_are_sane(df["date"], min_dated=min_dated, now=now)
    )
    if use_time:
        split = _time_split(df, test_fraction, seed)
        # a held-out side with one class cannot be evaluated: fall back (auto only)
        if method == "time" or split.test["label"].nunique() > 1 or df["label"].nunique() < 2:
            return split
    return _stratified_split(df, test_fraction, seed)


def _time_split(df: pd.DataFrame, test_fraction: float, seed: int) -> Split:
    d = pd.to_datetime(df["date"], utc=True, errors="coerce")
    # stable order: by date, ties broken by a seeded permutation (not by corpus order)
    tiebreak = np.random.default_rng(seed).permutation(len(df))
    order = np.lexsort((tiebreak, d.fillna(MIN_DATE).to_numpy()))
    ordered = df.iloc[order].reset_index(drop=True)
    n_test = max(1, round(len(df) * test_fraction))
    n_test = min(n_test, len(df) - 1)
    train = ordered.iloc[: len(df) - n_test].reset_index(drop=True)
    test = ordered.iloc[len(df) - n_test :].reset_index(drop=True)
    cutoff = pd.to_datetime(test["date"], utc=True).min()
    return Split(train=train, test=test, method="time", cutoff=cutoff)


def _stratified_split(df: pd.DataFrame, test_fraction: float, seed: int) -> Split:
    counts = df["label"].value_counts()
    stratify = df["label"] if len(counts) > 1 and counts.min() >= 2 else None
    train, test = train_test_split(
        df, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    return Split(
        train=train.reset_index(drop=True), test=test.reset_index(drop=True), method="stratified"
    )


def time_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in arrival order (undated first, then by date, ties kept in corpus order)."""
    d = pd.to_datetime(df["date"], utc=True, errors="coerce").fillna(MIN_DATE)
    return (
        df.assign(_d=d).sort_values("_d", kind="stable").drop(columns="_d").reset_index(drop=True)
    )
