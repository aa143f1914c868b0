"""``mailsift keys create|revoke|list``: API keys of the HTTP API (see mailsift.api.keys).

``create`` prints the token alone on stdout (so ``mailsift keys create ... > admin.key``
works) and the key's details on stderr; the token is shown once and never stored.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mailsift.api.keys import ApiKeys

keys_app = typer.Typer(name="keys", help="Manage API keys of the HTTP API.", no_args_is_help=True)


def _keys() -> ApiKeys:
    from mailsift.api.keys import ApiKeys
    from mailsift.config import get_settings
    from mailsift.store import open_store_for

    settings = get_settings()
    return ApiKeys(open_store_for(settings), cache_seconds=0)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'postfix-mx1'")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="score, feedback, trusted (feedback as a trusted reporter: global lessons)"
            " or admin (repeatable; admin implies all)"
        ),
    ],
    user: Annotated[
        str, typer.Option(help="Bind the key to one user (their feedback, lists, quarantine)")
    ] = "",
) -> None:
    """Create a key and print its token (once)."""
    keys = _keys()
    try:
        key, token = keys.create(name, scope, owner=user)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        keys.store.close()
    typer.echo(
        f"created key {key.key_id} ({key.name}; scopes {' '.join(sorted(key.scopes))}"
        f"{'; user ' + key.owner if key.owner else ''}); the token is shown only now:",
        err=True,
    )
    typer.echo(token)
    if key.allows("feedback") and not key.trusted and not key.owner:
        typer.echo(
            "warning: a feedback key bound to no user may not report or edit lists for anyone:"
            " give --user U, or --scope trusted for a trusted reporter",
            err=True,
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id (from 'keys list')")]) -> None:
    """Revoke a key (effective within api.key_cache_seconds on running servers)."""
    keys = _keys()
    try:
        ok = keys.revoke(key_id)
    finally:
        keys.store.close()
    if not ok:
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def list_keys(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output")] = False,
) -> None:
    """List keys (ids, names, scopes; never tokens)."""
    from mailsift.api.keys import key_summary

    keys = _keys()
    try:
        rows = keys.list(include_revoked=all_)
    finally:
        keys.store.close()
    for k in rows:
        if as_json:
            typer.echo(json.dumps(key_summary(k)))
            continue
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created))
        state = "revoked" if k.revoked else "active"
        typer.echo(
            f"{k.key_id}  {state:7}  {created}  {' '.join(sorted(k.scopes)):22}  "
            f"{k.owner or '-':20}  {k.name}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
