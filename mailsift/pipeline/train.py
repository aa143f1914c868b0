"""Train a model from corpora: index, split, features, fit, evaluate, MLflow, register.

:func:`train` is what ``mailsift train`` and ``mailsift retrain`` run:

1. index the corpora (streaming, duplicates dropped) and split them (time-ordered when the
   dates are sane, else stratified; fixed seed);
2. extract features on all cores (joblib), add ``extra`` labelled messages (e.g. user
   feedback) to the training side only;
3. fit ``SpamModel`` on the training side, score the held-out side;
4. write the model folder (``SpamModel.save``: skops + manifest) to ``out``;
5. log an MLflow run (params, metrics, ROC and precision-recall PNGs, the held-out index,
   the model folder), register a model version, and promote it through the gate if asked.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mailsift.config import Settings
from mailsift.pipeline import registry, tracking
from mailsift.pipeline.corpus import CorpusSpec, index_corpus, subsample
from mailsift.pipeline.evaluate import evaluate_samples
from mailsift.pipeline.extract import extract, extract_raws, labels_of
from mailsift.pipeline.metrics import Metrics
from mailsift.pipeline.sources import source_weights, stacker_groups
from mailsift.pipeline.split import split_index

log = logging.getLogger(__name__)

HELDOUT_COLUMNS = ["id", "label", "source", "date", "size", "path", "member", "offset", "digest"]


@dataclass(slots=True)
class TrainResult:
    model_dir: Path
    model_version: str  # SpamModel.version
    kind: str
    metrics: Metrics
    split: dict[str, Any]
    duplicates: dict[str, int]
    timings: dict[str, float]
    run_id: str | None = None
    registered_version: str | None = None
    promotion: registry.GateResult | None = None
    extra_messages: int = 0
    also_written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "model_version": self.model_version,
            "kind": self.kind,
            "metrics": self.metrics.to_dict(),
            "split": self.split,
            "duplicates": self.duplicates,
            "timings": self.timings,
            "run_id": self.run_id,
            "registered_version": self.registered_version,
            "promotion": None if self.promotion is None else self.promotion.to_dict(),
            "extra_messages": self.extra_messages,
        }


def _label_int(label: Any) -> int:
    v = str(getattr(label, "value", label)).lower()
    if v not in ("spam", "ham"):
        raise ValueError(f"unknown label {label!r}")
    return int(v == "spam")


def train(
    corpora: Sequence[str | Path | CorpusSpec],
    kind: str | None,
    out: Path | None,
    settings: Settings,
    extra: Sequence[tuple[bytes, Any]] | None = None,
    *,
    promote: bool = False,
    register: bool = True,
    run_name: str | None = None,
    split_method: str = "auto",
    also_write: Sequence[Path] = (),
    progress: bool = False,
    index: pd.DataFrame | None = None,
    feature_cache: dict[str, Any] | None = None,
    refit: bool = False,
) -> TrainResult:
    """Train, evaluate on a held-out split, save to ``out``, log and register in MLflow.

    ``refit``: once evaluated, fit the model again on every message (training and held-out
    side) and save that one; the logged figures stay those of the held-out split, measured
    before the refit, and its out-of-source figures are the refit's own (``mailsift train
    --default``: the shipped model learns from all the mail there is).

    ``extra``: additional labelled raw messages ``(raw, "spam"|"ham"|Label)`` for the
    training side (feedback for ``retrain``). ``out`` None: ``models/<run name>``.
    ``index``: an already built corpus index (then ``corpora`` only names it in the logs).
    ``settings.train.max_messages``: a stratified subsample of that many messages.
    ``feature_cache``: message digest -> sample, shared by several calls with the same
    settings (e.g. comparing model kinds on one corpus).
    """
    from mailsift.classifier.model import train_model

    kind = kind or settings.model.kind
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_name = run_name or f"{kind}-{stamp}"
    out = out or settings.paths.models_dir / run_name
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    if index is None:
        index = index_corpus(list(corpora), progress=progress)
    df = subsample(index, settings.train.max_messages, settings.model.seed)
    if len(df) < 4:
        raise ValueError(f"only {len(df)} messages in {', '.join(map(str, corpora))}")
    sp = split_index(
        df,
        test_fraction=settings.train.test_fraction,
        seed=settings.model.seed,
        method=split_method,
    )
    timings["index_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    x_train = extract(sp.train, settings, progress=progress, cache=feature_cache)
    y_train = labels_of(sp.train)
    groups = stacker_groups(sp.train)
    weights = source_weights(sp.train, y_train)
    extra = list(extra or [])
    if extra:
        x_train += extract_raws((r for r, _ in extra), settings, total=len(extra))
        y_train = np.concatenate([y_train, np.array([_label_int(lb) for _, lb in extra])])
        groups = np.concatenate([groups, np.array(["feedback"] * len(extra), dtype=object)])
        weights = np.concatenate([weights, np.ones(len(extra))])
    timings["train_features_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    priors = rule_priors(settings)
    stock = stock_rules(settings)
    model = train_model(
        x_train,
        y_train,
        kind,
        settings,
        sample_weight=weights,
        groups=groups,
        rule_priors=priors,
        stock_rules=stock,
    )
    timings["fit_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    x_test = extract(sp.test, settings, progress=progress, cache=feature_cache)
    y_test = labels_of(sp.test)
    metrics, scores = evaluate_samples(
        model, x_test, y_test, settings, elapsed_s=time.perf_counter() - t3
    )
    timings["evaluate_s"] = time.perf_counter() - t3
    if refit:
        t4 = time.perf_counter()
        x_all = x_train + extract(sp.test, settings, progress=progress, cache=feature_cache)
        y_all = np.concatenate([y_train, y_test])
        w_all, g_all = refit_inputs(sp.train, sp.test, len(extra))
        model = train_model(
            x_all,
            y_all,
            kind,
            settings,
            sample_weight=w_all,
            groups=g_all,
            rule_priors=priors,
            stock_rules=stock,
        )
        del x_all
        timings["refit_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0

    summary = {
        "corpora": [str(c) for c in corpora],
        "messages": len(df),
        "spam": int((df["label"] == "spam").sum()),
        "ham": int((df["label"] == "ham").sum()),
        "duplicates_dropped": df.attrs.get("duplicates", {}),
        "extra_messages": len(extra),
        **sp.summary(),
    }
    model.save(
        out,
        {
            "training_data": summary,
            "metrics": metrics.flat(),
            "trainer": "mailsift.pipeline.train",
            "run_name": run_name,
            "refit_on_all": refit,
        },
    )
    del x_train
    written: list[Path] = []
    for extra_dir in also_write:
        if Path(extra_dir).resolve() != Path(out).resolve():
            _copy_model(Path(out), Path(extra_dir))
            written.append(Path(extra_dir))

    result = TrainResult(
        model_dir=Path(out),
        model_version=model.version,
        kind=kind,
        metrics=metrics,
        split=sp.summary(),
        duplicates=dict(df.attrs.get("duplicates", {})),
        timings=timings,
        extra_messages=len(extra),
        also_written=written,
    )
    if register:
        _log_and_register(result, settings, run_name, summary, sp.test, y_test, scores)
        if promote and result.registered_version:
            result.promotion = registry.promote(settings, result.registered_version)
    return result


def refit_inputs(
    train_index: pd.DataFrame, test_index: pd.DataFrame, n_extra: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and stacker groups for a refit on every message, in the order the refit's
    samples come: the training rows, ``n_extra`` feedback messages (weight 1, group
    ``feedback``), the held-out rows. They are those of the whole corpus, as if it had never
    been split: weighed per part, each part's sources would be balanced within it (a
    source's newest fifth weighing as much as the rest of it) and the stacker and the
    thresholds would depend on the split."""
    both = pd.concat([train_index, test_index])
    y_both = labels_of(both)
    w, g = source_weights(both, y_both), stacker_groups(both)
    n = len(train_index)
    extra_w, extra_g = np.ones(n_extra), np.array(["feedback"] * n_extra, dtype=object)
    return np.concatenate([w[:n], extra_w, w[n:]]), np.concatenate([g[:n], extra_g, g[n:]])


