"""Next-hop delivery: one SMTP transaction (RFC 5321) to the real mail server behind us.

``deliver_async`` is a small asyncio SMTP client: EHLO (HELO fallback), MAIL, RCPT for each
recipient, DATA with CRLF line endings and dot-stuffing (section 4.5.2), QUIT. Before
sending, every line ending is normalised to CRLF, so whatever a client smuggled in with a
bare LF or CR can never become an end-of-data on the next hop.

Failures raise ``DeliveryError(code, message, temporary)``: a connection that cannot be made,
a timeout, a dropped connection or a 4xx are temporary; a 5xx is permanent. With
``partial=False`` (the before-queue proxy) a single refused recipient aborts the
transaction (RSET) so that the client's one DATA answer is true for every recipient; with
``partial=True`` (the spool) the message goes to the recipients that were accepted and the
refusals are returned for the retry logic.

Two hooks let a caller keep a durable record around the transaction's commit point (the
next hop's 250 to the end of data): ``before_data(result)`` is awaited once the recipients
were answered and before ``DATA`` is sent (``result.accepted`` / ``result.refused`` are
known); ``on_accepted(result)`` is called right after that 250, before ``QUIT``, with no
await in between.

``deliver(...)`` is the blocking form (for the quarantine's release and the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

_EOL_RE = re.compile(rb"\r\n|\r|\n")
_DOT_RE = re.compile(rb"(?m)^\.")


class DeliveryError(Exception):
    """``unreachable``: no SMTP answer could be had (connection refused or dropped, timed
    out, garbage): the next hop is down, as opposed to a reply it gave."""

    def __init__(self, code: int, message: str, temporary: bool, unreachable: bool = False) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        self.unreachable = unreachable


@dataclass(slots=True)
class DeliveryResult:
    code: int
    message: str
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


def to_wire(data: bytes) -> bytes:
    """CRLF everywhere, dot-stuffed, terminated by ``.CRLF``."""
    body = _EOL_RE.sub(b"\r\n", data)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _DOT_RE.sub(b"..", body) + b".\r\n"


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, t: float):
        self.reader, self.writer, self.timeout = reader, writer, t

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not line:
                raise DeliveryError(451, "4.4.2 next hop closed the connection", True, True)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 3 or not text[:3].isdigit():
                raise DeliveryError(
                    451, f"4.5.0 bad reply from next hop: {text[:80]!r}", True, True
                )
            lines.append(text[4:])
            if len(text) == 3 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    async def cmd(self, line: str) -> tuple[int, str]:
        self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        return await self.reply()


def _error(code: int, msg: str) -> DeliveryError:
    return DeliveryError(code, msg, temporary=code < 500)


async def deliver_async(
    host: str,
    port: int,
    mail_from: str,
    rcpts: Sequence[str],
    data: bytes,
    timeout: float = 60.0,
    *,
    helo: str | None = None,
    partial: bool = False,
    before_data: Callable[[DeliveryResult], Awaitable[None]] | None = None,
    on_accepted: Callable[[DeliveryResult], None] | None = None,
) -> DeliveryResult:
    """One transaction; returns the final reply. Raises DeliveryError."""
    if not rcpts:
        raise DeliveryError(554, "5.5.1 no recipients", False)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(
            451, f"4.4.1 next hop {host}:{port} unreachable: {exc}", True, True
        ) from exc
    conn = _Conn(reader, writer, timeout)
    try:
        return await _transaction(
            conn,
            mail_from,
            rcpts,
            data,
            helo or socket.getfqdn(),
            partial,
            before_data,
            on_accepted,
        )
    except DeliveryError:
        raise
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise DeliveryError(451, f"4.4.2 next hop connection failed: {exc!r}", True, True) from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def _transaction(
    conn: _Conn,
    mail_from: str,
    rcpts: Sequence[str],
    data: bytes,
    helo: str,
    partial: bool,
    before_data: Callable[[DeliveryResult], Awaitable[None]] | None = None,
    on_accepted: Callable[[DeliveryResult], None] | None = None,
) -> DeliveryResult:
    code, msg = await conn.reply()
    if code != 220:
        raise _error(code, msg)
    code, msg = await conn.cmd(f"EHLO {helo}")
    esmtp = code == 250
    ext = {ln.split()[0].upper() for ln in msg.split("\n")[1:] if ln.strip()} if esmtp else set()
    if not esmtp:
        code, msg = await conn.cmd(f"HELO {helo}")
        if code != 250:
            raise _error(code, msg)
    params = " BODY=8BITMIME" if esmtp and "8BITMIME" in ext and _has_8bit(data) else ""
    sender = "<>" if mail_from in ("", "<>") else f"<{mail_from}>"
    code, msg = await conn.cmd(f"MAIL FROM:{sender}{params}")
    if code != 250:
        raise _error(code, msg)
    result = DeliveryResult(0, "")
    for rcpt in rcpts:
        code, msg = await conn.cmd(f"RCPT TO:<{rcpt}>")
        if code in (250, 251):
            result.accepted.append(rcpt)
        else:
            result.refused[rcpt] = (code, msg)
    if result.refused and (not partial or not result.accepted):
        await _quietly_end(conn)
        worst = _worst(result.refused.values())
        raise _error(*worst)
    if before_data is not None:
        await before_data(result)
    code, msg = await conn.cmd("DATA")
    if code != 354:
        await _quietly_end(conn)
        raise _error(code, msg)
    conn.writer.write(to_wire(data))
    await asyncio.wait_for(conn.writer.drain(), conn.timeout)
    code, msg = await conn.reply()
    if code != 250:
        raise _error(code, msg)
    result.code, result.message = code, msg
    if on_accepted is not None:
        on_accepted(result)
    # the message is accepted; a lost QUIT changes nothing
    with contextlib.suppress(DeliveryError, OSError, TimeoutError):
        await conn.cmd("QUIT")
    return result


def _worst(replies: object) -> tuple[int, str]:
    """Temporary beats permanent (the client retries; nobody gets a wrong 5xx)."""
    items = list(replies)  # type: ignore[call-overload]
    temp = [r for r in items if r[0] < 500]
    return temp[0] if temp else items[0]


async def _quietly_end(conn: _Conn) -> None:
    for line in ("RSET", "QUIT"):
        try:
            await conn.cmd(line)
        except (DeliveryError, OSError, TimeoutError):
            return


def _has_8bit(data: bytes) -> bool:
    return any(b > 127 for b in data)


def deliver(
    host: str,
    port: int,
    mail_from: str,
    rcpts: Sequence[str],
    data: bytes,
    timeout: float = 60.0,
    *,
    helo: str | None = None,
) -> DeliveryResult:
    """Blocking ``deliver_async`` (safe to call whether or not an event loop is running)."""
    coro_args = (host, port, mail_from, list(rcpts), data, timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(deliver_async(*coro_args, helo=helo))
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(deliver_async(*coro_args, helo=helo))
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, name="mailsift-deliver")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
