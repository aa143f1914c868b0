"""`mailsift score [--model DIR] [--jsonl] [--config FILE] PATH...`: score message files.

PATH is a message file, a directory (every file below it, recursively, in name order) or
``-`` (newline-separated paths on standard input). Plain output is one tab-separated line a
message: path, action, spam probability, points, top rules. ``--jsonl`` prints one JSON
object a message: ``path`` (as given), ``score`` (spam probability 0..1), ``action``,
``rules``, ``points``, ``verdict_id``, ``tokens``, ``model_version``; a message that cannot
be read gets ``{"path": ..., "error": ...}``.

Exit status (like grep): 0 no message is spam, 1 at least one is spam (action spam, hold or
reject), 2 usage error, no model, or a message that could not be read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import typer

from mailsift.verdict import Verdict


def iter_paths(args: Sequence[str], stdin_lines: Iterator[str] | None = None) -> Iterator[str]:
    """Expand PATH arguments into message paths (spelled as given; dirs recursively)."""
    for arg in args:
        if arg == "-":
            lines = stdin_lines if stdin_lines is not None else iter(sys.stdin)
            for line in lines:
                p = line.rstrip("\r\n")
                if p.strip():
                    yield from iter_paths([p])
            continue
        if os.path.isdir(arg):
            for root, dirs, files in os.walk(arg):
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(root, name)
        else:
            yield arg


def verdict_record(path: str, v: Verdict) -> dict[str, Any]:
    return {
        "path": path,
        "verdict_id": v.verdict_id,
        "score": v.probability,
        "points": v.score,
        "required": v.required_score,
        "action": v.action.value,
        "rules": [
            {"name": r.name, "weight": r.score, "description": r.description} for r in v.rules
        ],
        "tokens": [{"token": t.token, "weight": t.weight} for t in v.tokens],
        "model_version": v.model_version,
        "reason": v.reason,
        "truncated": v.truncated,
        "elapsed_ms": v.elapsed_ms,
    }


def plain_line(path: str, v: Verdict) -> str:
    top = ",".join(r.name for r in v.rules[:5]) or "-"
    return f"{path}\t{v.action.value}\t{v.probability:.4f}\t{v.score:.2f}\t{top}"


def run_score(paths: Sequence[str], model: str | None, jsonl: bool, config: str | None) -> int:
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.persistence import ModelLoadError
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.config import load_settings
    from mailsift.pipeline.registry import NoModelError, serving_model_dir

    if config:
        if not os.path.isfile(config):
            typer.echo(f"error: config file {config} does not exist", err=True)
            return 2
        os.environ["MAILSIFT_CONFIG"] = config
    try:
        settings = load_settings()
        if model:
            scorer = Scorer(SpamModel.load(model, serving=True), load_rules(settings), settings)
        else:
            scorer = Scorer.from_model_dir(serving_model_dir(settings), settings)
    except (ModelLoadError, NoModelError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    any_spam = any_error = False
    for path in iter_paths(paths):
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            any_error = True
            msg = exc.strerror or str(exc)
            if jsonl:
                typer.echo(json.dumps({"path": path, "error": msg}))
            else:
                typer.echo(f"{path}\terror\t{msg}")
            continue
        verdict = scorer.score(raw)
        any_spam |= verdict.is_spam
        typer.echo(
            json.dumps(verdict_record(path, verdict)) if jsonl else plain_line(path, verdict)
        )
    if any_error:
        return 2
    return 1 if any_spam else 0


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score(
        paths: Annotated[
            list[str], typer.Argument(help="message files, directories, or - for paths on stdin")
        ],
        model: Annotated[
            str | None, typer.Option("--model", help="model folder (default: serving model)")
        ] = None,
        jsonl: Annotated[bool, typer.Option("--jsonl", help="one JSON object per message")] = False,
        config: Annotated[
            str | None, typer.Option("--config", help="mailsift TOML config file")
        ] = None,
    ) -> None:
        """Score messages: one line each; exit 1 if any is spam, 2 on errors."""
        raise typer.Exit(run_score(paths, model, jsonl, config))
