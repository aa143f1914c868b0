"""The quarantine's table: its records, its query, and ``SqlQuarantineRepo`` (the same SQL on
SQLite and PostgreSQL; tables of migration 0004), reached as ``store.quarantine``.

One row per held message: what it is (verdict id, envelope, subject, score, the verdict's
reasons, size, digest), when it expires and what became of it (``status``: held, releasing,
released, deleted; who released or deleted it, the last reviewer's label, the last delivery
error). The raw message itself is not here: it lives in the quarantine's spool
(``mailsift.quarantine.held``). ``recipients`` and ``reasons`` are JSON text; times are
epoch seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mailsift.store.base import Row

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore

# Entry states.
HELD = "held"
RELEASING = "releasing"
RELEASED = "released"
DELETED = "deleted"
STATUSES = (HELD, RELEASING, RELEASED, DELETED)

SORT_KEYS = ("created", "score", "sender", "subject", "expires")


class QuarantineError(Exception):
    """An action could not be done; ``status`` is the HTTP-ish status for callers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class QuarantineEntry:
    id: str
    verdict_id: str
    sender: str
    recipients: list[str]
    subject: str
    from_header: str
    score: float
    probability: float
    action: str
    reasons: dict[str, Any]  # {"reason", "rules": [...], "tokens": [...], "model_version"}
    size: int
    digest: str
    created: float  # unix time
    expires: float
    status: str = HELD
    released_at: float | None = None
    released_by: str | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None
    label: str | None = None  # the last reviewer's label ("spam"/"ham")
    last_error: str | None = None

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list(self.reasons.get("rules", []))

    @property
    def tokens(self) -> list[dict[str, Any]]:
        return list(self.reasons.get("tokens", []))

    def visible_to(self, user: str) -> bool:
        u = user.lower()
        return any(r.lower() == u for r in self.recipients)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class QuarantineQuery:
    """Filters and sort for ``Quarantine.list``; every field optional."""

    user: str | None = None  # only entries whose recipients include this address
    recipient: str | None = None  # substring of a recipient
    sender: str | None = None  # substring of the envelope sender or From header
    subject: str | None = None  # substring
    min_score: float | None = None
    max_score: float | None = None
    since: float | None = None  # unix time, created >= since
    until: float | None = None  # created < until
    statuses: tuple[str, ...] = (HELD, RELEASING)  # empty: these two, what awaits review
    sort: str = "created"
    descending: bool = True
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if not self.statuses:
            self.statuses = (HELD, RELEASING)
        if self.sort not in SORT_KEYS:
            raise QuarantineError(f"sort must be one of {', '.join(SORT_KEYS)}")
        bad = [s for s in self.statuses if s not in STATUSES]
        if bad:
            raise QuarantineError(f"unknown status {bad[0]!r}")
        self.limit = max(1, min(int(self.limit), 1000))
        self.offset = max(0, int(self.offset))


@runtime_checkable
class QuarantineRepo(Protocol):
    """The ``quarantine`` table."""

    def add(self, entry: QuarantineEntry) -> None: ...

    def get(self, qid: str) -> QuarantineEntry | None: ...

    def query(self, q: QuarantineQuery) -> tuple[list[QuarantineEntry], int]:
        """One page of the entries matching ``q`` and how many match in all."""

    def transition(
        self, qid: str, from_statuses: Sequence[str], to_status: str, **fields: Any
    ) -> bool:
        """Move the entry to ``to_status`` (setting ``fields``) only if its status is one of
        ``from_statuses``; True when this call made the move (one caller wins a race)."""

    def update(self, qid: str, **fields: Any) -> None: ...

    def expired(self, now: float, limit: int = 1000) -> list[str]:
        """Ids of entries whose expiry is ``now`` or earlier, oldest first."""

    def remove(self, qid: str) -> bool: ...

    def counts(self) -> dict[str, int]:
        """Entries per status."""


_COLUMNS = tuple(QuarantineEntry.__dataclass_fields__)
_JSON_COLUMNS = ("recipients", "reasons")
_UPDATABLE = frozenset(_COLUMNS) - {"id"}


