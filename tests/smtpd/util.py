"""Small client helpers for the SMTP filter tests."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

from tests.fixtures.smtp import OUTSIDE_IP


def tls_ctx() -> ssl.SSLContext:
    """A client context that accepts the test's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client(port: int, source: str = OUTSIDE_IP, helo: str = "client.example") -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=15)
    c.ehlo(helo)
    return c


def tls_client(port: int, source: str = OUTSIDE_IP) -> smtplib.SMTP:
    c = client(port, source)
    c.starttls(context=tls_ctx())
    c.ehlo("client.example")
    return c


class Raw:
    """A raw socket SMTP conversation (for what smtplib would not send)."""

    def __init__(self, port: int, source: str = OUTSIDE_IP) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15,
                                             source_address=(source, 0))  # fmt: skip
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; got {lines!r} {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode().rstrip("\r")
            lines.append(text)
            if text[3:4] != "-":
                return int(text[:3]), "\n".join(lines)

    def cmd(self, line: str) -> tuple[int, str]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 10.0) -> bool:
        """True when the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()
