"""One contract for every store backend: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from mailsift.store import ListEntry, Store, StoreError, VerdictRecord, open_store
from mailsift.store.base import FeedbackRecord, WebSession
from mailsift.store.migrations import discover, split_statements
from tests.store.helpers import run_in_threads


def _verdict(vid: str, digest: str = "d" * 64, action: str = "ham", **kw) -> VerdictRecord:
    return VerdictRecord(
        verdict_id=vid,
        digest=digest,
        score=kw.pop("score", 1.5),
        probability=0.2,
        action=action,
        model_version="m1",
        **kw,
    )


def test_migrations_applied_once(store: Store, store_url: str) -> None:
    versions = [m.version for m in discover()]
    assert store.applied_migrations() == versions
    assert 1 in versions
    # opening again applies nothing new and keeps the data
    store.verdicts.add(_verdict("keep"))
    again = open_store(store_url)
    try:
        assert again.applied_migrations() == versions
        assert again.migrate() == []
        assert again.verdicts.get("keep") is not None
    finally:
        again.close()


def test_verdict_roundtrip(store: Store) -> None:
    rec = _verdict(
        "v1",
        recipients=("alice@example.com", "bob@example.com"),
        sender="spammer@bad.test",
        client_ip="192.0.2.7",
        rules=[("GTUBE", 1000.0), ("HTML_ONLY", 0.5)],
        list_decision="block",
        reason="sender on block list",
    )
    store.verdicts.add(rec, sample=b"Subject: hi\r\n\r\nbody\r\n")
    got = store.verdicts.get("v1")
    assert got is not None
    assert got.recipients == ("alice@example.com", "bob@example.com")
    assert got.rules == [("GTUBE", 1000.0), ("HTML_ONLY", 0.5)]
    assert got.list_decision == "block" and got.reason == "sender on block list"
    assert got.score == pytest.approx(1.5) and got.model_version == "m1"
    assert abs(got.created - rec.created) < 1e-3
    assert store.verdicts.sample("v1") == b"Subject: hi\r\n\r\nbody\r\n"
    assert store.verdicts.get("nope") is None
    assert store.verdicts.sample("nope") is None


def test_verdict_duplicate_id_is_an_error(store: Store) -> None:
    store.verdicts.add(_verdict("dup"))
    with pytest.raises(Exception):
        store.verdicts.add(_verdict("dup"))
    assert store.verdicts.get("dup") is not None


def test_verdict_queries_and_purge(store: Store) -> None:
    now = time.time()
    store.verdicts.add(_verdict("old", created=now - 1000, action="spam"), sample=b"x")
    store.verdicts.add(_verdict("new1", digest="e" * 64, created=now, action="ham"), sample=b"y")
    store.verdicts.add(_verdict("new2", digest="e" * 64, created=now + 1, action="hold"))
    assert [v.verdict_id for v in store.verdicts.by_digest("e" * 64)] == ["new2", "new1"]
    assert [v.verdict_id for v in store.verdicts.recent(limit=2)] == ["new2", "new1"]
    assert [v.verdict_id for v in store.verdicts.recent(action="spam")] == ["old"]
    assert store.verdicts.count_by_action() == {"spam": 1, "ham": 1, "hold": 1}
    assert store.verdicts.count_by_action(since=now - 1) == {"ham": 1, "hold": 1}
    assert store.verdicts.purge_samples(now - 10) == 1
    assert store.verdicts.sample("old") is None and store.verdicts.sample("new1") == b"y"
    assert store.verdicts.purge(now - 10) == 1
    assert store.verdicts.get("old") is None and store.verdicts.get("new1") is not None


def test_feedback_records_and_counts(store: Store) -> None:
    now = time.time()
    ids = [
        store.feedback.add(FeedbackRecord("spam", "alice", "a" * 64, created=now)),
        store.feedback.add(FeedbackRecord("spam", "alice", "b" * 64, source="trap", created=now)),
        store.feedback.add(FeedbackRecord("ham", "bob", "c" * 64, created=now - 7200)),
        store.feedback.add(
            FeedbackRecord("ham", "alice", "d" * 64, created=now, status="rate_limited")
        ),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert store.feedback.count_since(now - 3600) == 2
    assert store.feedback.count_since(now - 3600, user="alice") == 2
    assert store.feedback.count_since(now - 3600, source="trap") == 1
    assert store.feedback.count_since(now - 86400, user="bob") == 1
    store.feedback.set_status(ids[0], "learned")
    recent = store.feedback.recent(user="alice")
    assert [r.feedback_id for r in recent] == [ids[3], ids[1], ids[0]]
    assert recent[-1].status == "learned" and recent[1].source == "trap"


def test_teach_dedupes_and_relabels(store: Store) -> None:
    d = "f" * 64
    assert store.feedback.learned(d) is None
    status, ev = store.feedback.teach(d, "spam", 1.0)
    assert status == "learned" and ev is not None and ev.unlearn is None
    assert store.feedback.teach(d, "spam", 1.0) == ("duplicate", None)
    status, ev2 = store.feedback.teach(d, "ham", 1.0)
    assert status == "relabelled" and ev2 is not None
    assert ev2.unlearn == "spam" and ev2.label == "ham" and ev2.event_id > ev.event_id
    state = store.feedback.learned(d)
    assert state is not None and state.label == "ham"
    assert [e.event_id for e in store.feedback.events_after(0)] == [ev.event_id, ev2.event_id]
    assert store.feedback.events_after(ev2.event_id) == []
    assert store.feedback.last_event_id() == ev2.event_id


def test_teach_is_atomic_across_threads(store: Store) -> None:
    """Mass reports of one message from many threads at once: learned exactly once."""
    results: list[str] = []
    lock = threading.Lock()

    def report() -> None:
        status, _ = store.feedback.teach("9" * 64, "spam", 1.0)
        with lock:
            results.append(status)

    run_in_threads(report, [()] * 8)
    assert sorted(results) == ["duplicate"] * 7 + ["learned"]
    assert len(store.feedback.events_after(0)) == 1


def test_feedback_messages_and_training_set(store: Store) -> None:
    store.feedback.keep_message("1" * 64, b"raw one")
    store.feedback.keep_message("1" * 64, b"raw one")  # idempotent
    store.feedback.keep_message("2" * 64, b"raw two")
    store.feedback.teach("1" * 64, "spam", 1.0)
    store.feedback.teach("2" * 64, "spam", 1.0)
    store.feedback.teach("2" * 64, "ham", 1.0)
    assert store.feedback.message("1" * 64) == b"raw one"
    assert store.feedback.message("3" * 64) is None
    assert sorted(store.feedback.training_set()) == [
        ("1" * 64, "spam", b"raw one"),
        ("2" * 64, "ham", b"raw two"),
    ]


def test_retrain_records(store: Store) -> None:
    assert store.feedback.retrain_event_id("v9") is None
    store.feedback.record_retrain("v9", 12, True, {"auc": 0.99})
    assert store.feedback.retrain_event_id("v9") == 12


def test_lists(store: Store) -> None:
    v0 = store.lists.version()
    assert store.lists.add(ListEntry("trusted", "Friend@Example.COM", owner="Alice@x.test"))
    assert not store.lists.add(ListEntry("trusted", "friend@example.com", owner="alice@x.test"))
    assert store.lists.add(ListEntry("block", "@spam.test", added_by="admin"))
    assert store.lists.add(ListEntry("allow", "192.0.2.0/24"))
    v1 = store.lists.version()
    assert v1 > v0
    trusted = store.lists.entries(kind="trusted")
    assert [(e.pattern, e.owner) for e in trusted] == [("friend@example.com", "alice@x.test")]
    block = store.lists.entries(kind="block")
    assert (
        block[0].pattern == "*@spam.test" and block[0].owner == "" and block[0].added_by == "admin"
    )
    assert len(store.lists.entries()) == 3
    assert store.lists.entries(owner="ALICE@x.test") == trusted
    assert store.lists.remove("block", "*@spam.test")
    assert not store.lists.remove("block", "*@spam.test")
    assert store.lists.version() > v1
    with pytest.raises(ValueError):
        store.lists.add(ListEntry("grey", "x@y"))


def test_audit(store: Store) -> None:
    store.audit.record("alice", "feedback", "v1", {"label": "spam"})
    store.audit.record("admin", "lists.add", "block:*@spam.test")
    events = store.audit.recent()
    assert [e.action for e in events] == ["lists.add", "feedback"]
    assert events[1].detail == {"label": "spam"} and events[1].target == "v1"
    assert [e.actor for e in store.audit.recent(actor="alice")] == ["alice"]
    assert store.audit.recent(action="lists.add")[0].actor == "admin"


def test_generic_queries_and_transactions(store: Store) -> None:
    store.execute("CREATE TABLE t_generic (k TEXT PRIMARY KEY, v INTEGER, note TEXT)")
    assert (
        store.execute("INSERT INTO t_generic (k, v, note) VALUES (?, ?, ?)", ["a", 1, "50%"]) == 1
    )
    assert store.query("SELECT v FROM t_generic WHERE k = ? AND note = '50%'", ["a"]) == [{"v": 1}]
    assert store.query_one("SELECT 'what?' AS q, ? AS p", ["x"]) == {"q": "what?", "p": "x"}
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.execute("INSERT INTO t_generic (k, v) VALUES (?, ?)", ["b", 2])
            store.execute("INSERT INTO t_generic (k, v) VALUES (?, ?)", ["c", 3])  # joins
            raise RuntimeError("boom")
    assert [r["k"] for r in store.query("SELECT k FROM t_generic ORDER BY k")] == ["a"]
    with store.transaction():
        store.lock("anything")
        store.execute("INSERT INTO t_generic (k, v) VALUES (?, ?)", ["b", 2])
    assert store.query_one("SELECT COUNT(*) AS n FROM t_generic")["n"] == 2
    with pytest.raises(StoreError):
        store.lock("outside a transaction")
    assert store.ping()


def test_concurrent_writers(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                store.verdicts.add(_verdict(f"w{n}-{i}"))
                store.audit.record(f"w{n}", "x")
        except BaseException as exc:
            errors.append(exc)

    run_in_threads(writer, [(n,) for n in range(4)])
    assert errors == []
    assert sum(store.verdicts.count_by_action().values()) == 80


def test_bad_urls() -> None:
    with pytest.raises(StoreError):
        open_store("mysql://x")
    with pytest.raises(StoreError):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")


def test_split_statements() -> None:
    script = "-- c\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nINSERT INTO a VALUES ('1;2');\n"
    assert split_statements(script) == [
        "-- c\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('1;2');",
    ]


def test_concurrent_opens_migrate_once(store_url: str) -> None:
    """Several processes opening a fresh store at once (API workers): each migration once."""
    import subprocess
    import sys

    code = "import sys; from mailsift.store import open_store; open_store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    s = open_store(store_url)
    try:
        rows = s.query("SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version")
        assert {r["version"] for r in rows} == {m.version for m in discover()}
        assert all(r["n"] == 1 for r in rows)
    finally:
        s.close()


def test_group_commit_each_caller_gets_its_own_outcome(store: Store) -> None:
    """Concurrent verdicts share commits; each add returns once its own row is readable, and
    a bad row (a duplicate id) fails its own call only."""
    store.verdicts.add(_verdict("g-dup"))
    errors: dict[str, BaseException] = {}
    missing: list[str] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(15):
            vid = "g-dup" if (n, i) == (3, 7) else f"g{n}-{i}"
            try:
                store.verdicts.add(_verdict(vid), sample=b"raw %d" % i)
            except Exception as exc:
                errors[vid] = exc
                continue
            if store.verdicts.get(vid) is None or store.verdicts.sample(vid) != b"raw %d" % i:
                missing.append(vid)

    run_in_threads(writer, [(n,) for n in range(8)])
    assert list(errors) == ["g-dup"]
    assert missing == []
    assert sum(store.verdicts.count_by_action().values()) == 8 * 15


def test_verdict_add_joins_an_open_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.verdicts.add(_verdict("tx-1"), sample=b"x")
            raise RuntimeError("roll back")
    assert store.verdicts.get("tx-1") is None
    with store.transaction():
        store.verdicts.add(_verdict("tx-2"))
    assert store.verdicts.get("tx-2") is not None


def test_web_sessions(store: Store) -> None:
    now = time.time()
    a1 = WebSession("a" * 64, "alice@x.test", "csrf-a1", "cred-1", now, now + 60, "192.0.2.1")
    a2 = WebSession("b" * 64, "alice@x.test", "csrf-a2", "cred-1", now, now + 60)
    b1 = WebSession("c" * 64, "bob@x.test", "csrf-b1", "cred-2", now, now + 60)
    old = WebSession("d" * 64, "bob@x.test", "csrf-old", "cred-2", now - 120, now - 60)
    for s in (a1, a2, b1, old):
        store.sessions.create(s)
    assert store.sessions.get("a" * 64) == a1
    assert store.sessions.get("d" * 64) is None  # expired: gone even before a purge
    assert store.sessions.get("a" * 64, now=now + 61) is None
    with pytest.raises(Exception):
        store.sessions.create(a1)
    assert store.sessions.delete("a" * 64) is True
    assert store.sessions.delete("a" * 64) is False
    assert store.sessions.get("a" * 64) is None and store.sessions.get("b" * 64) == a2
    assert store.sessions.delete_user("alice@x.test") == 1
    assert store.sessions.get("b" * 64) is None and store.sessions.get("c" * 64) == b1
    assert store.sessions.purge() == 1  # the expired one
    assert store.sessions.get("c" * 64) == b1


def test_login_failures(store: Store) -> None:
    now = time.time()
    for ip, user, when in (
        ("192.0.2.1", "alice", now),
        ("192.0.2.1", "alice", now - 10),
        ("192.0.2.1", "bob", now),
        ("192.0.2.2", "alice", now),
        ("192.0.2.2", "carol", now - 1000),
    ):
        store.sessions.record_failure(ip, user, when)
    since = now - 300
    assert store.sessions.failures(since) == 4
    assert store.sessions.failures(since, client_ip="192.0.2.1") == 3
    assert store.sessions.failures(since, user="alice") == 3
    assert store.sessions.failures(since, client_ip="192.0.2.1", user="alice") == 2
    assert store.sessions.failures(now - 5, client_ip="192.0.2.1", user="alice") == 1
    assert store.sessions.clear_failures("192.0.2.1", "alice") == 2
    assert store.sessions.failures(since, user="alice") == 1
    assert store.sessions.purge_failures(since) == 1  # carol's old one
    assert store.sessions.failures(0.0) == 2


def test_model_generation_and_probe(store: Store) -> None:
    assert store.generations.get("serving") is None
    store.generations.set("serving", "g1")
    store.generations.set("serving", "g2")
    assert store.generations.get("serving") == "g2"
    assert store.generations.get("other") is None
    store.probe()
    assert store.ping()
