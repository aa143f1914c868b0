"""Nothing acknowledged is lost: kill -9 a writer right after its acks; every acked verdict
and feedback report is in the store when it is opened again (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from mailsift.config import PROJECT_ROOT
from mailsift.store import open_store

ACKS = 150


def test_kill_9_loses_no_acknowledged_row(store_url: str) -> None:
    open_store(store_url).close()  # migrate first, so the child starts writing at once
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store.durability_writer", store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acked) < ACKS:
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode() if proc.stderr else "writer died"
            assert line.startswith(b"ok "), line
            acked.append(line.split()[1].decode())
        os.kill(proc.pid, signal.SIGKILL)  # right after the last ack we read
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = open_store(store_url)
    try:
        for vid in acked:
            rec = store.verdicts.get(vid)
            assert rec is not None, f"acknowledged verdict {vid} lost"
            assert store.verdicts.sample(vid) is not None
            i = int(vid.split("-")[1])
            if i % 3 == 0:
                digest = f"{i:064x}"
                state = store.feedback.learned(digest)
                assert state is not None and state.label == "spam", vid
                assert store.feedback.message(digest) == b"raw %d" % i
        reports = {f.verdict_id for f in store.feedback.recent(limit=10_000)}
        assert {v for v in acked if int(v.split("-")[1]) % 3 == 0} <= reports
        # the store is consistent and writable after the crash
        assert store.ping()
        n = sum(store.verdicts.count_by_action().values())
        assert n >= len(acked)
    finally:
        store.close()
