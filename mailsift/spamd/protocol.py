"""The spamd wire protocol (SpamAssassin 4.0's ``spamd``/``spamc``, protocol ``SPAMC/1.5``):
reading a request and formatting the replies, byte for byte as spamd 4.0 writes them.

A request is one line ``METHOD SPAMC/<version>``, then (for protocol versions above 1.0)
``Name: value`` header lines up to an empty line, then the message::

    CHECK SPAMC/1.5\\r\\n
    Content-length: 1234\\r\\n
    User: alice@example.com\\r\\n
    \\r\\n
    <message>

Methods: ``CHECK``, ``SYMBOLS``, ``REPORT``, ``REPORT_IFSPAM``, ``PROCESS``, ``HEADERS``,
``TELL``, ``PING``, ``SKIP``. Headers spamd reads (names are case-sensitive, as in spamd):
``Content-length``, ``User``, ``Compress: zlib`` (the body is zlib-deflated and
``Content-length`` counts the deflated bytes), and for ``TELL`` ``Message-class: spam|ham``,
``Set: local[, remote]``, ``Remove: local[, remote]``. Other headers are ignored. Without
``Content-length`` the message runs to the end of the stream (the client half-closes).

Replies (``\\r\\n`` line ends; ``<score>`` is ``%.1f``, a clean message at or above the
threshold shows the threshold minus 0.1, as spamd does)::

    CHECK          SPAMD/1.1 0 EX_OK / Spam: True ; 1000.0 / 5.0 / (empty line)
    SYMBOLS ...    SPAMD/1.1 0 EX_OK / Content-length: N / Spam: ... / (empty line) / body
    TELL           SPAMD/1.1 0 EX_OK / DidSet: local / (empty line) / (empty line)
    PING           SPAMD/1.5 0 PONG
    errors         SPAMD/1.0 76 Bad header line: (Content-Length mismatch: ...)

Protocol versions below 1.3 get the older shapes spamd keeps for them (no ``Content-length``
on SYMBOLS/REPORT; below 1.2, ``PROCESS`` answers ``SPAMD/1.0`` with the bare message).

Error codes are sysexits(3) values, as spamd's: ``EX_PROTOCOL`` 76 for a malformed request,
``EX_UNAVAILABLE`` 69 for what the server will not do (TELL disabled, a bad zlib stream),
``EX_TEMPFAIL`` 75 when scoring or learning failed for now (store down, rate cap),
``EX_TIMEOUT`` 79 when the client was too slow.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from dataclasses import dataclass

EX_OK = 0
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_TIMEOUT = 79

CHECK_METHODS = frozenset({"CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "PROCESS", "HEADERS"})
METHODS = CHECK_METHODS | {"TELL", "PING", "SKIP"}
MAX_HEADERS = 255  # spamd's bound (a client cannot keep us reading headers forever)
MAX_LINE = 64 * 1024

_REQUEST_RE = re.compile(rb"^([A-Z_]+) SPAMC/(\d{1,3}(?:\.\d{1,3})?)$")
_DIGITS_RE = re.compile(rb"^\d+$")
_USER_RE = re.compile(rb"^[\x20-\xff]*$")


class SpamdError(Exception):
    """A request that gets an error reply (``line`` is the whole reply, CRLF included)."""

    def __init__(self, line: bytes) -> None:
        super().__init__(line.decode("latin-1").rstrip())
        self.line = line


def protocol_error(detail: str) -> SpamdError:
    return SpamdError(f"SPAMD/1.0 {EX_PROTOCOL} Bad header line: {_safe(detail)}\r\n".encode())


def unavailable(detail: str) -> SpamdError:
    return SpamdError(
        f"SPAMD/1.0 {EX_UNAVAILABLE} Service Unavailable: {_safe(detail)}\r\n".encode()
    )


def tempfail(detail: str) -> SpamdError:
    return SpamdError(f"SPAMD/1.0 {EX_TEMPFAIL} Temporary failure: {_safe(detail)}\r\n".encode())


def timeout_error(detail: str) -> SpamdError:
    return SpamdError(f"SPAMD/1.0 {EX_TIMEOUT} Timeout: {_safe(detail)}\r\n".encode())


def _safe(text: str) -> str:
    """One printable line (a reply line must not be split by what a client sent)."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:300]


@dataclass(slots=True)
class Request:
    method: str
    version: float
    user: str | None = None
    body: bytes = b""
    message_class: str | None = None  # TELL: "spam" or "ham"
    set_local: bool = False
    set_remote: bool = False
    remove_local: bool = False
    remove_remote: bool = False


async def read_request(reader: asyncio.StreamReader, max_size: int) -> Request | None:
    """Read one request; None when the client closed without sending anything. Raises
    ``SpamdError`` with spamd's reply for a malformed one. ``max_size`` bounds the message
    (after inflation)."""
    first = await _readline(reader)
    if first is None:
        return None
    m = _REQUEST_RE.match(first)
    if m is None or m.group(1).decode() not in METHODS:
        raise protocol_error(first.decode("latin-1"))
    req = Request(m.group(1).decode(), float(m.group(2)))
    length: int | None = None
    compressed = False
    # spamd reads headers for protocol versions above 1.0, except PING/SKIP before 1.5
    if req.method in ("PING", "SKIP"):
        has_headers = req.version >= 1.5
    else:
        has_headers = req.method == "TELL" or req.version > 1.0
    if has_headers:
        length, compressed = await _read_headers(reader, req)
    if req.method in ("PING", "SKIP"):
        return req
    if compressed and length is None:
        raise unavailable("Compress requires Content-length header")
    req.body = await _read_body(reader, length, compressed, max_size)
    return req