def fit_on_sources(
    samples: Sequence[Any],
    y: np.ndarray,
    index: pd.DataFrame,
    kind: str | None,
    settings: Settings,
    priors: dict[str, float] | None = None,
    stock: frozenset[str] | None = None,
) -> Any:
    """A model of the corpus rows ``index`` (their ``samples`` and labels ``y``) trained as
    :func:`train` trains it: source weights, the stacker and thresholds out of source, the
    rules' scores as priors (``priors``, else the configured rules'; ``stock``: which of them
    are SpamAssassin's, else the configured rules')."""
    from mailsift.classifier.model import train_model

    return train_model(
        samples,
        y,
        kind,
        settings,
        sample_weight=source_weights(index, y),
        groups=stacker_groups(index),
        rule_priors=priors if priors is not None else rule_priors(settings),
        stock_rules=stock if stock is not None else stock_rules(settings),
    )


def rule_priors(settings: Settings) -> dict[str, float] | None:
    """The configured rules' SpamAssassin scores (score set 2: Bayes on, network tests off,
    as a local SpamAssassin with Bayes runs), the rules/structure model's starting point."""
    from mailsift.pipeline.extract import load_rules

    score_set = getattr(load_rules(settings), "score_set", None)
    return None if score_set is None else dict(score_set(2))


