"""``store.quarantine``: the quarantine's entries on both backends."""

from __future__ import annotations

import time

from mailsift.store import Store
from mailsift.store.quarantine import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    QuarantineEntry,
    QuarantineQuery,
    QuarantineRepo,
)


def _entry(qid: str, created: float, **kw: object) -> QuarantineEntry:
    fields: dict[str, object] = {
        "id": qid,
        "verdict_id": "v-" + qid[:4],
        "sender": "spammer@bad.example",
        "recipients": ["alice@mailsift.test"],
        "subject": "Cheap meds",
        "from_header": "Spam King <spammer@bad.example>",
        "score": 9.5,
        "probability": 0.95,
        "action": "hold",
        "reasons": {"reason": "spam", "rules": [{"name": "MEDS", "score": 2.5}]},
        "size": 120,
        "digest": "d" * 64,
        "created": created,
        "expires": created + 86400,
    }
    fields.update(kw)
    return QuarantineEntry(**fields)  # type: ignore[arg-type]


def test_entries_roundtrip_and_transitions(store: Store) -> None:
    repo = store.quarantine
    assert isinstance(repo, QuarantineRepo)
    now = time.time()
    a, b = "a" * 32, "b" * 32
    repo.add(_entry(a, now - 10))
    repo.add(_entry(b, now, recipients=["bob@mailsift.test"], subject="100%_off", score=4.0))
    got = repo.get(a)
    assert got is not None and got.reasons["rules"][0]["name"] == "MEDS"
    assert got.recipients == ["alice@mailsift.test"] and got.status == HELD
    assert repo.get("c" * 32) is None

    page, total = repo.query(QuarantineQuery(user="bob@mailsift.test"))
    assert total == 1 and [e.id for e in page] == [b]
    assert repo.query(QuarantineQuery(subject="%_"))[1] == 1  # LIKE wildcards escaped
    assert repo.query(QuarantineQuery(subject="0%_o"))[1] == 1
    page, total = repo.query(QuarantineQuery(sort="score", descending=False, limit=1))
    assert total == 2 and [e.id for e in page] == [b]

    # only one caller wins a transition
    assert repo.transition(a, (HELD,), RELEASING, last_error=None)
    assert not repo.transition(a, (HELD,), RELEASING)
    assert repo.transition(a, (RELEASING,), RELEASED, released_at=now, released_by="admin")
    repo.update(b, label="spam")
    assert repo.get(b).label == "spam"  # type: ignore[union-attr]
    assert repo.counts() == {RELEASED: 1, HELD: 1}
    assert repo.transition(b, (HELD,), DELETED, deleted_at=now, deleted_by="admin")

    assert repo.expired(now + 86400 - 5) == [a]
    assert repo.expired(now + 86400) == [a, b]
    assert repo.remove(a) and not repo.remove(a)
    assert repo.counts() == {DELETED: 1}
