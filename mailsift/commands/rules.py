"""``mailsift rules``: compile-check rule files, and show which rules a message hits.

- ``mailsift rules check DIR_OR_FILE... [--json] [--verbose] [--no-hyperscan]``: compiles the
  ``.cf`` files and prints how many rules compiled (per type; regex rules split into
  Hyperscan-exact, Hyperscan-prefilter + ``re`` confirmation, and ``re`` only) and why the
  others were skipped (reasons grouped with counts; ``--verbose`` lists each rule).
- ``mailsift rules test MESSAGE... [--rules PATH]``: the rules each message hits (the
  configured rule set unless ``--rules`` is given).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from mailsift.classifier.rules import RuleSet, load_ruleset

rules_app = typer.Typer(help="SpamAssassin-syntax rules: check and test.", no_args_is_help=True)


def _group(reason: str) -> str:
    for prefix in (
        "eval test not implemented",
        "unsupported rule type",
        "pseudo-header not available",
    ):
        if reason.startswith(prefix):
            return prefix
    return reason


def summarize(rs: RuleSet) -> dict[str, Any]:
    st = rs.stats()
    groups = Counter(_group(r) for _, r in rs.skipped)
    return {
        "compiled": len(rs.names),
        "by_type": dict(sorted(st.by_type.items())),
        "regex": {
            "hyperscan": st.hyperscan,
            "hyperscan_prefilter_re": st.prefilter,
            "re_only": st.re_only,
        },
        "eval": st.evals,
        "meta": st.metas,
        "disabled_score_0": st.disabled,
        "skipped": len(rs.skipped),
        "skipped_reasons": dict(groups.most_common()),
        "skipped_rules": [{"name": n, "reason": r} for n, r in rs.skipped],
        "warnings": rs.warnings,
        "cache_hit": st.cached,
    }


def _print_text(s: dict[str, Any], verbose: bool) -> None:
    echo = typer.echo
    echo(f"compiled rules: {s['compiled']}")
    for kind, n in s["by_type"].items():
        echo(f"  {kind:8} {n}")
    rx = s["regex"]
    echo(
        f"regex rules: {rx['hyperscan']} hyperscan, {rx['hyperscan_prefilter_re']} hyperscan "
        f"prefilter + re, {rx['re_only']} re only"
    )
    echo(
        f"eval rules: {s['eval']}   meta rules: {s['meta']}   disabled (score 0): {s['disabled_score_0']}"
    )
    echo(f"skipped: {s['skipped']}")
    for reason, n in s["skipped_reasons"].items():
        echo(f"  {n:5}  {reason}")
    if verbose:
        echo("skipped rules:")
        for item in s["skipped_rules"]:
            echo(f"  {item['name']}: {item['reason']}")
        for w in s["warnings"]:
            echo(f"warning: {w}")
    elif s["warnings"]:
        echo(f"warnings: {len(s['warnings'])} (see --verbose)")


@rules_app.command("check")
def check(
    paths: Annotated[list[Path], typer.Argument(help="Rule files or directories of *.cf")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every skipped rule")
    ] = False,
    hyperscan: Annotated[bool, typer.Option("--hyperscan/--no-hyperscan")] = True,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Reuse/write compiled databases here")
    ] = None,
) -> None:
    """Compile rules and report what compiled and why the rest was skipped."""
    try:
        rs = RuleSet.load(paths, cache_dir=cache_dir, use_hyperscan=hyperscan)
    except (FileNotFoundError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    s = summarize(rs)
    if as_json:
        if not verbose:
            s.pop("skipped_rules")
        typer.echo(json.dumps(s, indent=2))
    else:
        _print_text(s, verbose)


@rules_app.command("test")
def test(
    messages: Annotated[list[Path], typer.Argument(help="Message files (.eml)")],
    rules: Annotated[list[Path] | None, typer.Option("--rules", help="Rule files/dirs")] = None,
    subrules: Annotated[bool, typer.Option("--subrules", help="Include __ sub-rules")] = False,
) -> None:
    """Print the rules each message hits."""
    from mailsift.config import get_settings
    from mailsift.message import parse

    rs = RuleSet.load(rules) if rules else load_ruleset(get_settings())
    status = 0
    for path in messages:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            typer.echo(f"{path}: error: {exc}", err=True)
            status = 1
            continue
        hits = rs.evaluate(parse(raw), include_subrules=subrules)
        total = sum(h.score for h in hits)
        typer.echo(f"{path}: {total:.1f} " + " ".join(h.name for h in hits))
    if status:
        sys.exit(status)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
