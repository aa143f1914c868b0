"""Fixtures for the spamd-protocol tests.

- ``SpamdProcess``: ``mailsift serve spamd`` in a subprocess on a free loopback port, with a
  settings environment of its own (``settings_env``), in its own process group.
- ``spamd_settings``: the test settings with a var dir (SQLite store) of the module's own, the
  small test model served, TELL allowed.
- ``spamd_proc`` (module): that server, started once per test module.
- ``spamc(*args, input=..., port=...)``: the real ``spamc`` binary against a port.
- ``gtube`` / ``plain_ham``: two small messages (LF line ends, as files on disk).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsift.config import Settings
from tests.fixtures.process import ServerProcess, run_cli, served_settings

SPAMC = "/usr/bin/spamc"

GTUBE = (
    b"From: sender@example.com\nTo: alice@example.org\nSubject: test\n"
    b"Message-ID: <gtube-1@example.com>\nDate: Mon, 7 Dec 2026 03:00:00 +0000\n\n"
    b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n"
)
PLAIN_HAM = (
    b"From: bob@example.net\nTo: alice@example.org\nSubject: lunch tomorrow\n"
    b"Message-ID: <ham-1@example.net>\nDate: Mon, 7 Dec 2026 03:00:00 +0000\n\n"
    b"Hi Alice, shall we have lunch tomorrow at noon? The usual place.\nBob\n"
)


def request(port: int, data: bytes, *, half_close: bool = True, timeout: float = 60) -> bytes:
    """Send raw bytes to a spamd port and read the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def spamc_request(
    method: str, body: bytes, *headers: tuple[str, str], version: str = "1.5"
) -> bytes:
    """A request as spamc writes it: request line, Content-length, other headers, body."""
    hdrs = f"Content-length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"{method} SPAMC/{version}\r\n{hdrs}\r\n".encode() + body


class SpamdProcess(ServerProcess):
    """``mailsift serve spamd`` on a loopback port; ready once it answers PING."""

    def __init__(self, settings: Settings, *extra: str) -> None:
        super().__init__(settings, "spamd")
        self.extra = extra

    def start(self, timeout: float = 240.0) -> SpamdProcess:
        proc = self.launch(
            "serve", "spamd", "--host", "127.0.0.1", "--port", str(self.port), *self.extra
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"spamd exited ({proc.returncode}):\n{self.logs()}")
            with contextlib.suppress(OSError):
                if request(self.port, b"PING SPAMC/1.5\r\n\r\n", timeout=5).startswith(
                    b"SPAMD/1.5 0 PONG"
                ):
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"spamd not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return super().logs()[-6000:]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args)


def spamd_test_settings(
    base: Settings, var_dir: Path, model_dir: Path, **spamd: object
) -> Settings:
    return served_settings(
        base, var_dir, model_dir, spamd=base.spamd.model_copy(update={"allow_tell": True, **spamd})
    )


@pytest.fixture(scope="module")
def spamd_proc(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[SpamdProcess]:
    var_dir = tmp_path_factory.mktemp("spamd-var")
    settings = spamd_test_settings(test_settings, var_dir, small_model_dir)
    with SpamdProcess(settings) as proc:
        yield proc


def spamc(port: int, *args: str, input: bytes) -> subprocess.CompletedProcess[bytes]:
    """The real spamc (``-x``: no safe fallback, so a failure shows as a failure)."""
    return subprocess.run(
        [SPAMC, "-d", "127.0.0.1", "-p", str(port), "-x", *args],
        input=input,
        capture_output=True,
        timeout=120,
        check=False,
    )
