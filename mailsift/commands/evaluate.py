"""``mailsift evaluate``: metrics of a model on a labelled corpus, batch or online.

``mailsift evaluate --model DIR --corpus C [--json]``: every message of C scored by the
model folder DIR (default: the served model).
``mailsift evaluate --online --corpus C [--model DIR] [--warmup 0.2] [--json]``: the TREC
immediate-feedback protocol in corpus (date) order, with and without feedback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer


def evaluate_cmd(
    corpus: Annotated[list[str], typer.Option("--corpus", "-c", help="Corpus path or LABEL:PATH")],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model folder (default: served model)")
    ] = None,
    online: Annotated[bool, typer.Option(help="TREC immediate-feedback protocol")] = False,
    warmup: Annotated[
        float, typer.Option(help="--online without --model: share trained on first")
    ] = 0.2,
    kind: Annotated[str | None, typer.Option(help="--online warm-up model kind")] = None,
    order: Annotated[str, typer.Option(help="--online order: date or corpus")] = "date",
    limit: Annotated[int | None, typer.Option(help="Use at most N messages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Evaluate a model: ROC AUC, 1-ROCA%, recall at 0.1%/1% FPR, FPR/FNR, confusion, msg/s."""
    from mailsift.config import get_settings
    from mailsift.pipeline.corpus import CorpusError, index_corpus, subsample
    from mailsift.pipeline.evaluate import evaluate_model_dir, evaluate_online, load_model
    from mailsift.pipeline.metrics import format_table
    from mailsift.pipeline.split import time_order

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    try:
        df = subsample(index_corpus(corpus, progress=True), limit, settings.model.seed)
    except CorpusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if online:
        if order == "date":
            df = time_order(df)
        start = load_model(model) if model is not None else None
        try:
            res = evaluate_online(
                df, settings, model=start, kind=kind, warmup=warmup, progress=True
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(res.to_dict(), default=str))
            return
        typer.echo(f"online ({res.learner}), warm-up {res.warmup} messages, order {order}")
        typer.echo("-- with feedback")
        typer.echo(format_table(res.with_feedback))
        typer.echo("-- without feedback")
        typer.echo(format_table(res.without_feedback))
        return
    model_dir = model or _served(settings)
    try:
        m = evaluate_model_dir(model_dir, df, settings, progress=True)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        d = m.to_dict()
        d["model"] = str(model_dir)
        typer.echo(json.dumps(d, default=str))
        return
    typer.echo(f"model     {model_dir} [{m.extra.get('model_version', '')}]")
    typer.echo(format_table(m))


def _served(settings: object) -> Path:
    from mailsift.pipeline.registry import resolve_serving_model_dir

    d = resolve_serving_model_dir(settings)  # type: ignore[arg-type]
    if d is None:
        typer.echo("error: no model: give --model DIR or run `mailsift train`", err=True)
        raise typer.Exit(2)
    return d


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
