"""``mailsift checks``: the SMTP checks as the configuration sets them up.

One block per registered check, those of ``[checks] order`` first (by stage, then in that
order), then the registered checks the order leaves out: its position, name, stage, whether
it runs (listed and enabled by its own settings block), the block it reads, its skip flags,
and each symbol with its score (``*``: set by ``[scores]``).
"""

from __future__ import annotations

import typer


def format_checks() -> str:
    """The listing of the checks for the current settings."""
    from mailsift.config import get_settings
    from mailsift.smtpd.checks.registry import listing
    from mailsift.smtpd.checks.scores import SCORES

    settings = get_settings()
    overridden = settings.scores.overrides()
    lines: list[str] = []
    for item in listing(settings):
        spec = item.spec
        position = str(item.position) if item.position is not None else "-"
        state = "enabled" if item.enabled else (
            "disabled by its block" if item.position is not None else "not in [checks] order"
        )  # fmt: skip
        flags = [f.removeprefix("skip_") for f, on in spec.skip_flags.items() if on]
        lines.append(
            f"{position:>3}  {spec.name:<18} {spec.stage.name:<8} {state}"
            f"  [{spec.block or '-'}]  skips: {', '.join(flags) or 'none'}"
        )
        for name, score in item.scores.items():
            mark = "*" if name in overridden else " "
            lines.append(f"       {name:<24} {score:>7.2f}{mark} {SCORES[name][1]}")
        if spec.dynamic_symbols:
            lines.append(f"       {spec.dynamic_symbols}")
    return "\n".join(lines)


def checks() -> None:
    """List the SMTP checks: order, stage, enabled, skip flags, symbols and scores."""
    typer.echo(format_checks())


def register(app: typer.Typer) -> None:
    app.command("checks")(checks)
