"""Verdict writes: group commit outcomes, atomicity of a verdict with its sample, and (on
PostgreSQL) the writer's own connection. Run on SQLite and on PostgreSQL (real databases)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from mailsift.store import Store, StoreError, StoreUnavailable, open_store
from tests.store.helpers import run_in_threads, verdict_record


def _add_concurrently(
    store: Store, vids: list[str], sample: bool = True
) -> dict[str, BaseException | None]:
    """Every verdict added from its own thread, all released at once (they share commits)."""
    outcome: dict[str, BaseException | None] = {}
    start = threading.Barrier(len(vids))

    def add(vid: str) -> None:
        start.wait()
        try:
            store.verdicts.add(
                verdict_record(vid), sample=b"raw " + vid.encode() if sample else None
            )
            outcome[vid] = None
        except Exception as exc:
            outcome[vid] = exc

    run_in_threads(add, [(v,) for v in vids])
    return outcome


def _fail_samples_trigger(store: Store, store_url: str, prefix: str) -> None:
    """A trigger that makes inserting the sample of a verdict whose id starts with
    ``prefix`` fail (the verdict row itself is fine)."""
    if store_url.startswith("sqlite"):
        store.execute(
            "CREATE TRIGGER fail_samples BEFORE INSERT ON verdict_samples"
            f" WHEN NEW.verdict_id LIKE '{prefix}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    else:
        store.execute(
            "CREATE FUNCTION fail_samples() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.verdict_id LIKE '{prefix}%' THEN RAISE EXCEPTION 'refused'; END IF;"
            " RETURN NEW; END $$"
        )
        store.execute(
            "CREATE TRIGGER fail_samples BEFORE INSERT ON verdict_samples"
            " FOR EACH ROW EXECUTE FUNCTION fail_samples()"
        )


def test_concurrent_adds_are_all_committed_and_visible_elsewhere(
    store: Store, store_url: str
) -> None:
    vids = [f"c{i}" for i in range(24)]
    outcome = _add_concurrently(store, vids)
    assert outcome == dict.fromkeys(vids)
    nosample = [f"n{i}" for i in range(6)]
    assert _add_concurrently(store, nosample, sample=False) == dict.fromkeys(nosample)
    other = open_store(store_url)  # another store: its own connections
    try:
        for vid in vids:
            got = other.verdicts.get(vid)
            assert got is not None and got.rules == [("HTML_MESSAGE", 0.5), ("BAYES_99", 3.5)]
            assert got.recipients == ("bob@example.org",) and got.action == "spam"
            assert other.verdicts.sample(vid) == b"raw " + vid.encode()
        for vid in nosample:
            assert other.verdicts.get(vid) is not None
            assert other.verdicts.sample(vid) is None
        n = other.query_one("SELECT COUNT(*) AS n FROM verdict_samples")
        assert n is not None and n["n"] == len(vids)
    finally:
        other.close()


def test_a_failing_sample_fails_its_own_verdict_atomically(store: Store, store_url: str) -> None:
    """The verdict and its sample are written together: when the sample cannot be written,
    that call fails and its verdict row is not there either; its neighbours are written."""
    _fail_samples_trigger(store, store_url, "bad")
    vids = [f"ok{i}" for i in range(10)] + ["bad1", "bad2"]
    outcome = _add_concurrently(store, vids)
    assert {v for v, e in outcome.items() if e is not None} == {"bad1", "bad2"}
    assert all("refused" in str(outcome[v]) for v in ("bad1", "bad2"))
    for vid in vids:
        committed = not vid.startswith("bad")
        assert (store.verdicts.get(vid) is not None) is committed
        assert (store.verdicts.sample(vid) is not None) is committed


def test_when_every_write_fails_every_call_fails(store: Store, store_url: str) -> None:
    """No call of a failed group returns as if written, and nothing of it is committed."""
    _fail_samples_trigger(store, store_url, "")
    vids = [f"f{i}" for i in range(12)]
    outcome = _add_concurrently(store, vids)
    assert set(outcome) == set(vids)
    assert all(e is not None and "refused" in str(e) for e in outcome.values())
    assert sum(store.verdicts.count_by_action().values()) == 0
    # writes without a sample still work
    assert _add_concurrently(store, ["plain"], sample=False) == {"plain": None}


def test_writer_connection_recovers_from_a_dropped_connection(pg_store_url: str) -> None:
    store = open_store(pg_store_url)
    try:
        store.verdicts.add(verdict_record("before"))
        writer = store._writer_tx  # type: ignore[attr-defined]
        assert writer is not None
        with psycopg.connect(pg_store_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [writer.conn.info.backend_pid])
        try:  # the first write may meet the dead connection: an error, never a silent loss
            store.verdicts.add(verdict_record("during"))
            assert store.verdicts.get("during") is not None
        except StoreUnavailable:
            assert store.verdicts.get("during") is None
        vid = uuid.uuid4().hex
        store.verdicts.add(verdict_record(vid))
        assert store.verdicts.get(vid) is not None
        assert store._writer_tx is not writer  # type: ignore[attr-defined]
    finally:
        store.close()
    with pytest.raises(StoreError):
        store.verdicts.add(verdict_record("after-close"))


def test_add_many_commits_all_or_none(store: Store, store_url: str) -> None:
    """``add_many`` is one transaction: every verdict and sample, or none when one fails."""
    store.verdicts.add_many([(verdict_record(f"m{i}"), b"raw m%d" % i) for i in range(5)])
    store.verdicts.add_many([(verdict_record("nosample"), None)])
    for i in range(5):
        assert store.verdicts.get(f"m{i}") is not None
        assert store.verdicts.sample(f"m{i}") == b"raw m%d" % i
    assert store.verdicts.sample("nosample") is None
    _fail_samples_trigger(store, store_url, "bad")
    with pytest.raises(Exception, match="refused"):
        store.verdicts.add_many([(verdict_record("g1"), b"g1"), (verdict_record("bad1"), b"bad1")])
    assert store.verdicts.get("g1") is None and store.verdicts.get("bad1") is None
