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

``NextHopPool`` is the before-queue proxy's client: it keeps connections to the next hop
open between messages (no connect, greeting, EHLO and QUIT per message) and, when the next
hop offers ``PIPELINING`` (RFC 2920), sends ``MAIL``, the ``RCPT``s and ``DATA`` in one
write: a message costs two round trips instead of seven. A connection goes back to the
pool only after a message's 250; any other outcome closes it. A kept connection the next
hop closed meanwhile (its idle timeout, a restart) shows as an EOF, a reset or a ``421``
before the first reply of the transaction: nothing of the message was sent yet, so it is
sent once more on a new connection. Any failure after that first reply is the message's
outcome, as without the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
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


async def _connect(
    host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the next hop; unreachable is ``451 4.4.1`` (temporary)."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(
            451, f"4.4.1 next hop {host}:{port} unreachable: {exc}", True, True
        ) from exc


@contextlib.contextmanager
def _next_hop_io(on_failure: Callable[[], None] | None = None) -> Iterator[None]:
    """Talking to the next hop: a connection error or timeout is ``451 4.4.2``
    (temporary); ``on_failure`` (closing the connection) runs on any failure."""
    try:
        yield
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        if on_failure is not None:
            on_failure()
        raise DeliveryError(451, f"4.4.2 next hop connection failed: {exc!r}", True, True) from exc
    except BaseException:
        if on_failure is not None:
            on_failure()
        raise


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
    reader, writer = await _connect(host, port, timeout)
    conn = _Conn(reader, writer, timeout)
    try:
        with _next_hop_io():
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
    ext = await _greet(conn, helo)
    code, msg = await conn.cmd(_mail_command(mail_from, data, "8BITMIME" in ext))
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
    await _send_content(conn, data, result)
    if on_accepted is not None:
        on_accepted(result)
    # the message is accepted; a lost QUIT changes nothing
    with contextlib.suppress(DeliveryError, OSError, TimeoutError):
        await conn.cmd("QUIT")
    return result


class _Stale(Exception):
    """A kept connection turned out closed before the transaction's first reply."""


@dataclass(slots=True)
class _Session:
    conn: _Conn
    pipelining: bool
    eightbit: bool
    born: float
    idle_since: float = 0.0
    reused: bool = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.writer.close()


