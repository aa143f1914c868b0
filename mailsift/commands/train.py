"""``mailsift train``: corpora -> evaluated, MLflow-tracked, registered model folder.

``mailsift train --corpus C [--corpus C ...] [--model nb|cnb|logreg|blend] [--out DIR]
[--promote]``; ``mailsift train --default`` trains on every corpus of
``settings.paths.corpora`` (else ``settings.paths.corpus``), evaluates on a held-out split,
refits on all of it, writes ``models/default`` and promotes it through the gate (what
``make run`` runs when no model is served yet). A corpus is a path (format detected) or ``spam:PATH`` / ``ham:PATH``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer


def train_cmd(
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", "-c", help="Corpus path or LABEL:PATH (repeatable)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model kind: nb, cnb, logreg, blend")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default models/<run>)")] = None,
    promote: Annotated[bool, typer.Option(help="Promote through the gate after training")] = False,
    default: Annotated[
        bool,
        typer.Option("--default", help="Train the default model on the configured corpus"),
    ] = False,
    no_register: Annotated[bool, typer.Option("--no-register", help="Skip MLflow")] = False,
    split: Annotated[str, typer.Option(help="auto, time or stratified")] = "auto",
    limit: Annotated[int | None, typer.Option(help="Use at most N messages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Train a model, evaluate it on a held-out split, log it to MLflow and register it."""
    from mailsift.config import get_settings
    from mailsift.pipeline.corpus import CorpusError
    from mailsift.pipeline.metrics import format_table
    from mailsift.pipeline.train import train

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    if limit is not None:
        settings = settings.model_copy(
            update={"train": settings.train.model_copy(update={"max_messages": limit})}
        )
    corpora: list[str] = list(corpus or [])
    also: list[Path] = []
    run_name = None
    refit = False
    if default:
        if not corpora:
            corpora = _default_corpora(settings)
        out = out or settings.default_model_dir
        promote = True
        refit = True
        run_name = f"default-{model or settings.model.kind}"
    if not corpora:
        raise typer.BadParameter("give at least one --corpus (or --default)")
    try:
        result = train(
            corpora,
            model,
            out,
            settings,
            promote=promote,
            register=not no_register,
            run_name=run_name,
            split_method=split,
            also_write=also,
            progress=True,
            refit=refit,
        )
    except (CorpusError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=str))
        return
    t = result.timings
    typer.echo(f"model     {result.model_dir} [{result.model_version}]")
    typer.echo(
        f"data      {result.split['train_messages']} train / {result.split['test_messages']} "
        f"held-out ({result.split['split']} split); duplicates dropped {result.duplicates}"
    )
    typer.echo(
        f"time      {t['total_s']:.1f}s (features {t['train_features_s']:.1f}s, fit {t['fit_s']:.1f}s)"
    )
    typer.echo(format_table(result.metrics))
    if result.registered_version:
        typer.echo(f"mlflow    run {result.run_id}, registered version {result.registered_version}")
    if result.promotion is not None:
        p = result.promotion
        typer.echo(f"promotion {'PROMOTED' if p.promoted else 'not promoted'}: {p.reason}")


def _default_corpora(settings: Any) -> list[str]:
    """Every corpus of ``paths.corpora`` (the shared corpora: the SpamAssassin corpus and
    the later ones); ``paths.corpus`` alone when it is set to a corpus outside that folder
    (or there is no such folder)."""
    from mailsift.pipeline.sources import discover_corpora

    corpus, corpora = settings.paths.corpus, settings.paths.corpora
    inside = (
        corpus is not None
        and corpora is not None
        and Path(corpus).resolve().is_relative_to(Path(corpora).resolve())
    )
    found = discover_corpora(corpora) if corpora is not None and (corpus is None or inside) else {}
    if found:
        return [str(p) for p in found.values()]
    if corpus is None:
        raise typer.BadParameter("no corpus configured (set MAILSIFT_CORPUS)")
    return [str(corpus)]


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