def stock_rules(settings: Settings) -> frozenset[str]:
    """The configured rules defined in the stock SpamAssassin files (not ours, nor extra
    paths): their scores were fitted by SpamAssassin's perceptron on mass-checks of many
    sites' mail, and the rules/structure model keeps closer to them
    (``Hyper.stock_rule_bound``) than to hand-set scores."""
    from mailsift.classifier.rules import stock_paths
    from mailsift.pipeline.extract import load_rules

    if not settings.rules.use_stock:
        return frozenset()
    sources = getattr(load_rules(settings), "sources", None)
    if sources is None:
        return frozenset()
    roots = [p.resolve() for p in stock_paths(settings)]
    out = set()
    for name, src in sources().items():
        path = Path(src).resolve()
        if any(path == r or r in path.parents for r in roots):
            out.add(name)
    return frozenset(out)


def _copy_model(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)


def _log_and_register(
    result: TrainResult,
    settings: Settings,
    run_name: str,
    summary: dict[str, Any],
    test_df: Any,
    y_test: np.ndarray,
    scores: np.ndarray,
) -> None:
    import mlflow

    client = tracking.configure(settings)
    with mlflow.start_run(run_name=run_name) as run, tracking.scratch_dir() as tmp:
        mlflow.set_tag("mailsift.kind", "train")
        mlflow.log_params(
            {
                "kind": result.kind,
                "corpora": ",".join(summary["corpora"])[:500],
                "messages": summary["messages"],
                "split": summary["split"],
                "test_fraction": settings.train.test_fraction,
                "seed": settings.model.seed,
                "n_features": settings.model.n_features,
                "extra_messages": result.extra_messages,
                "duplicates_dropped": json.dumps(result.duplicates),
                "model_version": result.model_version,
                "rules_use_stock": settings.rules.use_stock,
            }
        )
        mlflow.log_metrics(result.metrics.flat())
        mlflow.log_metrics({k: float(v) for k, v in result.timings.items()})
        roc = tracking.plot_roc({result.kind: (y_test, scores)}, tmp / "roc.png")
        pr = tracking.plot_precision_recall(y_test, scores, tmp / "precision_recall.png")
        mlflow.log_artifact(str(roc), "plots")
        mlflow.log_artifact(str(pr), "plots")
        held = test_df[HELDOUT_COLUMNS].copy()
        held["score"] = scores
        held.to_csv(tmp / "heldout.csv", index=False)
        mlflow.log_artifact(str(tmp / "heldout.csv"), "heldout")
        mlflow.log_dict(result.to_dict(), "train_result.json")
        mlflow.log_artifacts(str(result.model_dir), "model")
        run_id = run.info.run_id
    result.run_id = run_id
    manifest_sha = registry._sha256(result.model_dir / registry.MANIFEST)
    result.registered_version = registry.register_model(
        client,
        settings,
        run_id,
        result.model_dir,
        tags={
            "kind": result.kind,
            "manifest_sha256": manifest_sha,
            "model_version": result.model_version,
        },
    )
    log.info(
        "registered %s v%s (run %s)",
        settings.mlflow.registered_model,
        result.registered_version,
        run_id,
    )