class NextHopPool:
    """Connections to one next hop, kept for the following messages (one event loop).

    ``max_idle``: connections kept idle at most (more are closed after their message);
    ``idle_time``: an idle connection older than this is closed (Postfix's
    ``smtp_connection_cache_time_limit`` is 2 s, its server's idle timeout 300 s);
    ``reuse_time``: a connection is not used for new messages after this long (Postfix's
    ``smtp_connection_reuse_time_limit``). ``max_idle=0``: one connection per message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        helo: str | None = None,
        timeout: float = 60.0,
        max_idle: int = 16,
        idle_time: float = 5.0,
        reuse_time: float = 300.0,
    ) -> None:
        self.host, self.port = host, port
        self.helo = helo or socket.getfqdn()
        self.timeout = timeout
        self.max_idle = max_idle
        self.idle_time = idle_time
        self.reuse_time = reuse_time
        self._idle: list[_Session] = []
        self._prune_timer: asyncio.TimerHandle | None = None
        self.opened = 0  # connections made (for tests and benches)

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> DeliveryResult:
        """One message (all recipients or none, as ``deliver_async(partial=False)``);
        raises DeliveryError."""
        if not rcpts:
            raise DeliveryError(554, "5.5.1 no recipients", False)
        while True:
            sess = self._take()
            if sess is None:
                sess = await self._open()
            try:
                with _next_hop_io(sess.close):
                    result = await self._message(sess, mail_from, rcpts, data)
            except _Stale:  # closed: nothing of the message was sent, again on a new one
                continue
            self._put(sess)
            return result

    async def close(self) -> None:
        """QUIT and close every idle connection."""
        if self._prune_timer is not None:
            self._prune_timer.cancel()
            self._prune_timer = None
        idle, self._idle = self._idle, []
        for sess in idle:
            await self._quit(sess)

    # ---- connections -----------------------------------------------------------------------
    def _take(self) -> _Session | None:
        now = time.monotonic()
        while self._idle:
            sess = self._idle.pop()  # the most recently used: the least likely closed
            if (
                now - sess.idle_since < self.idle_time
                and now - sess.born < self.reuse_time
                and not sess.conn.reader.at_eof()
                and not sess.conn.writer.is_closing()
            ):
                sess.reused = True
                return sess
            sess.close()
        return None

    def _put(self, sess: _Session) -> None:
        if len(self._idle) >= self.max_idle or time.monotonic() - sess.born >= self.reuse_time:
            asyncio.get_running_loop().create_task(self._quit(sess))
            return
        sess.idle_since = time.monotonic()
        self._idle.append(sess)
        if self._prune_timer is None:
            self._prune_timer = asyncio.get_running_loop().call_later(self.idle_time, self._prune)

    def _prune(self) -> None:
        """Close the connections idle for ``idle_time``; look again while some are kept."""
        self._prune_timer = None
        now = time.monotonic()
        keep = []
        for sess in self._idle:
            if now - sess.idle_since >= self.idle_time:
                sess.close()
            else:
                keep.append(sess)
        self._idle = keep
        if keep:
            self._prune_timer = asyncio.get_running_loop().call_later(self.idle_time, self._prune)

    async def _quit(self, sess: _Session) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sess.conn.cmd("QUIT"), 2)
        sess.close()

    async def _open(self) -> _Session:
        """A new connection, greeted and EHLO'd (HELO when EHLO is refused)."""
        reader, writer = await _connect(self.host, self.port, self.timeout)
        conn = _Conn(reader, writer, self.timeout)
        self.opened += 1
        with _next_hop_io(writer.close):
            ext = await _greet(conn, self.helo)
        return _Session(conn, "PIPELINING" in ext, "8BITMIME" in ext, time.monotonic())

    async def _message(
        self, sess: _Session, mail_from: str, rcpts: Sequence[str], data: bytes
    ) -> DeliveryResult:
        conn = sess.conn
        mail = _mail_command(mail_from, data, sess.eightbit)
        replies: list[tuple[int, str]] = []
        try:
            if sess.pipelining:  # one write; the replies come in order (RFC 2920)
                commands = [mail, *(f"RCPT TO:<{r}>" for r in rcpts), "DATA"]
                conn.writer.write(b"".join(_line(c) for c in commands))
                await asyncio.wait_for(conn.writer.drain(), conn.timeout)
                replies.append(await conn.reply())
            else:
                replies.append(await conn.cmd(mail))
        except (DeliveryError, OSError, asyncio.IncompleteReadError) as exc:
            if sess.reused and (not isinstance(exc, DeliveryError) or exc.unreachable):
                raise _Stale from exc  # closed while idle: no reply to this message yet
            raise
        if sess.reused and replies[0][0] == 421:  # the next hop's goodbye to an idle client
            raise _Stale
        code, msg = replies[0]
        if code != 250:
            raise _error(code, msg)  # the connection is closed: unread replies do not matter
        result = DeliveryResult(0, "")
        for rcpt in rcpts:
            code, msg = await (conn.reply() if sess.pipelining else conn.cmd(f"RCPT TO:<{rcpt}>"))
            if code in (250, 251):
                result.accepted.append(rcpt)
            else:
                result.refused[rcpt] = (code, msg)
        if result.refused:  # all or none; a pipelined DATA answered 354 dies with the connection
            raise _error(*_worst(result.refused.values()))
        code, msg = await (conn.reply() if sess.pipelining else conn.cmd("DATA"))
        if code != 354:
            raise _error(code, msg)
        return await _send_content(conn, data, result)


async def _greet(conn: _Conn, helo: str) -> set[str]:
    """Read the greeting and say EHLO (HELO when EHLO is refused); the ESMTP extensions
    the next hop offers (none after HELO)."""
    code, msg = await conn.reply()
    if code != 220:
        raise _error(code, msg)
    code, msg = await conn.cmd(f"EHLO {helo}")
    if code == 250:
        return {ln.split()[0].upper() for ln in msg.split("\n")[1:] if ln.strip()}
    code, msg = await conn.cmd(f"HELO {helo}")
    if code != 250:
        raise _error(code, msg)
    return set()


def _mail_command(mail_from: str, data: bytes, eightbit: bool) -> str:
    """``MAIL FROM``, with ``BODY=8BITMIME`` when the next hop offers it and it is needed."""
    params = " BODY=8BITMIME" if eightbit and _has_8bit(data) else ""
    sender = "<>" if mail_from in ("", "<>") else f"<{mail_from}>"
    return f"MAIL FROM:{sender}{params}"


async def _send_content(conn: _Conn, data: bytes, result: DeliveryResult) -> DeliveryResult:
    """After 354: the message, then its final reply (250 or DeliveryError)."""
    conn.writer.write(to_wire(data))
    await asyncio.wait_for(conn.writer.drain(), conn.timeout)
    code, msg = await conn.reply()
    if code != 250:
        raise _error(code, msg)
    result.code, result.message = code, msg
    return result


def _line(command: str) -> bytes:
    return command.encode("utf-8", "surrogateescape") + b"\r\n"


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
    return not data.isascii()


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