async def _readline(reader: asyncio.StreamReader) -> bytes | None:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        line = exc.partial
    except asyncio.LimitOverrunError:
        raise protocol_error("(line too long)") from None
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line.rstrip(b"\n")


async def _read_headers(reader: asyncio.StreamReader, req: Request) -> tuple[int | None, bool]:
    length: int | None = None
    compressed = False
    for _ in range(MAX_HEADERS + 1):
        line = await _readline(reader)
        if line is None:
            raise protocol_error("(EOF during headers)")
        if not line:
            return length, compressed
        name, sep, value = line.partition(b":")
        if not sep:
            raise protocol_error("(header not in 'Name: value' format)")
        value = value.lstrip()
        if name == b"Content-length":
            if not _DIGITS_RE.match(value):
                raise protocol_error("(Content-Length contains non-numeric bytes)")
            length = int(value)
        elif name == b"User":
            if not _USER_RE.match(value):
                raise protocol_error("(User header contains control chars)")
            req.user = value.decode("utf-8", "replace").strip()
        elif name == b"Message-class":
            cls = value.decode("latin-1").strip().lower()
            if cls not in ("spam", "ham"):
                raise protocol_error("(Message-class header contains invalid class)")
            req.message_class = cls
        elif name == b"Set":
            v = value.lower()
            req.set_local, req.set_remote = b"local" in v, b"remote" in v
        elif name == b"Remove":
            v = value.lower()
            req.remove_local, req.remove_remote = b"local" in v, b"remote" in v
        elif name == b"Compress":
            if value.strip().lower() != b"zlib":
                kind = value.decode("latin-1")
                raise protocol_error(f"(compression type not supported: {kind})")
            compressed = True
    raise protocol_error("(too many headers)")


async def _read_body(
    reader: asyncio.StreamReader, length: int | None, compressed: bool, max_size: int
) -> bytes:
    if length is not None:
        # refused before reading (a deflated stream is never longer than its limit either)
        if length > max_size:
            raise protocol_error(f"(message of {length} bytes is over the {max_size} limit)")
        try:
            data = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            got = len(exc.partial)
            raise protocol_error(
                f"(Content-Length mismatch: Expected {length} bytes, got {got} bytes)"
            ) from None
    else:
        data = await reader.read(max_size + 1)
        while len(data) <= max_size:
            more = await reader.read(max_size + 1 - len(data))
            if not more:
                break
            data += more
        if len(data) > max_size:
            raise protocol_error(f"(message over the {max_size} bytes limit)")
    if compressed:
        data = inflate(data, max_size)
    return data


def inflate(data: bytes, max_size: int) -> bytes:
    """A zlib stream's content, at most ``max_size`` bytes (a zip bomb is refused unread)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise unavailable(f"zlib: {exc}") from None
    if len(out) > max_size:
        raise protocol_error(f"(message over the {max_size} bytes limit after inflation)")
    if not d.eof:
        raise unavailable("zlib: failed to find end of zlib stream")
    return out


# ---- replies --------------------------------------------------------------------------------
def score_text(score: float, required: float, is_spam: bool) -> str:
    """spamd's ``get_tag_value_for_score``: the score to one decimal, except that a clean
    message at or above the threshold shows the threshold minus 0.1."""
    s, r = f"{score:.1f}", f"{required:.1f}"
    if is_spam or float(s) < float(r):
        return s
    return f"{float(r) - 0.1:.15g}"


def spam_line(method: str, is_spam: bool, score: float, required: float) -> bytes:
    if method == "REPORT_IFSPAM":
        flag = "Yes" if is_spam else "No"
    else:
        flag = "True" if is_spam else "False"
    return f"Spam: {flag} ; {score_text(score, required, is_spam)} / {required:.1f}".encode()


def check_reply(method: str, version: float, spam: bytes, body: bytes) -> bytes:
    """The reply to a CHECK-family request (``body``: the report, symbol list or message)."""
    ok = b"SPAMD/1.1 0 EX_OK\r\n"
    if method in ("PROCESS", "HEADERS"):
        clen = b"Content-length: %d\r\n" % len(body)
        if version >= 1.3:
            return ok + clen + spam + b"\r\n\r\n" + body
        if version >= 1.2:
            return ok + clen + b"\r\n" + body
        return b"SPAMD/1.0 0 EX_OK\r\n" + body
    if method == "CHECK":
        return ok + spam + b"\r\n\r\n"
    if method == "SYMBOLS" and version < 1.3:
        body += b"\r\n"
    if version >= 1.3:
        return ok + b"Content-length: %d\r\n" % len(body) + spam + b"\r\n\r\n" + body
    return ok + spam + b"\r\n\r\n" + body


def tell_reply(did_set: list[str], did_remove: list[str]) -> bytes:
    hdr = b""
    if did_set:
        hdr += f"DidSet: {','.join(did_set)}\r\n".encode()
    if did_remove:
        hdr += f"DidRemove: {','.join(did_remove)}\r\n".encode()
    return b"SPAMD/1.1 0 EX_OK\r\n" + hdr + b"\r\n\r\n"


PONG = b"SPAMD/1.5 0 PONG\r\n"
