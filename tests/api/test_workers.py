"""``mailsift serve api --workers 2`` (uvicorn's supervisor): a burst of keep-alive clients
is spread over both workers, and a worker that dies is replaced while the other keeps
answering."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailsift.config import Settings
from tests.api.messages import HAM
from tests.fixtures.api import ApiServer, api_test_settings, start_api_server

pytestmark = pytest.mark.integration


def _workers(server: ApiServer) -> list[int]:
    return sorted(server.process.worker_pids())


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[ApiServer]:
    settings = api_test_settings(test_settings, tmp_path_factory.mktemp("workers"), small_model_dir)
    with start_api_server(settings, workers=2) as server:
        yield server


def test_a_burst_of_keep_alive_clients_reaches_both_workers(two_workers: ApiServer) -> None:
    pids = _workers(two_workers)
    assert len(pids) == 2
    before = {p: _cpu_ticks(p) for p in pids}
    errors: list[str] = []
    start = threading.Barrier(16)

    def client() -> None:
        with two_workers.client(two_workers.keys["score"]) as c:  # one connection each
            start.wait()
            for _ in range(15):
                r = c.post("/v1/score", content=HAM, headers={"Content-Type": "message/rfc822"})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    used = {p: _cpu_ticks(p) - before[p] for p in pids}
    total = sum(used.values())
    assert total > 0
    # 16 connections opened at once, each kept for its 15 requests: both workers take some
    assert min(used.values()) >= 0.15 * total, used


def test_workers_score_and_learn_without_scikit_learn_in_memory(two_workers: ApiServer) -> None:
    """Each worker scores and takes feedback (the fast path) from the model's fitted arrays:
    no scikit-learn or scipy extension (~85 MB of RSS) is mapped in its memory."""
    for i in range(6):  # keep-alive off: the requests spread over both workers
        with two_workers.client(two_workers.keys["score"]) as c:
            r = c.post("/v1/score", content=HAM, headers={"Content-Type": "message/rfc822"})
            assert r.status_code == 200, r.text
        with two_workers.client(two_workers.admin_key) as c:  # a trusted global lesson
            raw = HAM.replace(b"Subject: ", f"Subject: {i} ".encode(), 1)
            body = {"message": base64.b64encode(raw).decode(), "label": "ham", "user": "t@x.y"}
            r = c.post("/v1/feedback", json=body)
            assert r.status_code == 200 and r.json()["status"] in ("learned", "duplicate"), r.text
    for pid in _workers(two_workers):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "_pcre" in maps and "numpy" in maps  # it has loaded the scorer
        assert "/sklearn/" not in maps and "/scipy/" not in maps, pid


def test_a_dead_worker_is_replaced_and_service_continues(two_workers: ApiServer) -> None:
    proc = two_workers.process.proc
    assert proc is not None
    old = _workers(two_workers)
    victim = old[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    answered = 0
    while time.monotonic() < deadline:
        with httpx.Client(base_url=two_workers.base_url, timeout=30) as c:
            r = c.get("/healthz")  # a fresh connection: whichever worker is alive takes it
            answered += r.status_code == 200
        now = _workers(two_workers)
        if len(now) == 2 and victim not in now and two_workers.process.ready_workers() >= 3:
            break  # the replacement loaded its model and said so
        time.sleep(0.2)
    now = _workers(two_workers)
    assert victim not in now and len(now) == 2, now
    assert answered >= 1
    assert proc.poll() is None  # the supervisor itself carries on
