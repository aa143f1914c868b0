"""The generalisation protocol: train on some corpora, test on the others.

A figure measured on mail from the corpus a model was trained on says little about the mail
a site will receive. Every model choice is judged here instead, on these splits (corpora as
:func:`mailsift.pipeline.sources.discover_corpora` finds them):

- ``spamassassin -> X``: trained on the SpamAssassin corpus, tested on each other corpus;
- ``others -> spamassassin``: trained on every other corpus, tested on the SpamAssassin one;
- ``without X``: leave one corpus out, trained on all the others (every corpus in turn).

A test corpus holding one class only (a mailing list's ham, a phishing collection) has no ROC
of its own: its row gives the share of its mail at each threshold, and the ``pooled`` row of
a protocol ranks all test mail of the protocol together (each test message scored by the
model that did not see its corpus).

Figures per test set: 1-ROCA% (TREC's summary, lower is better), spam recall at 0.1 % and
1 % ham FPR, and the share of ham and of spam at or above each threshold (tag, hold,
reject). A *system* is any ``fit(train index, train samples) -> predict``; mailsift's uses
the thresholds its training calibrated on out-of-source ham; the bench
(``bench/bench_generalisation.py``) runs bogofilter and SpamAssassin through the same splits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mailsift.config import Settings
from mailsift.pipeline.sources import SPAMASSASSIN, corpora_of, discover_corpora

THRESHOLD_NAMES = ("spam", "hold", "reject")


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(slots=True)
class Prediction:
    """A system's scores for test messages (higher = more spam) and its thresholds on that
    scale (None where the system has no such action)."""

    scores: np.ndarray
    thresholds: dict[str, float | None]


# a system: (train rows of the index, their labels) -> (test rows -> Prediction)
System = Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], Prediction]


@dataclass(slots=True)
class Row:
    protocol: str
    split: str
    test: str
    system: str
    n_ham: int
    n_spam: int
    one_minus_roca_pct: float | None
    recall_at_fpr: dict[str, float | None]
    ham_at: dict[str, float | None]
    spam_at: dict[str, float | None]
    thresholds: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def splits(corpora: Sequence[str]) -> list[tuple[str, Split]]:
    """(protocol, split) pairs for the named corpora (see the module docstring)."""
    names = sorted(corpora)
    others = tuple(n for n in names if n != SPAMASSASSIN)
    out: list[tuple[str, Split]] = []
    if SPAMASSASSIN in names and others:
        for o in others:
            out.append(("sa->other", Split(f"spamassassin -> {o}", (SPAMASSASSIN,), (o,))))
        out.append(("other->sa", Split("others -> spamassassin", others, (SPAMASSASSIN,))))
    if len(names) > 2:
        for n in names:
            rest = tuple(m for m in names if m != n)
            out.append(("leave-one-out", Split(f"without {n}", rest, (n,))))
    return out


def _roca(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    return float(100.0 * (1.0 - roc_auc_score(y, s)))


def recall_at(y: np.ndarray, s: np.ndarray, fpr: float) -> float | None:
    """Spam recall at ``fpr`` ham FPR (:func:`mailsift.pipeline.metrics.recall_at_fpr`);
    None for a test set of one class."""
    from mailsift.pipeline.metrics import recall_at_fpr

    if len(set(y.tolist())) < 2:
        return None
    return recall_at_fpr(y, s, fpr)


def _share(v: np.ndarray, t: float | None) -> float | None:
    if t is None or not len(v):
        return None
    return float(np.mean(v >= t))


def measure(
    protocol: str, split: str, test: str, system: str, y: np.ndarray, pred: Prediction
) -> Row:
    s = np.asarray(pred.scores, dtype=float)
    scored = ~np.isnan(s)  # a system may score a sample of the test set only
    s, y = s[scored], y[scored]
    ham, spam = s[y == 0], s[y == 1]
    return Row(
        protocol=protocol,
        split=split,
        test=test,
        system=system,
        n_ham=len(ham),
        n_spam=len(spam),
        one_minus_roca_pct=_roca(y, s),
        recall_at_fpr={f"{t:g}": recall_at(y, s, t) for t in (0.001, 0.01)},
        ham_at={n: _share(ham, pred.thresholds.get(n)) for n in THRESHOLD_NAMES},
        spam_at={n: _share(spam, pred.thresholds.get(n)) for n in THRESHOLD_NAMES},
        thresholds=dict(pred.thresholds),
    )


def load_index(root: Path, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One index of the corpora under ``root`` (duplicates dropped within each corpus),
    with a ``corpus`` column."""
    from mailsift.pipeline.corpus import index_corpus

    found = discover_corpora(root)
    if names:
        missing = sorted(set(names) - set(found))
        if missing:
            raise ValueError(f"no corpus {', '.join(missing)} under {root}")
        found = {n: p for n, p in found.items() if n in names}
    if len(found) < 2:
        raise ValueError(f"{root}: the protocol needs at least two corpora, found {sorted(found)}")
    parts = [index_corpus(p) for p in found.values()]
    df = pd.concat(parts, ignore_index=True)
    df["corpus"] = corpora_of(df)
    return df


