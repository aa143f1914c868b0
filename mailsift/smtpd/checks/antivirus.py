"""Antivirus: the whole message through clamd's INSTREAM command (checklist item 7).

The raw message is streamed to clamd (``zINSTREAM``: 4-byte big-endian length + chunk, ...,
then a zero length; reply ``stream: OK`` / ``stream: <name> FOUND``) over its unix socket or
``tcp://host:port`` (``settings.antivirus.clamd_socket``), asynchronously, in chunks, within
``timeout``. clamd itself splits MIME, decodes base64/quoted-printable and opens archives
(``ScanMail``/``ScanArchive``), so every attachment, zipped or not, is scanned.

- a virus: ``REJECT`` with ``554 5.7.1`` naming it (``details["smtp_code"] = 554``);
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
import struct
from dataclasses import dataclass
from typing import ClassVar

from mailsift.config import AntivirusSettings
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.scores import symbol

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

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("tcp://"):
            hostport = self.address[len("tcp://") :]
            host, _, port = hostport.rpartition(":")
            return await asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port))
        path = (
            self.address[len("unix://") :] if self.address.startswith("unix://") else self.address
        )
        return await asyncio.open_unix_connection(path)

    async def _command(self, command: bytes, payload: bytes | None = None) -> str:
        async def talk() -> str:
            reader, writer = await self._open()
            try:
                # read while sending: clamd answers (size limit) and hangs up mid-stream,
                # and the reply must be in our buffer before the broken pipe is noticed
                reading = asyncio.ensure_future(reader.readuntil(b"\0"))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await self._send(writer, command, payload)  # the reply says what happened
                try:
                    reply = await reading
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial:
                        raise
                    reply = exc.partial
                return reply.rstrip(b"\0").decode("utf-8", "replace").strip()
            finally:
                if "reading" in locals() and not reading.done():
                    reading.cancel()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        try:
            return await asyncio.wait_for(talk(), self.timeout)
        except TimeoutError as exc:
            raise ClamdError(f"clamd at {self.address} timed out after {self.timeout} s") from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise ClamdError(f"clamd at {self.address}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, command: bytes, payload: bytes | None) -> None:
        writer.write(b"z" + command + b"\0")
        if payload is not None:
            view = memoryview(payload)
            for i in range(0, len(view), CHUNK):
                chunk = view[i : i + CHUNK]
                writer.write(struct.pack("!L", len(chunk)))
                writer.write(chunk)
                await writer.drain()
            writer.write(struct.pack("!L", 0))
        await writer.drain()

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


class Antivirus:
    name: ClassVar[str] = "antivirus"
    stage: ClassVar[Stage] = Stage.DATA

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
                details={"smtp_code": 554, "virus": scan.virus},
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
            details={"smtp_code": 552},
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
