"""Evaluate models on labelled corpora: batch (held-out) and online (TREC immediate feedback).

- :func:`evaluate_samples` / :func:`evaluate_model_dir`: score every message, compute the
  metrics of :mod:`mailsift.pipeline.metrics`; messages per second covers the whole scoring
  path (parse, rules, features, model).
- :func:`evaluate_online`: the TREC spam-track immediate-feedback protocol. Messages are
  taken in corpus (arrival) order; each is scored first, then its true label is learnt
  before the next one. Learning goes through the feedback path
  (:class:`mailsift.classifier.feedback.Learner`) when it is available, else
  ``SpamModel.partial_fit``. The same model without feedback is scored alongside, so the
  gain from feedback is measured in one run. Without a starting model, the first
  ``warmup`` share of the messages trains one (the rest is evaluated).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mailsift.config import Settings
from mailsift.pipeline.extract import extract, labels_of
from mailsift.pipeline.metrics import Metrics, compute_metrics


def load_model(model_dir: Path) -> Any:
    from mailsift.classifier.model import SpamModel

    return SpamModel.load(model_dir)


def evaluate_samples(
    model: Any, samples: list[Any], y: np.ndarray, settings: Settings, elapsed_s: float = 0.0
) -> tuple[Metrics, np.ndarray]:
    t0 = time.perf_counter()
    scores = np.asarray(model.predict_proba(samples), dtype=float)
    elapsed = elapsed_s + (time.perf_counter() - t0)
    thresholds = settings.thresholds.resolved(getattr(model, "thresholds_", None))
    m = compute_metrics(y, scores, threshold=thresholds.spam, elapsed_s=elapsed)
    return m, scores


def evaluate_model_dir(
    model_dir: Path,
    df: pd.DataFrame,
    settings: Settings,
    *,
    n_jobs: int | None = None,
    progress: bool = False,
) -> Metrics:
    """Load a model folder and evaluate it on every message of a corpus index."""
    model = load_model(model_dir)
    t0 = time.perf_counter()
    samples = extract(df, settings, n_jobs=n_jobs, progress=progress)
    m, _ = evaluate_samples(model, samples, labels_of(df), settings, time.perf_counter() - t0)
    m.extra["model_version"] = getattr(model, "version", "")
    return m


@dataclass(slots=True)
class OnlineResult:
    with_feedback: Metrics
    without_feedback: Metrics
    scores: np.ndarray  # with feedback, in evaluation order
    static_scores: np.ndarray
    labels: np.ndarray
    warmup: int  # messages used to train the starting model (0 with a given model)
    learner: str  # "feedback.Learner" or "partial_fit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "trec-immediate-feedback",
            "learner": self.learner,
            "warmup_messages": self.warmup,
            "evaluated_messages": len(self.labels),
            "with_feedback": self.with_feedback.to_dict(),
            "without_feedback": self.without_feedback.to_dict(),
        }


class _PartialFitLearner:
    """The fallback learner: one partial_fit step per message."""

    name = "partial_fit"

    def __init__(self, model: Any, settings: Settings) -> None:
        self.model = model
        self.weight = settings.feedback.learn_weight

    def learn(self, sample: Any, label: int) -> None:
        self.model.partial_fit([sample], [label], sample_weight=[self.weight])


def _make_learner(model: Any, settings: Settings) -> Any:
    try:
        from mailsift.classifier import feedback
    except ImportError:
        return _PartialFitLearner(model, settings)
    factory = getattr(feedback, "corpus_learner", None)
    if factory is None:
        return _PartialFitLearner(model, settings)
    return factory(model, settings)


def evaluate_online(
    df: pd.DataFrame,
    settings: Settings,
    *,
    model: Any | None = None,
    kind: str | None = None,
    warmup: float = 0.2,
    n_jobs: int | None = None,
    progress: bool = False,
) -> OnlineResult:
    """Score each message in ``df`` order, then learn its label (immediate feedback)."""
    from mailsift.classifier.model import train_model

    samples = extract(df, settings, n_jobs=n_jobs, progress=progress)
    y = labels_of(df)
    n_warm = 0
    if model is None:
        n_warm = max(2, round(len(df) * warmup))
        if len(set(y[:n_warm].tolist())) < 2:
            raise ValueError("the warm-up share holds only one class: raise --warmup")
        model = train_model(samples[:n_warm], y[:n_warm], kind, settings)
    static = copy.deepcopy(model)
    learner = _make_learner(model, settings)
    rest, y_rest = samples[n_warm:], y[n_warm:]
    static_scores = np.asarray(static.predict_proba(rest), dtype=float)
    scores = np.empty(len(rest))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rest), desc="online", unit="msg", leave=False)
    t0 = time.perf_counter()
    for i, (sample, label) in enumerate(zip(rest, y_rest, strict=True)):
        scores[i] = float(learner.model.predict_proba([sample])[0])
        learner.learn(sample, int(label))
        if bar is not None:
            bar.update(1)
    elapsed = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    thr = settings.thresholds.resolved(getattr(learner.model, "thresholds_", None)).spam
    return OnlineResult(
        with_feedback=compute_metrics(y_rest, scores, threshold=thr, elapsed_s=elapsed),
        without_feedback=compute_metrics(y_rest, static_scores, threshold=thr),
        scores=scores,
        static_scores=static_scores,
        labels=y_rest,
        warmup=n_warm,
        learner=getattr(learner, "name", type(learner).__name__),
    )
