"""``mailsift retrain``: a full retrain from the base corpus plus all feedback so far.

Runs the training pipeline (``mailsift.pipeline.train.train``: held-out evaluation, MLflow
run, registered version) with every message users taught (``store.feedback.training_set``:
the latest label of each reported message) as extra training data, then the promotion gate
(``--no-promote`` to skip). The store records which learn events the new model contains, so
services that load it (``/v1/models/reload``, restart) replay only newer feedback.

``mailsift retrain [--corpus C ...] [--model KIND] [--every SECONDS] [--purge-samples]``:
``--every`` repeats on a schedule (a failed run is logged and retried next time);
``--purge-samples`` also drops kept verdict samples older than ``feedback.sample_days``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mailsift.config import Settings

log = logging.getLogger(__name__)


def retrain_once(
    settings: Settings,
    corpora: list[str],
    kind: str | None = None,
    out: Path | None = None,
    promote: bool = True,
    store: Any = None,
) -> dict[str, Any]:
    """One full retrain; returns a summary (model version, feedback used, gate decision)."""
    from mailsift.pipeline.train import train
    from mailsift.store import open_store_for

    own = store is None
    store = store or open_store_for(settings)
    try:
        snapshot = store.feedback.last_event_id()
        extra = [(raw, label) for _, label, raw in store.feedback.training_set()]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        kind = kind or settings.model.kind
        result = train(
            corpora,
            kind,
            out,
            settings,
            extra=extra,
            promote=promote,
            run_name=f"retrain-{kind}-{stamp}",
        )
        promoted = bool(result.promotion is not None and result.promotion.promoted)
        summary = {
            "model_version": result.model_version,
            "model_dir": str(result.model_dir),
            "feedback_messages": len(extra),
            "feedback_spam": sum(1 for _, lb in extra if lb == "spam"),
            "last_event_id": snapshot,
            "registered_version": result.registered_version,
            "promoted": promoted,
            "gate": None if result.promotion is None else result.promotion.reason,
            "metrics": result.metrics.flat(),
        }
        store.feedback.record_retrain(result.model_version, snapshot, promoted, summary)
        store.audit.record("retrain", "retrain", result.model_version, summary)
        return summary
    finally:
        if own:
            store.close()


def retrain_cmd(
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", "-c", help="Base corpus (default: settings.paths.corpus)"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model kind")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default models/<run>)")] = None,
    promote: Annotated[bool, typer.Option(help="Run the promotion gate")] = True,
    every: Annotated[
        float | None, typer.Option(help="Repeat every SECONDS (a scheduled retrain)")
    ] = None,
    purge_samples: Annotated[
        bool, typer.Option(help="Drop verdict samples older than feedback.sample_days")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Use at most N corpus messages")] = None,
) -> None:
    """Retrain on the base corpus plus all feedback; promote through the gate."""
    from mailsift.config import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    if limit is not None:
        settings = settings.model_copy(
            update={"train": settings.train.model_copy(update={"max_messages": limit})}
        )
    corpora = list(corpus or [])
    if not corpora:
        if settings.paths.corpus is None:
            raise typer.BadParameter("no corpus configured: give --corpus or set MAILSIFT_CORPUS")
        corpora = [str(settings.paths.corpus)]
    while True:
        started = time.monotonic()
        try:
            if purge_samples:
                _purge(settings)
            summary = retrain_once(settings, corpora, model, out, promote)
            typer.echo(json.dumps(summary, default=str))
        except Exception as exc:
            if every is None:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            log.exception("retrain failed; next attempt in %.0f s", every)
        if every is None:
            return
        time.sleep(max(1.0, every - (time.monotonic() - started)))


def _purge(settings: Settings) -> None:
    from mailsift.store import open_store_for

    store = open_store_for(settings)
    try:
        n = store.verdicts.purge_samples(time.time() - settings.feedback.sample_days * 86400.0)
        log.info("purged %d verdict samples older than %s days", n, settings.feedback.sample_days)
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_cmd)
