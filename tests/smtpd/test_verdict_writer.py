"""The SMTP filter's verdict writer (``mailsift.smtpd.verdicts``) on real stores.

Records queued while the filter answers are all written (in batches), a record that can
never be written is dropped without blocking the others, a store that holds its write lock
fills the queue up to its bound and then refuses, an outage of PostgreSQL (behind a
killable proxy) refuses new records until it is back and loses none already queued, and
``close`` writes what is queued. Through the filter: every message answered 250 has its
verdict in the store once the filter stopped.
"""

from __future__ import annotations

import smtplib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsift.smtpd.verdicts import VerdictWriter
from mailsift.store import Store, StoreError, open_store
from tests.fixtures.proxy import TcpProxy
from tests.smtpd.util import client
from tests.store.helpers import verdict_record


def _wait(cond: Any, timeout: float = 30.0) -> bool:
    """Poll ``cond()`` until it holds or ``timeout`` passes (a state, not a speed, is tested)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def test_queued_records_are_written_and_a_bad_one_is_dropped(sqlite_store: Store) -> None:
    sqlite_store.verdicts.add(verdict_record("taken"))
    writer = VerdictWriter(sqlite_store.verdicts.add_many)
    try:
        vids = [f"v{i}" for i in range(300)]
        for i, vid in enumerate(vids):
            writer.submit(verdict_record(vid), b"raw " + vid.encode())
            if i == 150:
                writer.submit(verdict_record("taken"), None)  # a duplicate id: refused by the store
        assert writer.flush(30)
        assert writer.refusal() is None
        assert writer.dropped == 1
        for vid in vids:
            assert sqlite_store.verdicts.get(vid) is not None
            assert sqlite_store.verdicts.sample(vid) == b"raw " + vid.encode()
    finally:
        writer.close(10)


@pytest.mark.parametrize("size", [1, 5])
def test_a_commit_whose_answer_was_lost_counts_as_written(store: Store, size: int) -> None:
    """The store committed a batch but the writer saw an error (the connection dropped
    after the commit): the retry meets the records' own duplicate keys. With ``exists`` the
    writer counts them as written and goes on; nothing is dropped or kept for ever."""
    calls: list[int] = []

    def commit_then_fail_once(items: list[Any]) -> None:
        store.verdicts.add_many(items)
        calls.append(len(items))
        if len(calls) == 1:
            raise StoreError("server closed the connection unexpectedly")

    writer = VerdictWriter(
        commit_then_fail_once, exists=lambda vid: store.verdicts.get(vid) is not None
    )
    try:
        vids = [f"lost-{size}-{i}-{uuid.uuid4().hex[:6]}" for i in range(size)]
        # queued before the writer thread starts (with the first submit), so the first
        # batch holds them all; no samples, so the queue's byte count needs no update
        for vid in vids:
            writer._queue.append((verdict_record(vid), None))
        writer.submit(verdict_record(f"after-{size}-{uuid.uuid4().hex[:6]}"), b"raw")
        assert writer.flush(30)
        assert writer.refusal() is None
        assert writer.dropped == 0
        assert writer.written == size + 1
        for vid in vids:
            assert store.verdicts.get(vid) is not None
    finally:
        writer.close(10)


def test_a_full_queue_is_refused_until_it_drains(
    sqlite_store: Store, sqlite_store_url: str
) -> None:
    """Another process holds SQLite's write lock: the first batch waits for it, the queue
    fills up to ``max_queued`` and the next record is refused; once the lock is released,
    everything queued is written and records are taken again."""
    path = sqlite_store_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = VerdictWriter(sqlite_store.verdicts.add_many, max_queued=3)
    try:
        writer.submit(verdict_record("a0"), None)
        assert _wait(lambda: writer.pending() == 1 and writer.queued() == 0)  # waits for the lock
        for vid in ("a1", "a2", "a3"):
            writer.submit(verdict_record(vid), None)
        assert writer.refusal() is not None
        with pytest.raises(StoreError):
            writer.submit(verdict_record("a4"), None)
        other.execute("ROLLBACK")
        assert writer.flush(30)
        assert writer.refusal() is None
        writer.submit(verdict_record("a5"), None)
        assert writer.flush(30)
        for vid in ("a0", "a1", "a2", "a3", "a5"):
            assert sqlite_store.verdicts.get(vid) is not None
        assert sqlite_store.verdicts.get("a4") is None
    finally:
        other.close()
        writer.close(10)


def test_queued_samples_are_bounded_in_bytes(sqlite_store: Store, sqlite_store_url: str) -> None:
    """Large messages' samples bound the queue too: with the store's write lock held, the
    queue refuses once the samples waiting reach ``max_queued_bytes``, however few."""
    path = sqlite_store_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = VerdictWriter(sqlite_store.verdicts.add_many, max_queued_bytes=3 * 1024 * 1024)
    big = b"x" * (1024 * 1024)
    try:
        writer.submit(verdict_record("b0"), big)
        assert _wait(lambda: writer.pending() == 1 and writer.queued() == 0)  # waits for the lock
        for vid in ("b1", "b2", "b3"):
            writer.submit(verdict_record(vid), big)
        assert writer.refusal() is not None and "bytes of samples" in str(writer.refusal())
        with pytest.raises(StoreError):
            writer.submit(verdict_record("b4"), None)
        other.execute("ROLLBACK")
        assert writer.flush(30)
        assert writer.refusal() is None
        assert all(sqlite_store.verdicts.get(v) is not None for v in ("b0", "b1", "b2", "b3"))
    finally:
        other.close()
        writer.close(10)


def test_close_writes_what_is_queued(sqlite_store_url: str) -> None:
    store = open_store(sqlite_store_url)
    writer = VerdictWriter(store.verdicts.add_many)
    vids = [uuid.uuid4().hex for _ in range(500)]
    for vid in vids:
        writer.submit(verdict_record(vid), b"x" * 2000)
    writer.close(30)
    with pytest.raises(StoreError):  # closed: nothing more is taken
        writer.submit(verdict_record("late"), None)
    store.close()
    other = open_store(sqlite_store_url)
    try:
        assert all(other.verdicts.get(v) is not None for v in vids)
    finally:
        other.close()


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(5432).start()
    yield proxy
    proxy.kill()


def test_postgresql_outage_refuses_new_records_and_loses_none_queued(
    pg_proxy: TcpProxy, pg_store_url: str
) -> None:
    store = open_store(pg_store_url.replace("127.0.0.1:5432", f"127.0.0.1:{pg_proxy.port}"))
    writer = VerdictWriter(store.verdicts.add_many, retry_initial=0.05, retry_max=0.5)
    try:
        writer.submit(verdict_record("before"), b"before")
        assert writer.flush(30)
        pg_proxy.kill()
        writer.submit(verdict_record("during"), b"during")  # the store's loss is not known yet
        assert _wait(lambda: writer.refusal() is not None)
        assert "down" in (writer.refusal() or "")
        with pytest.raises(StoreError):
            writer.submit(verdict_record("refused"), None)
        pg_proxy.restore()
        assert writer.flush(60)
        assert writer.refusal() is None
        writer.submit(verdict_record("after"), None)
        assert writer.flush(30)
        for vid in ("before", "during", "after"):
            assert store.verdicts.get(vid) is not None
        assert store.verdicts.sample("during") == b"during"
        assert store.verdicts.get("refused") is None
    finally:
        writer.close(10)
        store.close()


def test_every_message_answered_250_has_its_verdict_once_the_filter_stopped(
    filter_factory: Any, smtp_sink: Any, tmp_path: Path, test_settings: Any, small_model_dir: Path
) -> None:
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    url = f"sqlite:///{tmp_path / 'verdicts.db'}"
    store = open_store(url)
    scorer = Scorer(SpamModel.load(small_model_dir), load_rules(test_settings), test_settings)
    service = ScoringService(test_settings, scorer=scorer, store=store)
    try:
        srv = filter_factory(smtp_sink, service=service)
        assert srv.verdict_writer is not None
        n = 40
        accepted = 0
        c = client(srv.port)
        try:
            for i in range(n):
                msg = (
                    f"From: alice@example.org\r\nTo: bob@mailsift.test\r\n"
                    f"Subject: notes {i}\r\nMessage-ID: <w{i}@example.org>\r\n\r\n"
                    "The minutes of the meeting are attached.\r\n"
                )
                try:
                    c.sendmail("alice@example.org", ["bob@mailsift.test"], msg)
                    accepted += 1
                except smtplib.SMTPDataError as exc:  # a spam reject is no 250
                    assert exc.smtp_code == 550
        finally:
            c.quit()
        assert accepted > 0
        delivered = smtp_sink.wait_for(accepted)
        assert len(delivered) == accepted
        srv.stop()  # the sessions are over: the queued records are written
        stored = store.verdicts.recent(limit=1000)
        assert len(stored) == n  # every scored message, answered 250 or 550
        assert all(v.recipients == ("bob@mailsift.test",) for v in stored)
        assert all(store.verdicts.sample(v.verdict_id) for v in stored)
    finally:
        store.close()
