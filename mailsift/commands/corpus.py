"""``mailsift corpus index|fetch``: inspect corpora, download the SpamAssassin corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

corpus_app = typer.Typer(name="corpus", help="Mail corpora for training.", no_args_is_help=True)


@corpus_app.command("index")
def index_cmd(
    corpus: Annotated[
        list[str] | None,
        typer.Argument(help="Corpus path or LABEL:PATH (default: settings.paths.corpus)"),
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the index as CSV")] = None,
) -> None:
    """Index corpora: counts per label and source, date range, duplicates dropped."""
    from mailsift.config import get_settings
    from mailsift.pipeline.corpus import CorpusError, index_corpus, summarize

    if not corpus:
        configured = get_settings().paths.corpus
        if configured is None:
            raise typer.BadParameter("give a corpus (no corpus path configured)")
        corpus = [str(configured)]
    try:
        df = index_corpus(corpus, progress=True)
    except CorpusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if csv is not None:
        df.to_csv(csv, index=False)
    typer.echo(json.dumps(summarize(df), indent=2, default=str))


@corpus_app.command("fetch")
def fetch_cmd(
    dest: Annotated[
        Path | None, typer.Option(help="Folder (default: settings.paths.corpus)")
    ] = None,
) -> None:
    """Download the SpamAssassin public corpus archives (sha256-checked)."""
    from mailsift.config import get_settings
    from mailsift.pipeline.corpus import CorpusError, fetch_spamassassin

    target = dest or get_settings().paths.corpus
    if target is None:
        raise typer.BadParameter("give --dest (no corpus path configured)")
    try:
        paths = fetch_spamassassin(target)
    except CorpusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for p in paths:
        typer.echo(str(p))


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app)
