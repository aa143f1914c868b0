"""``mailsift evaluate``: metrics of a model on a labelled corpus, batch or online.

``mailsift evaluate --model DIR --corpus C [--json]``: every message of C scored by the
model folder DIR (default: the served model).
``mailsift evaluate --online --corpus C (--base-model DIR | --empty) [--json]``: the TREC
immediate-feedback protocol: every message of C in date order, duplicates included, scored
then its true label learned (as a trusted reporter, through the feedback learner) before
the next; from a model (scored without feedback alongside) or from nothing.
``mailsift evaluate --generalise [--corpora DIR] [--protocol P]``: train on some corpora, test
on the others (:mod:`mailsift.pipeline.generalise`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer


def evaluate_cmd(
    corpus: Annotated[
        list[str] | None, typer.Option("--corpus", "-c", help="Corpus path or LABEL:PATH")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model folder (default: served model)")
    ] = None,
    online: Annotated[bool, typer.Option(help="TREC immediate-feedback protocol")] = False,
    base_model: Annotated[
        Path | None, typer.Option("--base-model", help="--online: start from this model")
    ] = None,
    empty: Annotated[
        bool, typer.Option("--empty", help="--online: start from nothing (online logreg)")
    ] = False,
    kind: Annotated[
        str | None, typer.Option(help="Model kind (--generalise; --online --empty: default logreg)")
    ] = None,
    order: Annotated[str, typer.Option(help="--online order: date or corpus")] = "date",
    limit: Annotated[int | None, typer.Option(help="Use at most N messages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    generalise: Annotated[
        bool,
        typer.Option(
            "--generalise",
            help="Train on some corpora, test on the others (every split of the protocol)",
        ),
    ] = False,
    corpora: Annotated[
        Path | None,
        typer.Option(help="--generalise: folder of corpora (default: the shared corpora)"),
    ] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(help="--generalise: sa->other, other->sa, leave-one-out (default: all)"),
    ] = None,
) -> None:
    """Evaluate a model: ROC AUC, 1-ROCA%, recall at 0.1%/1% FPR, FPR/FNR, confusion, msg/s."""
    from mailsift.config import get_settings
    from mailsift.pipeline.corpus import CorpusError, index_corpus, subsample
    from mailsift.pipeline.evaluate import evaluate_model_dir, evaluate_online, load_model
    from mailsift.pipeline.metrics import format_table
    from mailsift.pipeline.split import time_order

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    if generalise:
        _generalise(settings, corpora, kind, protocol or [], as_json)
        return
    if not corpus:
        typer.echo("error: give --corpus (or --generalise)", err=True)
        raise typer.Exit(2)
    if online and (base_model or model) is None and not empty:
        typer.echo("error: --online needs --base-model DIR or --empty", err=True)
        raise typer.Exit(2)
    if online and (base_model or model) is not None and empty:
        typer.echo("error: give --base-model DIR or --empty, not both", err=True)
        raise typer.Exit(2)
    try:
        # the online protocol takes the stream as it is: no duplicate is dropped
        df = index_corpus(corpus, progress=True, dedupe=not online)
        df = df.head(limit) if online and limit else subsample(df, limit, settings.model.seed)
    except CorpusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if online:
        if order == "date":
            df = time_order(df)
        where = base_model or model
        start = load_model(where) if where is not None else None
        try:
            res = evaluate_online(df, settings, model=start, kind=kind, progress=True)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(res.to_dict(), default=str))
            return
        typer.echo(
            f"online ({res.learner}, from {'nothing' if start is None else where}),"
            f" {len(res.labels)} messages, order {order}"
        )
        typer.echo("-- with feedback")
        typer.echo(format_table(res.with_feedback))
        if res.without_feedback is not None:
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


def _generalise(
    settings: Any, corpora: Path | None, kind: str | None, protocols: list[str], as_json: bool
) -> None:
    from mailsift.pipeline import generalise as gen

    root = corpora
    if root is None and settings.paths.corpus is not None:
        root = Path(settings.paths.corpus).parent  # the shared corpora's folder
    if root is None:
        typer.echo("error: give --corpora DIR", err=True)
        raise typer.Exit(2)
    try:
        df = gen.load_index(root)
        rows = gen.run(
            df,
            {"mailsift": gen.mailsift_system(settings, kind)},
            protocols=protocols,
            log=lambda m: typer.echo(m, err=True),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], default=str))
        return
    typer.echo(gen.markdown(rows))


def _served(settings: object) -> Path:
    from mailsift.pipeline.registry import resolve_serving_model_dir

    d = resolve_serving_model_dir(settings)  # type: ignore[arg-type]
    if d is None:
        typer.echo("error: no model: give --model DIR or run `mailsift train`", err=True)
        raise typer.Exit(2)
    return d


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
