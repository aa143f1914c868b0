"""``mailsift models list|show|promote|serving``: the MLflow model registry.

``promote VERSION`` runs the gate (the challenger against the champion, on the challenger's
held-out split, or on ``--corpus``); ``--force`` skips it. ``serving`` prints the folder the
scorer loads (exit 1 when there is none: ``make run`` trains one then).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    name="models", help="Registered models and the champion.", no_args_is_help=True
)


@models_app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered versions, newest first (aliases, kind, key metrics)."""
    from mailsift.config import get_settings
    from mailsift.pipeline.registry import list_versions

    rows = list_versions(get_settings())
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    if not rows:
        typer.echo("no registered models")
        return
    for r in rows:
        m = r["metrics"]
        typer.echo(
            f"v{r['version']:<4} {','.join(r['aliases']) or '-':<10} {r['kind'] or '-':<7} "
            f"1-ROCA% {m.get('one_minus_roca_pct', float('nan')):.4f}  "
            f"recall@0.1% {m.get('recall_at_fpr_0.001', float('nan')):.4f}  {r['local_dir']}"
        )


@models_app.command("show")
def show_cmd(version: Annotated[str, typer.Argument(help="Version number or 'champion'")]) -> None:
    """One version: tags, run metrics, manifest."""
    from mailsift.config import get_settings
    from mailsift.pipeline.registry import champion_version, get_version, model_dir_for_version

    settings = get_settings()
    mv = champion_version(settings) if version == "champion" else get_version(settings, version)
    if mv is None:
        typer.echo("no champion", err=True)
        raise typer.Exit(1)
    d = model_dir_for_version(settings, mv)
    manifest = json.loads((d / "manifest.json").read_text())
    typer.echo(
        json.dumps(
            {
                "version": mv.version,
                "aliases": list(mv.aliases or []),
                "run_id": mv.run_id,
                "source": mv.source,
                "tags": dict(mv.tags),
                "local_dir": str(d),
                "manifest": manifest,
            },
            indent=2,
            default=str,
        )
    )


@models_app.command("promote")
def promote_cmd(
    version: Annotated[str, typer.Argument(help="Registered version to promote")],
    corpus: Annotated[
        list[str] | None, typer.Option("--corpus", "-c", help="Gate on this corpus instead")
    ] = None,
    force: Annotated[bool, typer.Option(help="Skip the gate")] = False,
) -> None:
    """Make VERSION the champion if it is no worse than the current one on the gate metrics."""
    from mailsift.config import get_settings
    from mailsift.pipeline import registry

    settings = get_settings()
    evaluator = None
    if corpus:
        from mailsift.pipeline.corpus import index_corpus
        from mailsift.pipeline.evaluate import evaluate_model_dir

        df = index_corpus(corpus)

        def evaluator(d: Path) -> dict[str, float]:
            return evaluate_model_dir(d, df, settings).flat()

    res = registry.promote(settings, version, evaluator=evaluator, force=force)
    for c in res.checks:
        new, old = ("-" if c[k] is None else f"{c[k]:.5f}" for k in ("challenger", "champion"))
        verdict = c.get("skipped") or ("ok" if c["ok"] else "WORSE")
        typer.echo(
            f"  {c['metric']:<26} challenger {new}  champion {old}"
            f"  ({c['better']} is better) {verdict}"
        )
    typer.echo(f"v{res.version}: {'promoted' if res.promoted else 'not promoted'} ({res.reason})")
    if not res.promoted:
        raise typer.Exit(1)


@models_app.command("serving")
def serving_cmd() -> None:
    """Print the model folder serving uses (exit 1 when there is none)."""
    from mailsift.config import get_settings
    from mailsift.pipeline.registry import resolve_serving_model_dir

    d = resolve_serving_model_dir(get_settings())
    if d is None:
        typer.echo("no model is being served: run `mailsift train --default`", err=True)
        raise typer.Exit(1)
    typer.echo(str(d))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)
