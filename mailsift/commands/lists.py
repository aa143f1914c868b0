"""``mailsift lists add|remove|show``: trusted / untrusted senders per user, global allow /
block lists. Patterns: ``user@domain``, ``*@domain``, ``domain`` (and its subdomains), Type 2
wildcards, IP addresses and CIDR blocks (see ``mailsift.store.lists``).

``mailsift lists add --user alice@example.com friend@example.org`` (trusted by default)
``mailsift lists add --user alice@example.com --kind untrusted news.example``
``mailsift lists add --kind block 203.0.113.0/24`` ; ``mailsift lists show [--json]``
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer

from mailsift.commands.store import cli_store
from mailsift.store.lists import StoreListPolicy

lists_app = typer.Typer(
    name="lists",
    help="Sender lists: trusted/untrusted per user, global allow/block.",
    no_args_is_help=True,
)

KindOpt = Annotated[
    str | None,
    typer.Option("--kind", "-k", help="trusted | untrusted (with --user), allow | block (global)"),
]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="The recipient whose list it is")]
ActorOpt = Annotated[str, typer.Option("--actor", help="Who makes the change (audited)")]


def _kind(kind: str | None, user: str | None) -> str:
    if kind:
        return kind
    if user:
        return "trusted"
    raise typer.BadParameter("give --kind allow or --kind block for a global list (or --user)")


@contextmanager
def _policy() -> Iterator[StoreListPolicy]:
    from mailsift.config import get_settings

    with cli_store(get_settings()) as store:
        try:
            yield StoreListPolicy(store)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


@lists_app.command("add")
def add_cmd(
    pattern: Annotated[str, typer.Argument(help="Address, *@domain, domain, IP or CIDR")],
    kind: KindOpt = None,
    user: UserOpt = None,
    actor: ActorOpt = "admin",
    comment: Annotated[str, typer.Option(help="A note kept with the entry")] = "",
) -> None:
    """Add a sender to a list."""
    with _policy() as policy:
        k = _kind(kind, user)
        added = policy.add(k, pattern, owner=user or "", actor=actor, comment=comment)
    typer.echo(
        f"{'added' if added else 'already there'}: {k} {pattern}" + (f" for {user}" if user else "")
    )


@lists_app.command("remove")
def remove_cmd(
    pattern: Annotated[str, typer.Argument(help="The entry's pattern")],
    kind: KindOpt = None,
    user: UserOpt = None,
    actor: ActorOpt = "admin",
) -> None:
    """Remove a sender from a list."""
    with _policy() as policy:
        k = _kind(kind, user)
        removed = policy.remove(k, pattern, owner=user or "", actor=actor)
    if not removed:
        typer.echo(f"not found: {k} {pattern}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed: {k} {pattern}" + (f" for {user}" if user else ""))


@lists_app.command("show")
def show_cmd(
    kind: KindOpt = None,
    user: UserOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show list entries (all, one kind, or one user's)."""
    with _policy() as policy:
        entries = policy.entries(kind=kind, owner=user)
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries]))
        return
    for e in entries:
        owner = f" ({e.owner})" if e.owner else ""
        note = f"  # {e.comment}" if e.comment else ""
        typer.echo(f"{e.kind:<9} {e.pattern}{owner}{note}")


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app)
