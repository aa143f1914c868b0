"""Model reload under concurrent load, against the real 2-worker server: while client
threads score messages non-stop, the serving model is swapped three times; no request
fails, every response names a model that was being served, and both workers follow."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from mailsift.config import Settings
from tests.api.messages import HAM, SPAM
from tests.fixtures.api import ApiServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_model_dir(
    small_model_dir: Path,
    ruleset,
    test_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The small model after learning one message: another version, another file."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer

    model = SpamModel.load(small_model_dir)
    Scorer(model, ruleset, test_settings).learn(SPAM, "spam", weight=3.0)
    return model.save(tmp_path_factory.mktemp("model-b") / "second")


def _point(link: Path, target: Path) -> None:
    """Re-point the served-model symlink atomically."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.resolve(), target_is_directory=True)
    os.replace(tmp, link)


def _version(server: ApiServer) -> str:
    return str(httpx.get(server.base_url + "/readyz", timeout=10).json()["model_version"])


def _all_workers_serve(server: ApiServer, version: str, timeout: float = 15.0) -> None:
    """30 requests in a row on fresh connections (spread over the workers) see ``version``."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 30:
        assert time.monotonic() < deadline, f"workers did not all switch to {version}"
        streak = streak + 1 if _version(server) == version else 0


def test_reload_while_scoring(
    api_server: ApiServer, small_model_dir: Path, second_model_dir: Path
) -> None:
    assert api_server.model_link is not None
    v_a = _version(api_server)
    stop = threading.Event()
    outcomes: list[tuple[int, str]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def load(i: int) -> None:
        raw = SPAM if i % 2 else HAM
        with api_server.client(api_server.keys["score"]) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/score", content=raw, headers={"Content-Type": "message/rfc822"})
                    version = r.json().get("model_version", "") if r.status_code == 200 else r.text
                    with lock:
                        outcomes.append((r.status_code, version))
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(repr(exc))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    seen: list[str] = [v_a]
    try:
        time.sleep(0.5)
        with api_server.client(api_server.admin_key) as admin:
            for target in (second_model_dir, small_model_dir, second_model_dir):
                _point(api_server.model_link, target)
                r = admin.post("/v1/models/reload")
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["changed"] and body["previous_version"] == seen[-1]
                seen.append(body["version"])
                _all_workers_serve(api_server, body["version"])
                time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        # leave the server as the other tests expect it
        _point(api_server.model_link, small_model_dir)
        with api_server.client(api_server.admin_key) as admin:
            admin.post("/v1/models/reload")
        _all_workers_serve(api_server, v_a)

    assert failures == []
    assert len(outcomes) > 20
    assert {status for status, _ in outcomes} == {200}
    versions = {v for _, v in outcomes}
    assert versions <= set(seen) and len(versions) == 2  # both models answered
    assert seen[1] != seen[0] and seen[2] == seen[0] and seen[3] == seen[1]


def test_reload_requires_admin_and_reports_no_change(api_server: ApiServer) -> None:
    with api_server.client(api_server.keys["score"]) as c:
        assert c.post("/v1/models/reload").status_code == 403
    with api_server.client(api_server.admin_key) as c:
        r = c.post("/v1/models/reload")
    assert r.status_code == 200
    assert r.json()["changed"] is False
