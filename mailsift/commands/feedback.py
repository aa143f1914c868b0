"""``mailsift feedback spam|ham (--verdict ID | FILE) [--user U] [--source S]``.

Records a report in the store (rate caps, dedupe, audit: ``mailsift.learning.feedback``)
and its learn event; running services (API, SMTP filter) apply it to their live model within
``feedback.sync_interval`` seconds. FILE ``-`` reads the message from stdin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def feedback_cmd(
    label: Annotated[str, typer.Argument(help="spam or ham")],
    file: Annotated[Path | None, typer.Argument(help="The message (.eml; - for stdin)")] = None,
    verdict: Annotated[str | None, typer.Option("--verdict", help="A verdict id")] = None,
    user: Annotated[str, typer.Option(help="Who reports (audited)")] = "admin",
    source: Annotated[str, typer.Option(help="user, admin, trap, quarantine or api")] = "admin",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Teach the filter that a message is spam or ham."""
    from mailsift.commands.store import cli_store
    from mailsift.config import get_settings
    from mailsift.learning.feedback import FeedbackError, record_report
    from mailsift.service import kept_message, known_verdict

    if (file is None) == (verdict is None):
        raise typer.BadParameter("give either --verdict ID or a message FILE")
    settings = get_settings()
    raw: bytes | None = None
    if file is not None:
        try:
            raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc}") from None
    with cli_store(settings) as store:
        try:
            digest = None
            if verdict is not None:
                rec = known_verdict(store, verdict)
                raw = kept_message(store, rec)
                digest = rec.digest
            assert raw is not None
            res, _ = record_report(
                store, settings, label, user, raw, verdict_id=verdict, source=source, digest=digest
            )
        except FeedbackError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(res.to_dict()))
    else:
        typer.echo(f"{res.status}: {res.label} {res.digest[:16]} {res.detail}".rstrip())
    if res.status == "rate_limited":
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("feedback")(feedback_cmd)
