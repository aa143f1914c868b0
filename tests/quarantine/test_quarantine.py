"""Quarantine core on both store backends: durable hold, listing, release exactly once,
delete, purge, audit. The next hop is a real SMTP server on loopback."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mailsift.quarantine import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    Quarantine,
    QuarantineError,
    QuarantineQuery,
)
from tests.quarantine.conftest import (
    NextHop,
    envelope,
    hold_sample,
    make_settings,
    sample_message,
    sample_verdict,
)


def test_hold_is_durable_and_recorded(quarantine: Quarantine, store) -> None:
    raw = sample_message()
    v = sample_verdict()
    qid = quarantine.hold(raw, envelope("spammer@bad.example", "Alice@mailsift.test"), v)
    path = quarantine.files.path(qid)
    assert path.read_bytes() == raw
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert list(quarantine.files.tmp.iterdir()) == []  # nothing half-written left behind
    e = quarantine.get(qid)
    assert e.verdict_id == v.verdict_id
    assert e.recipients == ["alice@mailsift.test"]
    assert e.sender == "spammer@bad.example"
    assert e.subject == "Cheap meds"
    assert e.score == pytest.approx(9.5)
    assert e.status == HELD
    assert e.expires == pytest.approx(e.created + 30 * 86400)
    assert [r["name"] for r in e.rules] == ["MEDS_PITCH", "URGENT_BUY"]
    assert e.tokens[0]["token"] == "body:meds"
    # a second Quarantine over the same store and spool sees it (another process)
    again = Quarantine(quarantine.settings, store)
    assert again.raw(qid) == raw
    assert store.audit.recent(action="quarantine.hold")[0].target == qid


def test_user_sees_only_own_mail_and_filters(quarantine: Quarantine) -> None:
    a = hold_sample(quarantine, "A one", "x@one.example", "alice@mailsift.test", score=6.0)
    b = hold_sample(quarantine, "B two", "y@two.example", "bob@mailsift.test", score=12.0)
    c = hold_sample(
        quarantine, "Both", "z@two.example", "alice@mailsift.test", "bob@mailsift.test", score=8.0
    )
    ids = lambda res: [e.id for e in res[0]]  # noqa: E731
    assert set(ids(quarantine.list(user="alice@mailsift.test"))) == {a, c}
    assert set(ids(quarantine.list(user="bob@mailsift.test"))) == {b, c}
    # a prefix of an address is not that address
    assert ids(quarantine.list(user="alice@mailsift.tes")) == []
    assert ids(
        quarantine.list(query=QuarantineQuery(sender="two.example", sort="score", descending=False))
    ) == [c, b]
    assert ids(quarantine.list(query=QuarantineQuery(min_score=7, max_score=10))) == [c]
    assert quarantine.list(query=QuarantineQuery(subject="%"))[1] == 0  # LIKE escaped
    assert ids(quarantine.list(query=QuarantineQuery(sort="score")))[0] == b
    assert quarantine.list(query=QuarantineQuery(since=time.time() + 60))[1] == 0
    assert quarantine.list(query=QuarantineQuery(limit=2))[1] == 3
    with pytest.raises(QuarantineError):
        QuarantineQuery(sort="id; DROP TABLE quarantine")
    with pytest.raises(QuarantineError) as exc:
        quarantine.get(a, user="bob@mailsift.test")
    assert exc.value.status == 404


def test_release_delivers_once(quarantine: Quarantine, next_hop: NextHop, store) -> None:
    raw = sample_message()
    qid = quarantine.hold(
        raw, envelope("s@bad.example", "alice@mailsift.test", "bob@mailsift.test"), sample_verdict()
    )
    r = quarantine.release(qid, "admin@mailsift.test")
    assert r.ok and r.status == RELEASED and not r.already
    assert len(next_hop.messages) == 1
    got = next_hop.messages[0]
    assert got.mail_from == "s@bad.example"
    assert sorted(got.rcpts) == ["alice@mailsift.test", "bob@mailsift.test"]
    assert b"Subject: Cheap meds" in got.data
    again = quarantine.release(qid, "admin@mailsift.test")
    assert again.already and again.status == RELEASED
    assert len(next_hop.messages) == 1
    e = quarantine.get(qid)
    assert e.released_by == "admin@mailsift.test" and e.released_at
    ev = store.audit.recent(action="quarantine.release")
    assert [(x.actor, x.target) for x in ev] == [("admin@mailsift.test", qid)]


def test_concurrent_releases_deliver_exactly_once(
    quarantine: Quarantine, next_hop: NextHop, store
) -> None:
    qid = quarantine.hold(sample_message(), envelope(), sample_verdict())
    # several reviewers (and processes: separate Quarantine objects) click at once
    qs = [Quarantine(quarantine.settings, store) for _ in range(6)]
    barrier = threading.Barrier(len(qs))
    results = []

    def click(q: Quarantine) -> None:
        barrier.wait()
        results.append(q.release(qid, "someone"))

    threads = [threading.Thread(target=click, args=(q,)) for q in qs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r.ok for r in results)
    assert sum(1 for r in results if not r.already) == 1
    assert len(next_hop.messages) == 1
    assert quarantine.get(qid).status == RELEASED


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_release_with_next_hop_down_keeps_the_message(tmp_path, store, next_hop) -> None:
    down = Quarantine(make_settings(tmp_path, _closed_port()), store)
    raw = sample_message()
    qid = down.hold(raw, envelope(), sample_verdict())
    with pytest.raises(QuarantineError) as exc:
        down.release(qid, "admin")
    assert exc.value.status == 503
    e = down.get(qid)
    assert e.status == HELD and e.last_error
    assert down.raw(qid) == raw
    assert store.audit.recent(action="quarantine.release_failed")[0].target == qid
    # the next hop is back: the same message goes, once
    up = Quarantine(make_settings(tmp_path, next_hop.port), store)
    assert up.release(qid, "admin").status == RELEASED
    assert len(next_hop.messages) == 1


def test_stuck_releasing_is_not_redelivered_without_force(quarantine, next_hop) -> None:
    qid = quarantine.hold(sample_message(), envelope(), sample_verdict())
    # a crash after the 250 but before "released" was recorded leaves "releasing"
    assert quarantine.repo.transition(qid, (HELD,), RELEASING)
    r = quarantine.release(qid, "admin")
    assert r.already and r.status == RELEASING
    assert next_hop.messages == []
    r = quarantine.release(qid, "admin", force=True)
    assert r.status == RELEASED and len(next_hop.messages) == 1


def test_delete_and_purge(quarantine: Quarantine, store) -> None:
    q1 = quarantine.hold(sample_message("one"), envelope(), sample_verdict())
    q2 = quarantine.hold(sample_message("two"), envelope(), sample_verdict())
    q3 = quarantine.hold(sample_message("three"), envelope(), sample_verdict())
    r = quarantine.delete(q1, "alice@mailsift.test")
    assert r.status == DELETED and not quarantine.files.exists(q1)
    assert quarantine.delete(q1, "alice@mailsift.test").already
    with pytest.raises(QuarantineError) as exc:
        quarantine.release(q1, "alice@mailsift.test")
    assert exc.value.status == 409
    assert quarantine.list()[1] == 2  # deleted ones are not in the default listing
    assert quarantine.purge() == 0
    later = time.time() + 31 * 86400
    assert quarantine.purge(now=later) == 3
    assert quarantine.list(query=QuarantineQuery(statuses=(HELD, RELEASED, DELETED)))[1] == 0
    assert not quarantine.files.exists(q2) and not quarantine.files.exists(q3)
    assert store.audit.recent(action="quarantine.purge")[0].detail == {"count": 3}


def test_bulk_reports_each(quarantine: Quarantine, next_hop: NextHop) -> None:
    ids = [quarantine.hold(sample_message(f"m{i}"), envelope(), sample_verdict()) for i in range(3)]
    quarantine.delete(ids[0], "admin")
    res = quarantine.bulk("release", [*ids, ids[1], "0" * 32], "admin")
    assert [r.ok for r in res.results] == [False, True, True, False]
    assert res.ok == 2 and res.failed == 2
    assert len(next_hop.messages) == 2


def test_bad_ids_are_refused(quarantine: Quarantine) -> None:
    for bad in ("../../etc/passwd", "", "Z" * 32, "0" * 31):
        with pytest.raises(QuarantineError):
            quarantine.get(bad)
        with pytest.raises(QuarantineError):
            quarantine.files.path(bad)
