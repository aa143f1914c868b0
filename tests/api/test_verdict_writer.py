"""``mailsift serve api --workers 2`` records verdicts off the answer's path (each worker's
``VerdictWriter``, for one message and for a batch), on SQLite and PostgreSQL: a verdict id
just answered is found at once by either worker (``GET /v1/verdicts/{id}``, feedback by verdict id), every answered
verdict is in the store once the server stopped, and an id that is neither recent nor
stored is a 404 without waiting."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from mailsift.config import Settings
from mailsift.store import open_store
from mailsift.verdict import new_verdict_id, verdict_id_time
from tests.api.messages import b64, message
from tests.fixtures.api import api_test_settings, start_api_server

pytestmark = pytest.mark.integration

SCORE = {"Content-Type": "message/rfc822"}


def test_verdict_ids_carry_their_time() -> None:
    before = time.time()
    ids = [new_verdict_id() for _ in range(1000)]
    after = time.time()
    assert len(set(ids)) == 1000
    for v in ids:
        u = uuid.UUID(hex=v)
        assert (u.version, u.variant) == (7, uuid.RFC_4122) and v == u.hex
        made = verdict_id_time(v)
        assert made is not None and before - 0.001 <= made <= after + 0.001
    assert verdict_id_time(uuid.uuid4().hex) is None  # the random ids of earlier versions
    assert verdict_id_time("x" * 32) is None
    assert verdict_id_time("nope") is None


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
def test_a_verdict_just_answered_is_found_by_either_worker(
    request: pytest.FixtureRequest,
    store_kind: str,
    tmp_path: Path,
    test_settings: Settings,
    small_model_dir: Path,
) -> None:
    url = str(
        request.getfixturevalue(f"{'pg' if store_kind == 'postgresql' else 'sqlite'}_store_url")
    )
    settings = api_test_settings(test_settings, tmp_path / "var", small_model_dir)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": url})}, deep=True
    )
    answered: list[str] = []
    errors: list[str] = []
    with start_api_server(settings, workers=2) as server:
        feedback_key = server.create_key("fb-user", "feedback", user="alice@mailsift.test")

        def client(n: int) -> None:
            # a new connection per request: scoring and lookups land on either worker
            for i in range(25):
                raw = message(msgid=f"<w{n}-{i}@example.org>", subject=f"report {n}-{i}")
                with server.client(server.keys["score"]) as c:
                    r = c.post("/v1/score", content=raw, headers=SCORE)
                if r.status_code != 200:
                    errors.append(f"score {r.status_code} {r.text}")
                    continue
                vid = r.json()["verdict_id"]
                answered.append(vid)
                if i % 5 == 0:
                    with server.client(feedback_key) as c:
                        f = c.post("/v1/feedback", json={"verdict_id": vid, "label": "ham"})
                    if f.status_code != 200 or f.json()["verdict_id"] != vid:
                        errors.append(f"feedback {vid}: {f.status_code} {f.text}")
                else:
                    with server.client(server.keys["score"]) as c:
                        g = c.get(f"/v1/verdicts/{vid}")
                    if g.status_code != 200 or g.json()["verdict_id"] != vid:
                        errors.append(f"lookup {vid}: {g.status_code} {g.text}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(answered) == 100

        # unknown ids: not recent (a random id, an id made a minute ago) -> 404 at once
        old = f"{int((time.time() - 60) * 1000):012x}7000{'8' + '0' * 15}"
        assert verdict_id_time(old) is not None
        with server.client(server.keys["score"]) as c:
            for vid in (uuid.uuid4().hex, old):
                t0 = time.monotonic()
                assert c.get(f"/v1/verdicts/{vid}").status_code == 404
                assert time.monotonic() - t0 < 1.0
            # a recent id nobody made: 404 once the bounded wait is over
            t0 = time.monotonic()
            assert c.get(f"/v1/verdicts/{new_verdict_id()}").status_code == 404
            assert 1.5 < time.monotonic() - t0 < 10.0
    store = open_store(url)
    try:
        for vid in answered:
            assert store.verdicts.get(vid) is not None
            assert store.verdicts.sample(vid) is not None
    finally:
        store.close()


def test_a_batch_is_recorded_off_the_answer_path(
    sqlite_store_url: str, tmp_path: Path, test_settings: Settings, small_model_dir: Path
) -> None:
    settings = api_test_settings(test_settings, tmp_path / "var", small_model_dir)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": sqlite_store_url})}, deep=True
    )
    raws = [message(msgid=f"<b{i}@example.org>", subject=f"batch {i}") for i in range(6)]
    body = {"messages": [{"id": str(i), "message": b64(r)} for i, r in enumerate(raws)]}
    with start_api_server(settings, workers=2) as server:
        with server.client(server.keys["score"]) as c:
            r = c.post("/v1/score/batch", json=body)
        assert r.status_code == 200, r.text
        ids = [x["verdict"]["verdict_id"] for x in r.json()["results"]]
        assert len(set(ids)) == len(raws)
        # found at once, whichever worker answers the lookup (a new connection each)
        for vid in ids:
            with server.client(server.keys["score"]) as c:
                g = c.get(f"/v1/verdicts/{vid}")
            assert g.status_code == 200 and g.json()["verdict_id"] == vid, g.text
    store = open_store(sqlite_store_url)
    try:
        for vid, raw in zip(ids, raws, strict=True):
            assert store.verdicts.get(vid) is not None
            assert store.verdicts.sample(vid) == raw[: settings.feedback.sample_max_bytes]
    finally:
        store.close()
