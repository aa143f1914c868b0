"""``mailsift learn-pipe spam|ham --user U [--api-url URL] [--key-file F]``: teach the filter
one message read from standard input, as user U's verdict: the command a Dovecot IMAPSieve
script pipes a message to when a user moves it into (spam) or out of (ham) the Junk folder.

It posts the message to the HTTP API's ``POST /v1/feedback`` (the key needs the
``feedback`` scope), so the report goes through the same learner, guards and audit as every
other report, and the mail server needs no store credentials, no model and no scikit-learn:
a feedback key can do one thing only, and the command stays small (Dovecot runs it once per
moved message). The key is read from a file (never from the command line, where ``ps``
shows it to every local user).

Exit status (sysexits, as Dovecot's sieve ``pipe`` and shell scripts expect): 0 learned or
already known; 65 the message or label was refused; 66 no message on stdin; 75 the API is
down, busy or rate-limited (try again later); 77 the key was refused; 78 no key file.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import httpx

EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 65, 66, 75, 77, 78
MAX_BYTES = 25 * 1024 * 1024  # the API's default body limit; a larger message is cut


def learn_pipe(
    label: Annotated[str, typer.Argument(help="spam or ham")],
    user: Annotated[str, typer.Option(help="Whose verdict it is (the mailbox owner)")],
    api_url: Annotated[
        str,
        typer.Option(envvar="MAILSIFT_LEARN_API_URL", help="The mailsift API's base URL"),
    ] = "http://127.0.0.1:8080",
    key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MAILSIFT_LEARN_KEY_FILE", help="File holding a key with the feedback scope"
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the API")] = 30.0,
) -> None:
    """Teach the filter a message from stdin as USER's spam or ham (Dovecot IMAPSieve)."""
    import httpx

    lab = label.strip().lower()
    if lab not in ("spam", "ham"):
        typer.echo(f"learn-pipe: label must be spam or ham, not {label!r}", err=True)
        raise typer.Exit(EX_DATAERR)
    if not user.strip():
        typer.echo("learn-pipe: --user is empty", err=True)
        raise typer.Exit(EX_DATAERR)
    if key_file is None:
        typer.echo("learn-pipe: give --key-file (or MAILSIFT_LEARN_KEY_FILE)", err=True)
        raise typer.Exit(EX_CONFIG)
    try:
        key = key_file.read_text().strip()
    except OSError as exc:
        typer.echo(f"learn-pipe: cannot read the key file {key_file}: {exc.strerror}", err=True)
        raise typer.Exit(EX_CONFIG) from None
    raw = sys.stdin.buffer.read(MAX_BYTES)
    if not raw.strip():
        typer.echo("learn-pipe: no message on stdin", err=True)
        raise typer.Exit(EX_NOINPUT)
    body = {"label": lab, "user": user.strip(), "message": base64.b64encode(raw).decode()}
    url = api_url.rstrip("/") + "/v1/feedback"
    try:
        resp = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        typer.echo(f"learn-pipe: {url}: {exc}", err=True)
        raise typer.Exit(EX_TEMPFAIL) from None
    if resp.status_code == 200:
        status = resp.json().get("status", "")
        typer.echo(f"{status}: {lab} for {user.strip()}")
        return
    detail = _detail(resp)
    typer.echo(f"learn-pipe: {url}: HTTP {resp.status_code}: {detail}", err=True)
    if resp.status_code in (401, 403):
        raise typer.Exit(EX_NOPERM)
    if resp.status_code == 429 or resp.status_code >= 500:
        raise typer.Exit(EX_TEMPFAIL)
    raise typer.Exit(EX_DATAERR)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", ""))
    except ValueError:
        return resp.text[:200]


def register(app: typer.Typer) -> None:
    app.command("learn-pipe")(learn_pipe)
