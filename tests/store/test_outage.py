"""PostgreSQL going away and coming back, with the real database behind a killable proxy.

The store answers within its deadlines while the database is away (``StoreUnavailable``,
never a hang), logs and counts the outage, and serves the first call made after the
database returned; the HTTP API answers 503 with ``Retry-After`` (never 500: the key check
and the feedback rate caps included), ``/readyz`` names the dependency, and it recovers at
once; the SMTP filter answers 451.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time
from base64 import b64encode
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from mailsift import outages
from mailsift.config import Settings
from mailsift.store import Store, StoreError, StoreUnavailable, open_store
from tests.fixtures.api import api_test_settings, start_api_server
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.store import pg_schema_url

MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@mailsift.test\r\nSubject: quarterly report\r\n"
    b"Message-ID: <outage-%d@example.org>\r\n\r\nThe figures are attached, see you monday.\r\n"
)


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(5432).start()
    yield proxy
    proxy.kill()


@pytest.fixture
def proxied_url(pg_proxy: TcpProxy, pg_store_url: str) -> str:
    """``pg_store_url`` (a fresh schema) reached through ``pg_proxy``."""
    return pg_store_url.replace("127.0.0.1:5432", f"127.0.0.1:{pg_proxy.port}")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_store_deadlines_outage_log_and_recovery(
    pg_proxy: TcpProxy, proxied_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    outages.reset()
    store = open_store(proxied_url, pool_size=2)
    try:
        store.query_one("SELECT 1 AS one")
        before = _metric("mailsift_dependency_outages_total", dependency="postgresql")
        caplog.set_level(logging.WARNING, logger="mailsift.outages")
        pg_proxy.kill()
        # every kind of call fails fast with StoreUnavailable (a StoreError), none hangs
        calls = [
            lambda: store.query_one("SELECT 1 AS one"),
            lambda: store.feedback.count_since(0.0, user="u@example.org"),
            lambda: store.lists.version(),
        ]
        for _ in range(3):
            for call in calls:
                t0 = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    call()
                assert time.monotonic() - t0 < 5.0  # deadline 2 s; generous bound
        assert issubclass(StoreUnavailable, StoreError)
        assert outages.is_down("postgresql")
        assert _metric("mailsift_dependency_outages_total", dependency="postgresql") == before + 1
        assert any(
            r.levelno == logging.WARNING and "postgresql is down" in r.getMessage()
            for r in caplog.records
        ), caplog.text

        pg_proxy.restore()
        t0 = time.monotonic()
        row = store.query_one("SELECT 1 AS one")  # the first call after the return is served
        assert row == {"one": 1}
        assert time.monotonic() - t0 < 2.0
        assert not outages.is_down("postgresql")
        assert any("postgresql is back" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_pool_wait_has_a_deadline(proxied_url: str) -> None:
    """Every pooled connection busy: a caller waits ``pool_timeout``, not 30 s."""
    store = open_store(proxied_url, pool_size=1, pool_timeout=0.5)
    try:
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with store.transaction():
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(5)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="pool of 1 busy"):
            store.query_one("SELECT 1 AS one")
        assert time.monotonic() - t0 < 3.0
        release.set()
        t.join()
        assert store.query_one("SELECT 1 AS one") == {"one": 1}
    finally:
        store.close()


# ---- the HTTP API ----------------------------------------------------------------------------


@pytest.fixture
def proxied_api(request: pytest.FixtureRequest, pg_proxy: TcpProxy) -> Iterator[Any]:
    yield from _proxied_api(request, pg_proxy)


@pytest.fixture
def proxied_api_cached_keys(request: pytest.FixtureRequest, pg_proxy: TcpProxy) -> Iterator[Any]:
    """``proxied_api`` with API keys cached for 10 minutes: during an outage a scoring
    request passes the key check and meets the verdict writer."""
    yield from _proxied_api(request, pg_proxy, key_cache_seconds=600.0)


def _proxied_api(request: pytest.FixtureRequest, pg_proxy: TcpProxy, **api: Any) -> Iterator[Any]:
    import psycopg

    tmp_path: Path = request.getfixturevalue("tmp_path")
    test_settings: Settings = request.getfixturevalue("test_settings")
    small_model_dir: Path = request.getfixturevalue("small_model_dir")
    pg_database: str = request.getfixturevalue("pg_database")
    schema = f"api_outage_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_schema_url(pg_database, schema).replace("127.0.0.1:5432", f"127.0.0.1:{pg_proxy.port}")
    settings = api_test_settings(test_settings, tmp_path / "var", small_model_dir, **api)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": url})}, deep=True
    )
    try:
        with start_api_server(settings, workers=1) as server:
            yield server
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_api_answers_503_during_outage_and_recovers(proxied_api: Any, pg_proxy: TcpProxy) -> None:
    server = proxied_api
    statuses: Counter[int] = Counter()
    slowest = [0.0]
    no_retry_after: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker(n: int) -> None:
        # the score key is checked against the store on every request (no key cache)
        with (
            server.client(server.keys["score"]) as score,
            server.client(server.keys["feedback"]) as fb,
        ):
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                if i % 3 == 0:  # feedback: the rate caps query the store
                    r = fb.post(
                        "/v1/feedback",
                        json={"label": "spam", "user": f"user{n}@mailsift.test",
                              "message": b64encode(MESSAGE % (n * 100000 + i)).decode()},
                    )  # fmt: skip
                else:
                    r = score.post(
                        "/v1/score",
                        content=MESSAGE % (n * 100000 + i),
                        headers={"Content-Type": "message/rfc822"},
                    )
                took = time.monotonic() - t0
                with lock:
                    statuses[r.status_code] += 1
                    slowest[0] = max(slowest[0], took)
                    if r.status_code == 503 and "retry-after" not in r.headers:
                        no_retry_after.append(r.status_code)
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        # served before the outage (the first answers take a second or two on a busy machine)
        deadline = time.monotonic() + 15.0
        while statuses[200] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses[200] > 0, statuses
        pg_proxy.kill()
        time.sleep(4.0)
        with httpx.Client(base_url=server.base_url, timeout=30) as c:
            ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["down"] == ["postgresql"]
        assert "postgresql" in ready.json()["detail"]
        during = dict(statuses)
        pg_proxy.restore()
        restored = time.monotonic()
        # requests made after the database returned: served at once
        with server.client(server.keys["score"]) as c:
            first_ok = None
            while time.monotonic() - restored < 10:
                r = c.post(
                    "/v1/score", content=MESSAGE % 7, headers={"Content-Type": "message/rfc822"}
                )
                if r.status_code == 200:
                    first_ok = time.monotonic() - restored
                    break
        assert first_ok is not None and first_ok < 2.0, first_ok
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert during.get(503, 0) > 0, during
    assert 500 not in statuses, statuses
    assert not no_retry_after
    assert slowest[0] < 10.0  # deadlines of 2 s: nothing near the old 30 s hang
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        assert c.get("/readyz").status_code == 200
        metrics = c.get("/metrics").text
    assert 'mailsift_dependency_outages_total{dependency="postgresql"}' in metrics
    assert 'mailsift_tempfails_total{reason="store",service="api"}' in metrics
    logs = server.logs()
    assert "dependency postgresql is down" in logs
    assert "api answered a temporary failure (store)" in logs


def test_api_verdict_writer_outage_503_and_no_answered_verdict_lost(
    proxied_api_cached_keys: Any, pg_proxy: TcpProxy
) -> None:
    """Scoring with the key cached: the verdict records (of single messages and of a batch)
    wait in the worker's writer while the database is away; once a write failed, scoring
    answers 503 with Retry-After (never 200 with a record dropped, never 500), a batch too;
    after the database returned every verdict that was answered 200 is in the store."""
    server = proxied_api_cached_keys
    answered: list[str] = []
    statuses: Counter[int] = Counter()
    with server.client(server.keys["score"]) as c:

        def score(i: int) -> httpx.Response:
            r = c.post(
                "/v1/score", content=MESSAGE % (500 + i), headers={"Content-Type": "message/rfc822"}
            )
            statuses[r.status_code] += 1
            if r.status_code == 200:
                answered.append(r.json()["verdict_id"])
            else:
                assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
            return r

        def batch(i: int) -> httpx.Response:
            msgs = [b64encode(MESSAGE % (900 + i + k)).decode() for k in range(3)]
            return c.post("/v1/score/batch", json={"messages": [{"message": m} for m in msgs]})

        for i in range(5):
            assert score(i).status_code == 200
        r = batch(0)  # a batch's records wait in the same writer
        assert r.status_code == 200, r.text
        answered.extend(x["verdict"]["verdict_id"] for x in r.json()["results"])
        pg_proxy.kill()
        i, deadline = 5, time.monotonic() + 30.0
        while statuses[503] < 5:
            assert time.monotonic() < deadline, statuses
            score(i)
            i += 1
            time.sleep(0.02)
        r = batch(10)  # refused as a whole before scoring, like one message
        assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
        pg_proxy.restore()
        restored, ok = time.monotonic(), None
        while time.monotonic() - restored < 10.0:
            if score(i).status_code == 200:
                ok = time.monotonic() - restored
                break
            i += 1
            time.sleep(0.02)
        assert ok is not None and ok < 3.0, (ok, statuses, server.logs()[-3000:])
        for vid in answered:  # waits for the writer's commit where needed
            r = c.get(f"/v1/verdicts/{vid}")
            assert r.status_code == 200, (vid, r.text)
    assert set(statuses) <= {200, 503}, statuses
    logs = server.logs()
    assert "verdict records wait for the store" in logs
    assert "not recorded" not in logs  # a commit whose answer was lost counts as written


# ---- the SMTP filter -------------------------------------------------------------------------


def test_smtp_filter_answers_451_when_postgresql_is_down(
    proxied_url: str,
    pg_proxy: TcpProxy,
    filter_factory: Any,
    smtp_sink: Any,
    small_model_dir: Path,
    test_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    outages.reset()
    data = test_settings.model_dump()
    data["paths"]["var_dir"] = tmp_path / "svc"
    data["store"]["url"] = proxied_url
    settings = Settings(**data)
    store: Store = open_store(proxied_url)
    scorer = Scorer(SpamModel.load(small_model_dir), load_rules(settings), settings)
    service = ScoringService(settings, scorer=scorer, store=store)
    try:
        srv = filter_factory(smtp_sink, service=service)
        msg = MESSAGE % 1
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as c:
            c.sendmail("alice@example.org", ["bob@mailsift.test"], msg)
        before = _metric("mailsift_tempfails_total", service="smtp", reason="store")
        caplog.set_level(logging.WARNING)
        pg_proxy.kill()
        # the verdict records are written after the answer: a message may be accepted before
        # the writer met the outage (its record waits in the queue); then every message is
        # answered 451 until the database is back
        answers: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 30.0
        while not answers or answers[-1][0] == 250:
            assert time.monotonic() < deadline, answers
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as c:
                c.ehlo("client.example.org")
                c.mail("alice@example.org")
                c.rcpt("bob@mailsift.test")
                t0 = time.monotonic()
                answers.append(c.data(MESSAGE % (100 + len(answers))))
                assert time.monotonic() - t0 < 10.0
        accepted_during = len(answers) - 1
        code, text = answers[-1]
        assert code == 451 and text.startswith(b"4.3.0"), answers
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as c:  # still down: still 451
            c.ehlo("client.example.org")
            c.mail("alice@example.org")
            c.rcpt("bob@mailsift.test")
            code, text = c.data(MESSAGE % 2)
        assert code == 451 and text.startswith(b"4.3.0"), (code, text)
        assert _metric("mailsift_tempfails_total", service="smtp", reason="store") == before + 2
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("postgresql is down" in m for m in messages), messages
        assert any("smtp answered a temporary failure (store)" in m for m in messages), messages
        pg_proxy.restore()
        # the records queued during the outage are written once the database is back, and
        # new messages are accepted again
        assert srv.verdict_writer is not None and srv.verdict_writer.flush(60)
        deadline = time.monotonic() + 30.0
        while True:
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as c:
                c.ehlo("client.example.org")
                c.mail("alice@example.org")
                c.rcpt("bob@mailsift.test")
                code, text = c.data(MESSAGE % 3)
            if code == 250 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 250, (code, text)
        smtp_sink.wait_for(2 + accepted_during)
        srv.stop()
        fresh = open_store(proxied_url)  # this store's idle connections died with the proxy
        try:
            assert sum(fresh.verdicts.count_by_action().values()) == 2 + accepted_during
        finally:
            fresh.close()
    finally:
        store.close()


def test_smtp_auth_answers_454_when_postgresql_is_down(
    proxied_url: str,
    pg_proxy: TcpProxy,
    filter_factory: Any,
    smtp_sink: Any,
    test_settings: Settings,
) -> None:
    """The accounts and the failed-AUTH counts are in the store: while it is down, AUTH is a
    temporary failure (RFC 4954's 454 4.7.0), never a 5xx or a login without the checks."""
    from tests.smtpd.util import tls_client

    outages.reset()
    base = test_settings.model_copy(
        update={"store": test_settings.store.model_copy(update={"url": proxied_url})}
    )
    srv = filter_factory(smtp_sink, base=base, auth_failures_before_throttle=3)
    with tls_client(srv.port) as c:
        assert c.login("alice@mailsift.test", "alice-pw")[0] == 235
    before = _metric("mailsift_tempfails_total", service="smtp", reason="auth_store")
    pg_proxy.kill()
    with tls_client(srv.port) as c:
        code, text = c.docmd("AUTH", "PLAIN " + _plain("alice@mailsift.test", "alice-pw"))
        assert code == 454 and text.startswith(b"4.7.0"), (code, text)
    assert _metric("mailsift_tempfails_total", service="smtp", reason="auth_store") == before + 1
    pg_proxy.restore()
    with tls_client(srv.port) as c:
        for _ in range(3):  # failures are counted in the store again
            assert c.docmd("AUTH", "PLAIN " + _plain("alice@mailsift.test", "bad"))[0] == 535
        assert c.docmd("AUTH", "PLAIN " + _plain("alice@mailsift.test", "alice-pw"))[0] == 454


def _plain(user: str, password: str) -> str:
    return b64encode(f"\0{user}\0{password}".encode()).decode()