class SqlQuarantineRepo:
    """The ``quarantine`` table through the store's connection (``?`` placeholders,
    epoch-float times, JSON as text)."""

    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def add(self, entry: QuarantineEntry) -> None:
        row = _to_row(entry)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO quarantine ({cols}) VALUES ({marks})", list(row.values()))

    def get(self, qid: str) -> QuarantineEntry | None:
        row = self.db.query_one("SELECT * FROM quarantine WHERE id = ?", (qid,))
        return entry_from_row(row) if row else None

    def query(self, q: QuarantineQuery) -> tuple[list[QuarantineEntry], int]:
        where: list[str] = []
        params: list[Any] = []
        if q.statuses:
            where.append(f"status IN ({', '.join('?' for _ in q.statuses)})")
            params.extend(q.statuses)
        if q.user:
            # recipients is a JSON list of lower-case addresses: match one element exactly
            where.append("recipients LIKE ? ESCAPE '\\'")
            params.append('%"' + _like_escape(q.user.lower()) + '"%')
        if q.recipient:
            where.append("recipients LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(q.recipient.lower()) + "%")
        if q.sender:
            where.append(
                "(LOWER(sender) LIKE ? ESCAPE '\\' OR LOWER(from_header) LIKE ? ESCAPE '\\')"
            )
            pat = "%" + _like_escape(q.sender.lower()) + "%"
            params.extend((pat, pat))
        if q.subject:
            where.append("LOWER(subject) LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(q.subject.lower()) + "%")
        for col, op, val in (
            ("score", ">=", q.min_score),
            ("score", "<=", q.max_score),
            ("created", ">=", q.since),
            ("created", "<", q.until),
        ):
            if val is not None:
                where.append(f"{col} {op} ?")
                params.append(float(val))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total_row = self.db.query_one(f"SELECT COUNT(*) AS n FROM quarantine{clause}", params)
        total = int(total_row["n"]) if total_row else 0
        order = f"{q.sort} {'DESC' if q.descending else 'ASC'}, id ASC"
        rows = self.db.query(
            f"SELECT * FROM quarantine{clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, q.limit, q.offset],
        )
        return [entry_from_row(r) for r in rows], total

    def transition(
        self, qid: str, from_statuses: Sequence[str], to_status: str, **fields: Any
    ) -> bool:
        sets, params = _sets({"status": to_status, **fields})
        marks = ", ".join("?" for _ in from_statuses)
        n = self.db.execute(
            f"UPDATE quarantine SET {sets} WHERE id = ? AND status IN ({marks})",
            [*params, qid, *from_statuses],
        )
        return int(n) == 1

    def update(self, qid: str, **fields: Any) -> None:
        sets, params = _sets(fields)
        self.db.execute(f"UPDATE quarantine SET {sets} WHERE id = ?", [*params, qid])

    def expired(self, now: float, limit: int = 1000) -> list[str]:
        rows = self.db.query(
            "SELECT id FROM quarantine WHERE expires <= ? ORDER BY expires LIMIT ?", (now, limit)
        )
        return [r["id"] for r in rows]

    def remove(self, qid: str) -> bool:
        return int(self.db.execute("DELETE FROM quarantine WHERE id = ?", (qid,))) == 1

    def counts(self) -> dict[str, int]:
        rows = self.db.query("SELECT status, COUNT(*) AS n FROM quarantine GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _to_row(entry: QuarantineEntry) -> dict[str, Any]:
    row = asdict(entry)
    for c in _JSON_COLUMNS:
        row[c] = json.dumps(row[c], separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return row


def _sets(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    bad = set(fields) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    params = [
        json.dumps(v, ensure_ascii=False) if k in _JSON_COLUMNS else v for k, v in fields.items()
    ]
    return ", ".join(f"{k} = ?" for k in fields), params


def entry_from_row(row: Row) -> QuarantineEntry:
    d = dict(row)
    d["recipients"] = _loads(d.get("recipients"), [])
    d["reasons"] = _loads(d.get("reasons"), {})
    fields: dict[str, Any] = {k: d.get(k) for k in _COLUMNS}
    for k in ("score", "probability", "created", "expires"):
        fields[k] = float(fields[k] or 0.0)
    fields["size"] = int(fields["size"] or 0)
    return QuarantineEntry(**fields)


def _loads(v: Any, default: Any) -> Any:
    if v is None:
        return default
    if isinstance(v, list | dict):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return default
