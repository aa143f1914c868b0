"""Antivirus: the whole message through clamd's INSTREAM command.

The raw message is streamed to clamd (``zINSTREAM``: 4-byte big-endian length + chunk, ...,
then a zero length; reply ``stream: OK`` / ``stream: <name> FOUND``) over its unix socket or
``tcp://host:port`` (``settings.antivirus.clamd_socket``), asynchronously, in chunks, within
``timeout``. clamd itself splits MIME, decodes base64/quoted-printable and opens archives
(``ScanMail``/``ScanArchive``), so every attachment, zipped or not, is scanned.

- a virus: ``REJECT`` with ``554 5.7.1`` naming it (``details["code"] = 554``, which the reply mapper uses);
- a message above ``max_scan_bytes`` (or clamd's StreamMaxLength): ``REJECT`` ``552 5.3.4``,
  never an unscanned accept;
- clamd down, refusing or timing out: ``TEMPFAIL`` ``451 4.7.1`` (``on_error = "tempfail"``,
  the default) or, if an operator insists, accept with ``AV_TEMPERROR`` (``on_error = "accept"``).

Whitelisted senders are scanned too: a friend's infected machine is still infected.

Symbols: ``AV_CLEAN``, ``AV_VIRUS``, ``AV_TEMPERROR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from mailsift.config import AntivirusSettings
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.registry import register_check
from mailsift.smtpd.checks.scores import symbol, table_symbols

CHUNK = 64 * 1024


class ClamdError(Exception):
    """clamd unreachable, timed out, or answered an error."""


class ClamdSizeLimit(ClamdError):
    """clamd refused the stream as too large (StreamMaxLength)."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    infected: bool
    virus: str = ""
    raw_reply: str = ""


class ClamdClient:
    """A tiny async clamd client: PING and INSTREAM (one connection per command)."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        addr: Any
        if self.address.startswith("tcp://"):
            host, _, port = self.address[len("tcp://") :].rpartition(":")
            infos = await loop.getaddrinfo(
                host.strip("[]") or "127.0.0.1", int(port), type=socket.SOCK_STREAM
            )
            family, _type, proto, _name, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
        else:
            addr = self.address.removeprefix("unix://")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _talk(self, command: bytes, payload: bytes | None) -> str:
        # plain non-blocking sockets, not streams: when clamd answers "size limit exceeded"
        # and hangs up mid-stream, its reply must still be readable after our broken pipe
        loop = asyncio.get_running_loop()
        sock = await self._connect()
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await loop.sock_sendall(sock, b"z" + command + b"\0")
                if payload is not None:
                    view = memoryview(payload)
                    for i in range(0, len(view), CHUNK):
                        chunk = view[i : i + CHUNK]
                        await loop.sock_sendall(sock, struct.pack("!L", len(chunk)))
                        await loop.sock_sendall(sock, chunk)
                    await loop.sock_sendall(sock, struct.pack("!L", 0))
            reply = b""
            while b"\0" not in reply and len(reply) < 4096:
                try:
                    data = await loop.sock_recv(sock, 4096)
                except ConnectionResetError:
                    break
                if not data:
                    break
                reply += data
        finally:
            sock.close()
        if not reply:
            raise ClamdError(f"clamd at {self.address} closed the connection without a reply")
        return reply.split(b"\0", 1)[0].decode("utf-8", "replace").strip()

    async def _command(self, command: bytes, payload: bytes | None = None) -> str:
        try:
            return await asyncio.wait_for(self._talk(command, payload), self.timeout)
        except TimeoutError as exc:
            raise ClamdError(f"clamd at {self.address} timed out after {self.timeout} s") from exc
        except (OSError, ValueError, IndexError) as exc:
            raise ClamdError(f"clamd at {self.address}: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return await self._command(b"PING") == "PONG"
        except ClamdError:
            return False

    async def scan(self, data: bytes) -> ScanResult:
        reply = await self._command(b"INSTREAM", data)
        return parse_reply(reply)


def parse_reply(reply: str) -> ScanResult:
    """``stream: OK`` / ``stream: Name FOUND`` / ``... ERROR`` -> ScanResult or ClamdError."""
    body = reply.split(":", 1)[1].strip() if ":" in reply else reply
    if body == "OK":
        return ScanResult(False, raw_reply=reply)
    if body.endswith(" FOUND"):
        return ScanResult(True, body[: -len(" FOUND")].strip(), reply)
    if "size limit" in body.lower():
        raise ClamdSizeLimit(reply)
    raise ClamdError(f"clamd error: {reply[:200]}")


@register_check(
    block="antivirus",
    settings=AntivirusSettings,
    enabled=lambda settings: settings.check_block(AntivirusSettings).enabled,
    build=lambda env: Antivirus(env.block(AntivirusSettings)),
    symbols=table_symbols("AV_"),
)
class Antivirus:
    name: ClassVar[str] = "antivirus"
    dependency: ClassVar[str] = "clamd"  # a temperror result counts as its failure
    stage: ClassVar[Stage] = Stage.DATA
    skip_whitelisted: ClassVar[bool] = False  # a friend's infected machine is still infected

    def __init__(self, settings: AntivirusSettings, client: ClamdClient | None = None) -> None:
        self.settings = settings
        self.client = client or ClamdClient(settings.clamd_socket, settings.timeout)

    async def run(self, ctx: SmtpContext) -> CheckResult:
        raw = ctx.raw_message
        if raw is None:
            return CheckResult(self.name, result="none")
        if len(raw) > self.settings.max_scan_bytes:
            return self._too_big(f"{len(raw)} bytes > {self.settings.max_scan_bytes}")
        try:
            scan = await self.client.scan(raw)
        except ClamdSizeLimit as exc:
            return self._too_big(str(exc))
        except ClamdError as exc:
            return self._unavailable(str(exc))
        if scan.infected:
            return CheckResult(
                self.name,
                action=CheckAction.REJECT,
                symbols=[symbol("AV_VIRUS", f"virus {scan.virus}")],
                reason=f"Virus found: {scan.virus}",
                enhanced_code="5.7.1",
                result="infected",
                details={"code": 554, "virus": scan.virus},
            )
        return CheckResult(self.name, symbols=[symbol("AV_CLEAN")], result="clean")

    def _too_big(self, why: str) -> CheckResult:
        return CheckResult(
            self.name,
            action=CheckAction.REJECT,
            symbols=[symbol("AV_TEMPERROR", f"not scanned: {why}")],
            reason="Message too large to be scanned for viruses",
            enhanced_code="5.3.4",
            result="toolarge",
            details={"code": 552},
        )

    def _unavailable(self, why: str) -> CheckResult:
        res = CheckResult(
            self.name,
            symbols=[symbol("AV_TEMPERROR", why[:200])],
            result="temperror",
            details={"error": why[:500]},
        )
        if self.settings.on_error == "tempfail":
            res.action = CheckAction.TEMPFAIL
            res.enhanced_code = "4.7.1"
            res.reason = "Virus scanner temporarily unavailable, please try again later"
        return res
