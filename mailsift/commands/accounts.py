"""``mailsift accounts add|passwd|disable|enable|list``: the SMTP AUTH / web login accounts.

The accounts are in the store (``store.url``). An accounts JSON file of the former releases
(``smtp.accounts_file``, or ``--file``) is imported into the store once, by whichever command
or server opens the store first; after that the file is not read. Passwords are read from a
hidden prompt, or from standard input with ``--password-stdin`` (one line), never from the
command line. A running filter and the web UI see changes at once (they read the store).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

accounts_app = typer.Typer(
    name="accounts", help="Mail accounts (SMTP AUTH, mailboxes, web login).", no_args_is_help=True
)

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="Accounts JSON file to import into the store first, if it never imported one"
        " (default: smtp.accounts_file)",
    ),
]
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


def _accounts(file: Path | None):  # type: ignore[no-untyped-def]
    from mailsift.config import get_settings
    from mailsift.smtpd.accounts import Accounts
    from mailsift.store import open_store_for

    settings = get_settings()
    return Accounts(open_store_for(settings), import_file=file or settings.smtp.accounts_file)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not pw:
        typer.echo("empty password", err=True)
        raise typer.Exit(2)
    return str(pw)


def _run(fn, *args, **kw):  # type: ignore[no-untyped-def]
    from mailsift.smtpd.accounts import AccountError

    try:
        return fn(*args, **kw)
    except AccountError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@accounts_app.command("add")
def add(
    user: Annotated[str, typer.Argument(help="Login, normally the mailbox address")],
    admin: Annotated[bool, typer.Option(help="May administer the quarantine UI")] = False,
    expires_days: Annotated[
        float | None, typer.Option(help="Account expires (becomes 'old') after N days")
    ] = None,
    password_stdin: StdinOpt = False,
    file: FileOpt = None,
) -> None:
    """Create an account."""
    acc = _accounts(file)
    expires = time.time() + expires_days * 86400 if expires_days else None
    a = _run(acc.add, user, _password(password_stdin), admin=admin, expires=expires)
    typer.echo(f"added {a.name}{' (admin)' if a.admin else ''}")


@accounts_app.command("passwd")
def passwd(
    user: Annotated[str, typer.Argument()],
    password_stdin: StdinOpt = False,
    file: FileOpt = None,
) -> None:
    """Set a new password."""
    acc = _accounts(file)
    _run(acc.passwd, user, _password(password_stdin))
    typer.echo(f"password changed for {user.lower()}")


@accounts_app.command("disable")
def disable(user: Annotated[str, typer.Argument()], file: FileOpt = None) -> None:
    """Disable an account: no login, no mail delivered to it."""
    _run(_accounts(file).disable, user)
    typer.echo(f"disabled {user.lower()}")


@accounts_app.command("enable")
def enable(user: Annotated[str, typer.Argument()], file: FileOpt = None) -> None:
    """Enable a disabled account again."""
    _run(_accounts(file).enable, user)
    typer.echo(f"enabled {user.lower()}")


@accounts_app.command("list")
def list_accounts(file: FileOpt = None) -> None:
    """List accounts and their state."""
    now = time.time()
    for a in _accounts(file).list():
        if a.disabled:
            state = "disabled"
        elif a.expires is not None and a.expires <= now:
            state = "expired"
        else:
            state = "active"
        exp = datetime.fromtimestamp(a.expires, UTC).strftime("%Y-%m-%d") if a.expires else "-"
        typer.echo(f"{a.name}\t{state}\t{'admin' if a.admin else 'user'}\texpires={exp}")


def register(app: typer.Typer) -> None:
    app.add_typer(accounts_app, name="accounts")