def run(
    df: pd.DataFrame,
    systems: dict[str, System],
    *,
    protocols: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every split of the corpora in ``df`` for every system; per-test-corpus rows plus a
    ``pooled`` row per (protocol, system)."""
    from mailsift.pipeline.extract import labels_of

    y_all = labels_of(df)
    rows: list[Row] = []
    pooled: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for protocol, sp in splits(sorted(set(df["corpus"]))):
        if protocols and protocol not in protocols:
            continue
        tr = df["corpus"].isin(sp.train).to_numpy()
        te = df["corpus"].isin(sp.test).to_numpy()
        for name, system in systems.items():
            if log:
                log(f"{name}: {sp.name} ({tr.sum()} training, {te.sum()} test messages)")
            pred = system(df[tr].reset_index(drop=True), y_all[tr], df[te].reset_index(drop=True))
            y = y_all[te]
            rows.append(measure(protocol, sp.name, ",".join(sp.test), name, y, pred))
            pooled.setdefault((protocol, name), []).append((y, np.asarray(pred.scores)))
    for (protocol, name), parts in pooled.items():
        if len(parts) < 2:
            continue
        y = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts])
        rows.append(measure(protocol, "pooled", "all", name, y, Prediction(s, {})))
    return rows


def mailsift_system(settings: Settings, kind: str | None = None) -> System:
    """mailsift trained as ``mailsift train`` trains (source weights, out-of-source stacker
    and calibration, rule priors), scored as the scorer scores (probabilities)."""
    from mailsift.pipeline.extract import extract
    from mailsift.pipeline.train import fit_on_sources, rule_priors, stock_rules

    cache: dict[str, Any] = {}
    priors = rule_priors(settings)
    stock = stock_rules(settings)

    def system(train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame) -> Prediction:
        samples = extract(train, settings, cache=cache)
        model = fit_on_sources(samples, y, train, kind, settings, priors, stock)
        scores = np.asarray(model.predict_proba(extract(test, settings, cache=cache)))
        t = settings.thresholds.resolved(model.thresholds_)
        return Prediction(scores, {"spam": t.spam, "hold": t.hold, "reject": t.reject})

    return system


def _fmt(v: float | None, pct: bool = True, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def markdown(rows: Sequence[Row]) -> str:
    """One Markdown table: a line per (split, test corpus, system)."""
    head = (
        "| protocol | split | test | system | ham / spam | 1-ROCA% | recall@0.1% | recall@1% "
        "| ham tagged % | ham held % | ham rejected % | spam tagged % |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r.protocol} | {r.split} | {r.test} | {r.system} | {r.n_ham} / {r.n_spam} | "
            f"{_fmt(r.one_minus_roca_pct, pct=False, digits=3)} | "
            f"{_fmt(r.recall_at_fpr.get('0.001'))} | {_fmt(r.recall_at_fpr.get('0.01'))} | "
            f"{_fmt(r.ham_at.get('spam'), digits=2)} | {_fmt(r.ham_at.get('hold'), digits=2)} | "
            f"{_fmt(r.ham_at.get('reject'), digits=2)} | {_fmt(r.spam_at.get('spam'))} |"
        )
    return "\n".join(lines)
