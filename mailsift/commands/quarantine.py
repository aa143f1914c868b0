"""``mailsift quarantine list|show|release|delete|learn|purge``: review held mail from a shell.

The same ``mailsift.quarantine.Quarantine`` as the web pages and the JSON API (same store,
same spool, same audit trail). The actor recorded for each action is ``cli:<login user>``
unless ``--actor`` says otherwise. ``purge`` is what a cron job or systemd timer runs.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

quarantine_app = typer.Typer(
    name="quarantine",
    help="Review held mail: list, show, release, delete, learn, purge.",
    no_args_is_help=True,
)

ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who does it (for the audit trail)")]


def _open() -> Any:
    from mailsift.config import get_settings
    from mailsift.quarantine import Quarantine
    from mailsift.store import open_store_for

    settings = get_settings()
    return Quarantine(settings, open_store_for(settings))


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1 if getattr(exc, "status", 400) < 500 else 2)


@quarantine_app.command("list")
def list_cmd(
    user: Annotated[str | None, typer.Option(help="Only mail addressed to this user")] = None,
    sender: Annotated[str | None, typer.Option(help="Sender contains")] = None,
    recipient: Annotated[str | None, typer.Option(help="A recipient contains")] = None,
    min_score: Annotated[float | None, typer.Option()] = None,
    max_score: Annotated[float | None, typer.Option()] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="held, releasing, released, deleted")
    ] = None,
    sort: Annotated[str, typer.Option(help="created, score, sender, subject, expires")] = "created",
    asc: Annotated[bool, typer.Option("--asc", help="Oldest / lowest first")] = False,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List held messages (newest first)."""
    from mailsift.quarantine import QuarantineError, QuarantineQuery

    try:
        q = QuarantineQuery(
            sender=sender,
            recipient=recipient,
            min_score=min_score,
            max_score=max_score,
            statuses=tuple(status or ()),
            sort=sort,
            descending=not asc,
            limit=limit,
        )
        entries, total = _open().list(user, q)
    except QuarantineError as exc:
        raise _fail(exc) from None
    for e in entries:
        if as_json:
            typer.echo(json.dumps(e.to_dict(), sort_keys=True))
        else:
            typer.echo(
                f"{e.id}  {_when(e.created)}  {e.score:6.2f}  {e.status:9}  "
                f"{e.sender or '<>'} -> {','.join(e.recipients)}  {e.subject[:60]!r}"
            )
    if not as_json:
        typer.echo(f"{len(entries)} of {total} shown", err=True)


@quarantine_app.command("show")
def show_cmd(
    qid: Annotated[str, typer.Argument(help="Quarantine id")],
    raw: Annotated[bool, typer.Option("--raw", help="Write the raw message to stdout")] = False,
) -> None:
    """Show an entry, the verdict's reasons and the message as text (or --raw bytes)."""
    from mailsift.quarantine import QuarantineError
    from mailsift.review import explanation, message_view

    q = _open()
    try:
        e = q.get(qid)
        data = q.raw(qid) if e.status != "deleted" else b""
    except QuarantineError as exc:
        raise _fail(exc) from None
    if raw:
        sys.stdout.buffer.write(data)
        return
    why = explanation(e)
    out = [
        f"id:         {e.id}",
        f"verdict:    {e.verdict_id}",
        f"status:     {e.status}" + (f" by {e.released_by}" if e.released_by else ""),
        f"sender:     {e.sender or '<>'}",
        f"recipients: {', '.join(e.recipients)}",
        f"subject:    {e.subject}",
        f"score:      {e.score:.2f} (p={e.probability:.4f})",
        f"held:       {_when(e.created)}   expires: {_when(e.expires)}",
        f"reason:     {why['reason']}",
        "rules:      " + ", ".join(f"{r['name']}({r['score']:+.2f})" for r in why["rules"]),
        "tokens:     " + ", ".join(f"{t['token']}({t['weight']:+.3f})" for t in why["tokens"]),
    ]
    typer.echo("\n".join(out))
    if data:
        v = message_view(data)
        typer.echo("\n" + "\n".join(f"{k}: {val}" for k, val in v.headers) + "\n")
        typer.echo(v.body)


def _run(action: str, ids: list[str], actor: str | None, **kw: Any) -> None:
    from mailsift.quarantine import QuarantineError

    try:
        res = _open().bulk(action, ids, _actor(actor), **kw)
    except QuarantineError as exc:
        raise _fail(exc) from None
    for r in res.results:
        mark = "ok" if r.ok else "FAILED"
        typer.echo(f"{r.id}  {mark}  {r.status}  {r.detail}")
    if res.failed:
        raise typer.Exit(1)


@quarantine_app.command("release")
def release_cmd(
    ids: Annotated[list[str], typer.Argument()],
    actor: ActorOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also retry entries stuck in 'releasing' (a crash after the next hop's "
            "answer: check the recipient's mailbox first, this may deliver a second copy)",
        ),
    ] = False,
) -> None:
    """Deliver held messages to their original recipients (once)."""
    _run("release", ids, actor, **({"force": True} if force else {}))


@quarantine_app.command("delete")
def delete_cmd(ids: Annotated[list[str], typer.Argument()], actor: ActorOpt = None) -> None:
    """Delete held messages."""
    _run("delete", ids, actor)


@quarantine_app.command("learn")
def learn_cmd(
    label: Annotated[str, typer.Argument(help="spam or ham (ham also releases)")],
    ids: Annotated[list[str], typer.Argument()],
    trust: Annotated[bool, typer.Option("--trust", help="ham: trust the sender")] = False,
    untrust: Annotated[bool, typer.Option("--untrust", help="spam: untrust the sender")] = False,
    actor: ActorOpt = None,
) -> None:
    """Teach the model (and, for ham, release); optionally (un)trust the sender. The
    operator at the shell is an admin: a trusted global lesson."""
    if label not in ("spam", "ham"):
        raise typer.BadParameter("label must be spam or ham")
    _run(label, ids, actor, trust_sender=trust, untrust_sender=untrust, trusted=True)


@quarantine_app.command("purge")
def purge_cmd(
    every: Annotated[
        float | None,
        typer.Option(help="Keep running: purge every N seconds (a job for `make run`)"),
    ] = None,
) -> None:
    """Remove expired entries and their spool files (cron it daily, or use --every)."""
    import logging
    import time

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    q = _open()
    while True:
        n = q.purge()
        typer.echo(f"purged {n}")
        if every is None:
            return
        time.sleep(max(1.0, every))


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app)
