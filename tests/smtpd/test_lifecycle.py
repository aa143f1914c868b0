"""``mailsift serve smtp`` stopped with SIGTERM during its cold start leaves no process
behind: its helper children (the Hyperscan compiler it forks for a cold rules compile, the
child that asks the MLflow registry for the champion) die with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.ports import free_port
from tests.fixtures.process import alive, child_pids
from tests.smtpd.test_cli import MAILSIFT, _serve_env


def _tree(pid: int) -> set[int]:
    """``pid`` and all its descendants."""
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += child_pids(p)
    return seen


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _sigterm_when(env: dict[str, str], log: Path, ready: Callable[[int], bool]) -> set[int]:
    """Start ``mailsift serve smtp``, SIGTERM it once ``ready(pid)`` holds for one of its
    descendants (with workers, the helpers are the workers' children); the processes of its
    tree at that moment."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([MAILSIFT, "serve", "smtp"], env=env, stdout=out, stderr=out)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while not any(ready(c) for c in _tree(proc.pid) - {proc.pid}):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no helper child: " + log.read_text()[-3000:]
            time.sleep(0.05)
        tree = _tree(proc.pid)
        assert len(tree) >= 2
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {p for p in tree if alive(p)}
    finally:
        for p in tree | {proc.pid}:  # whatever this test started and is left: not for others
            if alive(p) and ("mailsift" in _cmdline(p) or "python" in _cmdline(p)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def test_sigterm_during_a_cold_rules_compile(
    tmp_path: Path, smtp_sink, smtp_tls_files, small_model_dir: Path
) -> None:
    cache = tmp_path / "empty-rules-cache"
    cache.mkdir()
    port, sub = free_port(), free_port()
    env = _serve_env(
        tmp_path,
        port,
        sub,
        smtp_sink.port,
        smtp_tls_files,
        MAILSIFT_MODEL__PATH=str(small_model_dir),
        MAILSIFT_RULES__CACHE_DIR=str(cache),
        MAILSIFT_RULES__USE_STOCK="true",  # the stock rules: a compile of tens of seconds
    )

    def compiler(pid: int) -> bool:  # forked: the same command line
        return "serve smtp" in _cmdline(pid)

    left = _sigterm_when(env, tmp_path / "serve.log", compiler)
    assert not list(cache.iterdir()), "the compile had finished: not a cold start"
    assert not left, {p: _cmdline(p) for p in left}


def test_sigterm_during_the_champion_lookup(tmp_path: Path, smtp_sink, smtp_tls_files) -> None:
    registry = tmp_path / "mlflow.db"
    registry.write_bytes(b"")  # a registry to ask: the lookup runs in a child (imports MLflow)
    port, sub = free_port(), free_port()
    env = _serve_env(
        tmp_path,
        port,
        sub,
        smtp_sink.port,
        smtp_tls_files,
        MAILSIFT_MLFLOW__TRACKING_URI=f"sqlite:///{registry}",
        MAILSIFT_RULES__USE_STOCK="false",
    )

    def lookup(pid: int) -> bool:
        return "serving_model_dir" in _cmdline(pid)

    left = _sigterm_when(env, tmp_path / "serve.log", lookup)
    assert not left, {p: _cmdline(p) for p in left}
