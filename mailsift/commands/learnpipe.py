"""``mailsift learn-pipe spam|ham --user U [--api-url URL] [--key-file F] [--queue-dir D]``:
teach the filter one message read from standard input, as user U's verdict: the command a
Dovecot IMAPSieve script pipes a message to when a user moves it into (spam) or out of (ham)
the Junk folder. ``mailsift learn-flush --queue-dir D`` sends what was queued.

It posts the message to the HTTP API's ``POST /v1/feedback`` (the key needs the
``feedback`` scope), so the report goes through the same learner, guards and audit as every
other report, and the mail server needs no store credentials, no model and no scikit-learn:
a feedback key can do one thing only, and the command stays small (Dovecot runs it once per
moved message). The key is read from a file (never from the command line, where ``ps``
shows it to every local user).

With a queue directory, a report the API cannot take now (down, busy, rate-limited) is
kept there (written to ``tmp/``, fsynced, renamed into ``new/``; the directory 0700, each
file 0600: they hold users' mail) and the command succeeds: the user's move is not lost to
an API restart. Queued reports are sent oldest first, before the next report (a user's spam
and then ham for one message arrive in that order) and by ``learn-flush`` (run it from a
timer); one the API refuses for good goes to ``failed/`` with the reason beside it.

Exit status (sysexits, as Dovecot's sieve ``pipe`` and shell scripts expect): 0 learned,
already known or queued; 65 the message or label was refused; 66 no message on stdin; 75 the
API is down, busy or rate-limited and the report could not be queued (try again later); 77
the key was refused; 78 no key file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import httpx

EX_OK, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 0, 65, 66, 75, 77, 78
MAX_BYTES = 25 * 1024 * 1024  # the API's default body limit; a larger message is cut
MAX_QUEUED = 10_000  # reports kept while the API is away; past it, 75 (the caller retries)

ApiUrl = Annotated[
    str, typer.Option(envvar="MAILSIFT_LEARN_API_URL", help="The mailsift API's base URL")
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        envvar="MAILSIFT_LEARN_KEY_FILE", help="File holding a key with the feedback scope"
    ),
]
QueueDir = Annotated[
    Path | None,
    typer.Option(
        envvar="MAILSIFT_LEARN_QUEUE_DIR",
        help="Keep reports the API cannot take now here, and send them later",
    ),
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the API")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"learn-pipe: {message}", err=True)
    return typer.Exit(code)


def _read_key(key_file: Path | None) -> str:
    if key_file is None:
        raise _fail("give --key-file (or MAILSIFT_LEARN_KEY_FILE)", EX_CONFIG)
    try:
        return key_file.read_text().strip()
    except OSError as exc:
        raise _fail(f"cannot read the key file {key_file}: {exc.strerror}", EX_CONFIG) from None


def _post(api_url: str, key: str, body: dict[str, Any], timeout: float) -> tuple[int, str]:
    """(sysexits code, what happened) for one report sent to ``POST /v1/feedback``."""
    import httpx

    url = api_url.rstrip("/") + "/v1/feedback"
    try:
        resp = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return EX_TEMPFAIL, f"{url}: {exc}"
    if resp.status_code == 200:
        return EX_OK, f"{resp.json().get('status', '')}: {body['label']} for {body['user']}"
    what = f"{url}: HTTP {resp.status_code}: {_detail(resp)}"
    if resp.status_code in (401, 403):
        return EX_NOPERM, what
    if resp.status_code == 429 or resp.status_code >= 500:
        return EX_TEMPFAIL, what
    return EX_DATAERR, what


class Queue:
    """Reports kept on disk while the API cannot take them (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "failed"):
            (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)

    def pending(self) -> list[Path]:
        return sorted((self.root / "new").glob("*.json"))

    def put(self, body: dict[str, Any]) -> bool:
        """Keep one report (False: the queue is full)."""
        if len(self.pending()) >= MAX_QUEUED:
            return False
        name = f"{time.time_ns():020d}.{os.getpid()}.{secrets.token_hex(4)}.json"
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**body, "queued": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "new" / name)
        dir_fd = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
        return True

    def flush(self, api_url: str, key: str, timeout: float) -> int:
        """Send the queued reports oldest first; stop at the first one the API cannot take
        now (75) or a refused key (77). A report refused for good moves to ``failed/``."""
        for path in self.pending():
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self._failed(path, f"unreadable: {exc}")
                continue
            body.pop("queued", None)
            code, what = _post(api_url, key, body, timeout)
            if code in (EX_TEMPFAIL, EX_NOPERM):
                typer.echo(f"learn-pipe: {what} ({len(self.pending())} queued)", err=True)
                return code
            if code == EX_OK:
                typer.echo(f"{what} (queued)")
                path.unlink()
            else:
                typer.echo(f"learn-pipe: {what}: kept in {self.root / 'failed'}", err=True)
                self._failed(path, what)
        return EX_OK

    def _failed(self, path: Path, reason: str) -> None:
        target = self.root / "failed" / path.name
        os.replace(path, target)
        target.with_suffix(".reason").write_text(reason + "\n", encoding="utf-8")


def learn_pipe(
    label: Annotated[str, typer.Argument(help="spam or ham")],
    user: Annotated[str, typer.Option(help="Whose verdict it is (the mailbox owner)")],
    api_url: ApiUrl = "http://127.0.0.1:8080",
    key_file: KeyFile = None,
    queue_dir: QueueDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Teach the filter a message from stdin as USER's spam or ham (Dovecot IMAPSieve)."""
    lab = label.strip().lower()
    if lab not in ("spam", "ham"):
        raise _fail(f"label must be spam or ham, not {label!r}", EX_DATAERR)
    if not user.strip():
        raise _fail("--user is empty", EX_DATAERR)
    key = _read_key(key_file)
    raw = sys.stdin.buffer.read(MAX_BYTES)
    if not raw.strip():
        raise _fail("no message on stdin", EX_NOINPUT)
    body = {"label": lab, "user": user.strip(), "message": base64.b64encode(raw).decode()}
    queue = Queue(queue_dir) if queue_dir is not None else None
    # earlier reports first: a user's spam and then ham for one message keep their order
    code = queue.flush(api_url, key, timeout) if queue is not None else EX_OK
    if code == EX_OK:
        code, what = _post(api_url, key, body, timeout)
        if code == EX_OK:
            typer.echo(what)
            return
        typer.echo(f"learn-pipe: {what}", err=True)
    if code == EX_TEMPFAIL and queue is not None:
        if queue.put(body):
            typer.echo(f"queued: {lab} for {user.strip()} ({len(queue.pending())} queued)")
            return
        raise _fail(f"the queue {queue_dir} is full ({MAX_QUEUED} reports)", EX_TEMPFAIL)
    raise typer.Exit(code)


def learn_flush(
    queue_dir: Annotated[
        Path,
        typer.Option(envvar="MAILSIFT_LEARN_QUEUE_DIR", help="The queue learn-pipe keeps"),
    ],
    api_url: ApiUrl = "http://127.0.0.1:8080",
    key_file: KeyFile = None,
    timeout: Timeout = 30.0,
) -> None:
    """Send the reports learn-pipe queued while the API was away (run it from a timer)."""
    key = _read_key(key_file)
    code = Queue(queue_dir).flush(api_url, key, timeout)
    if code:
        raise typer.Exit(code)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", ""))
    except ValueError:
        return resp.text[:200]


def register(app: typer.Typer) -> None:
    app.command("learn-pipe")(learn_pipe)
    app.command("learn-flush")(learn_flush)
