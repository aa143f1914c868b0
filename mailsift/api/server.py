"""Start ``mailsift serve api`` as a child process with given settings (tests, benchmarks).

``settings_env(settings)`` turns a Settings object into environment variables (one JSON
value per block, ``MAILSIFT_<BLOCK>``) so the child builds exactly the same settings;
``ApiProcess`` starts the server on a loopback port, waits for ``/readyz`` and stops it
(SIGTERM to its own process group, so the uvicorn workers go too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from mailsift.config import ENV_ALIASES, Settings

MAILSIFT = str(Path(sys.executable).with_name("mailsift"))
# short environment aliases of mailsift.config (they name one field, not a block)
ALIASES = tuple(ENV_ALIASES)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables that rebuild ``settings`` in a child process: one JSON value per
    block (``MAILSIFT_API={...}``), or one variable per field for a block whose name is also
    a short alias (``MAILSIFT_MODEL__PATH``)."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if not k.startswith("MAILSIFT_")}
    for name in type(settings).model_fields:
        block = getattr(settings, name).model_dump(mode="json")
        if f"MAILSIFT_{name.upper()}" in ALIASES:  # e.g. MAILSIFT_MODEL means model.path
            for fld, value in block.items():
                if value is not None:
                    env[f"MAILSIFT_{name.upper()}__{fld.upper()}"] = (
                        value if isinstance(value, str) else json.dumps(value)
                    )
        else:
            env[f"MAILSIFT_{name.upper()}"] = json.dumps(block)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("MAILSIFT_CONFIG", None)
    return env


def run_cli(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``mailsift`` command in ``env``."""
    return subprocess.run(
        [MAILSIFT, *args], env=env, capture_output=True, text=True, check=check, timeout=300
    )


def create_key(env: dict[str, str], name: str, *scopes: str, user: str = "") -> str:
    args = ["keys", "create", "--name", name]
    for s in scopes:
        args += ["--scope", s]
    if user:
        args += ["--user", user]
    return run_cli(env, *args).stdout.strip()


class ApiProcess:
    """``mailsift serve api`` on a loopback port, in its own process group."""

    def __init__(
        self, settings: Settings, workers: int = 1, port: int | None = None, log: Path | None = None
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.port = port or free_port()
        self.env = settings_env(settings)
        self.log_path = log or settings.paths.var_dir / f"api-{self.port}.log"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 300.0) -> ApiProcess:
        self.settings.paths.var_dir.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                MAILSIFT,
                "serve",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"API server exited ({self.proc.returncode}):\n{self.logs()[-4000:]}"
                )
            try:
                r = httpx.get(self.base_url + "/readyz", timeout=5)
                # one worker answering is not enough: connections opened while another is
                # still loading all go to the first, and keep-alive keeps them there
                if r.status_code == 200 and self.ready_workers() >= self.workers:
                    return
                last = r.text
                if "not started" in r.json().get("detail", ""):  # it will not get better
                    raise RuntimeError(f"API server cannot serve: {last}")
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"API server not ready after {timeout}s: {last}\n{self.logs()[-4000:]}")

    def ready_workers(self) -> int:
        """Workers that logged "api worker ready" since this start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "_log_start", 0))
                return f.read().count(b"api worker ready")
        except OSError:
            return 0

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the server process)."""
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = [int(p) for p in path.read_text().split()]
        except OSError:
            return []
        # with --workers > 1 the children are the workers (plus multiprocessing's helpers)
        return [p for p in pids if "mailsift" in _cmdline(p) or "spawn_main" in _cmdline(p)] or pids

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ApiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0
