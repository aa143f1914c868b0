"""Spam filter metrics (TREC spam track conventions).

- ROC AUC and ``1-ROCA%`` = 100 * (1 - AUC): the TREC summary figure, lower is better.
- Spam recall at a fixed ham false-positive rate (0.1 %, 1 %): the share of spam caught
  when at most that share of ham is misfiled; read off the ROC curve (the best operating
  point whose FPR does not exceed the target).
- FPR (ham misfiled as spam) and FNR (spam missed) at the configured threshold, and the
  confusion matrix ``[[tn, fp], [fn, tp]]`` with spam as the positive class.
- Messages per second when the caller timed the scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

FPR_TARGETS: tuple[float, ...] = (0.001, 0.01)


@dataclass(slots=True)
class Metrics:
    n: int
    n_spam: int
    n_ham: int
    roc_auc: float
    one_minus_roca_pct: float
    recall_at_fpr: dict[float, float]
    threshold: float
    fpr: float
    fnr: float
    accuracy: float
    confusion: list[list[int]]  # [[tn, fp], [fn, tp]]
    messages_per_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Flat float dict, as logged to MLflow (names used by the promotion gate)."""
        out: dict[str, float] = {
            "roc_auc": self.roc_auc,
            "one_minus_roca_pct": self.one_minus_roca_pct,
            "fpr": self.fpr,
            "fnr": self.fnr,
            "accuracy": self.accuracy,
            "n_test": float(self.n),
            "tn": float(self.confusion[0][0]),
            "fp": float(self.confusion[0][1]),
            "fn": float(self.confusion[1][0]),
            "tp": float(self.confusion[1][1]),
        }
        for target, recall in self.recall_at_fpr.items():
            out[f"recall_at_fpr_{target:g}"] = recall
        if self.messages_per_s is not None:
            out["messages_per_s"] = self.messages_per_s
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recall_at_fpr"] = {f"{k:g}": v for k, v in self.recall_at_fpr.items()}
        d.update({k: v for k, v in self.flat().items() if k.startswith("recall_at_fpr_")})
        return d


def to_binary(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Labels ("spam"/"ham", booleans or 0/1) -> int array, spam = 1."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "OUS":
        low = np.char.lower(arr.astype(str))
        bad = ~np.isin(low, ["spam", "ham"])
        if bad.any():
            raise ValueError(f"unknown labels: {sorted(set(low[bad]))[:5]}")
        return (low == "spam").astype(int)
    return arr.astype(int)


def recall_at_fpr(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Highest spam recall (TPR) over thresholds whose ham FPR is <= ``target``."""
    fpr, tpr, _ = roc_curve(y, scores)
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def compute_metrics(
    labels: Sequence[Any] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    threshold: float = 0.5,
    elapsed_s: float | None = None,
    fpr_targets: Sequence[float] = FPR_TARGETS,
) -> Metrics:
    """All metrics for spam probabilities ``scores`` against true ``labels``."""
    y = to_binary(labels)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError("labels and scores differ in length")
    if len(y) == 0:
        raise ValueError("no messages to evaluate")
    n_spam = int(y.sum())
    n_ham = len(y) - n_spam
    if n_spam == 0 or n_ham == 0:
        raise ValueError("evaluation needs both spam and ham messages")
    auc = float(roc_auc_score(y, s))
    pred = (s >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    return Metrics(
        n=len(y),
        n_spam=n_spam,
        n_ham=n_ham,
        roc_auc=auc,
        one_minus_roca_pct=100.0 * (1.0 - auc),
        recall_at_fpr={t: recall_at_fpr(y, s, t) for t in fpr_targets},
        threshold=threshold,
        fpr=fp / n_ham,
        fnr=fn / n_spam,
        accuracy=(tp + tn) / len(y),
        confusion=[[tn, fp], [fn, tp]],
        messages_per_s=(len(y) / elapsed_s) if elapsed_s and elapsed_s > 0 else None,
    )


def format_table(m: Metrics) -> str:
    """Human-readable lines for the command line."""
    (tn, fp), (fn, tp) = m.confusion
    lines = [
        f"messages        {m.n} ({m.n_spam} spam, {m.n_ham} ham)",
        f"ROC AUC         {m.roc_auc:.6f}",
        f"1-ROCA%         {m.one_minus_roca_pct:.4f}",
    ]
    for t, r in m.recall_at_fpr.items():
        lines.append(f"recall@{t * 100:g}%FPR  {r * 100:.2f}%")
    lines += [
        f"threshold       {m.threshold:g}: FPR {m.fpr * 100:.3f}%  FNR {m.fnr * 100:.3f}%",
        f"confusion       tn={tn} fp={fp} fn={fn} tp={tp}",
    ]
    if m.messages_per_s is not None:
        lines.append(f"speed           {m.messages_per_s:.0f} messages/s")
    return "\n".join(lines)
