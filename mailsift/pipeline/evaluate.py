"""Evaluate models on labelled corpora: batch (held-out) and online (TREC immediate feedback).

- :func:`evaluate_samples` / :func:`evaluate_model_dir`: score every message, compute the
  metrics of :mod:`mailsift.pipeline.metrics`; messages per second covers the whole scoring
  path (parse, rules, features, model).
- :func:`evaluate_online`: the TREC spam-track immediate-feedback protocol. Every message
  of the stream, in the given (arrival) order, duplicates included, is scored first, then
  its true label is learnt before the next one, as a trusted reporter's lesson through the
  feedback learner's own update (``mailsift.classifier.online.corpus_learner``). Start
  from a given model (the same model without feedback is scored alongside, so the gain
  from feedback is measured in one run) or from nothing (online logistic regression over
  the same features, learning from the first message on: a blend's stacker needs a
  training set; the first message scores 0.5). ``warmup`` > 0 (library use only, not TREC) trains a starting model on that share
  of the stream first and evaluates the rest.
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
    without_feedback: Metrics | None  # None when starting from nothing
    scores: np.ndarray  # with feedback, in evaluation order
    static_scores: np.ndarray | None
    labels: np.ndarray
    warmup: int  # messages used to train the starting model (0: TREC, all evaluated)
    learner: str  # "feedback.Learner" or "partial_fit"
    start: str = "model"  # "model" or "empty"
    learn_ms: float = 0.0  # median time of one update

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "trec-immediate-feedback" if not self.warmup else "warm-up + feedback",
            "learner": self.learner,
            "start": self.start,
            "warmup_messages": self.warmup,
            "evaluated_messages": len(self.labels),
            "learn_median_ms": round(self.learn_ms, 3),
            "with_feedback": self.with_feedback.to_dict(),
            "without_feedback": (
                self.without_feedback.to_dict() if self.without_feedback is not None else None
            ),
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
        from mailsift.classifier import online
    except ImportError:
        return _PartialFitLearner(model, settings)
    factory = getattr(online, "corpus_learner", None)
    if factory is None:
        return _PartialFitLearner(model, settings)
    return factory(model, settings)


def evaluate_online(
    df: pd.DataFrame,
    settings: Settings,
    *,
    model: Any | None = None,
    kind: str | None = None,
    warmup: float = 0.0,
    n_jobs: int | None = None,
    progress: bool = False,
    samples: list[Any] | None = None,
) -> OnlineResult:
    """Score each message in ``df`` order, then learn its label (immediate feedback).
    ``samples``: the messages' features when already extracted (in ``df`` order)."""
    from mailsift.classifier.model import SpamModel, train_model

    if samples is None:
        samples = extract(df, settings, n_jobs=n_jobs, progress=progress)
    y = labels_of(df)
    n_warm = 0
    start = "model"
    if model is None and warmup > 0:
        n_warm = max(2, round(len(df) * warmup))
        if len(set(y[:n_warm].tolist())) < 2:
            raise ValueError("the warm-up share holds only one class: raise --warmup")
        model = train_model(samples[:n_warm], y[:n_warm], kind, settings)
    if model is None:
        start = "empty"
        k = kind if kind in ("nb", "cnb", "logreg") else "logreg"
        model = SpamModel.build(k, settings)
    rest, y_rest = samples[n_warm:], y[n_warm:]
    static = None
    static_scores = None
    if start == "model":
        static = copy.deepcopy(model)
        static_scores = np.asarray(static.predict_proba(rest), dtype=float)
    learner = _make_learner(model, settings) if start == "model" else None
    scores = np.empty(len(rest))
    learn_s: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rest), desc="online", unit="msg", leave=False)
    t0 = time.perf_counter()
    for i, (sample, label) in enumerate(zip(rest, y_rest, strict=True)):
        if learner is None:  # from nothing: no opinion before the first lesson
            scores[i] = 0.5
        else:
            scores[i] = float(model.predict_proba([sample])[0])
        t1 = time.perf_counter()
        if learner is None:  # the first lesson creates the estimators
            model.partial_fit([sample], [int(label)], sample_weight=[1.0])
            learner = _make_learner(model, settings)
        else:
            learner.learn(sample, int(label))
        learn_s.append(time.perf_counter() - t1)
        if bar is not None:
            bar.update(1)
    elapsed = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    thr = settings.thresholds.resolved(getattr(model, "thresholds_", None)).spam
    return OnlineResult(
        with_feedback=compute_metrics(y_rest, scores, threshold=thr, elapsed_s=elapsed),
        without_feedback=(
            compute_metrics(y_rest, static_scores, threshold=thr)
            if static_scores is not None
            else None
        ),
        scores=scores,
        static_scores=static_scores,
        labels=y_rest,
        warmup=n_warm,
        learner=getattr(learner, "name", type(learner).__name__),
        start=start,
        learn_ms=float(np.median(learn_s) * 1000.0) if learn_s else 0.0,
    )
