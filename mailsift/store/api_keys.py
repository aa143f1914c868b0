"""``SqlApiKeyRepo``: the HTTP API's keys (table of migration 0003), the same SQL on SQLite
and PostgreSQL, reached as ``store.api_keys``.

Only the sha256 of each token is stored. Scopes are kept as one space-separated text
column, sorted. What a token looks like, what scopes mean and how tokens are checked is
``mailsift.api.keys``'s business; this module only keeps the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mailsift.store.base import Row

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored."""

    key_id: str
    name: str
    token_sha256: str
    scopes: frozenset[str]
    owner: str = ""
    created: float = 0.0
    revoked: float | None = None


@runtime_checkable
class ApiKeyRepo(Protocol):
    def add(self, key: KeyRecord) -> None:
        """Store a new key (an existing ``key_id`` is an error)."""

    def get(self, key_id: str) -> KeyRecord | None: ...

    def revoke(self, key_id: str, when: float) -> bool:
        """Mark an active key revoked at ``when``; False when there is no such active key."""

    def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        """Keys by creation time (then id); revoked ones only when asked."""


_COLS = "key_id, name, token_sha256, scopes, owner, created, revoked"


def _record(row: Row) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        name=row["name"],
        token_sha256=row["token_sha256"],
        scopes=frozenset(row["scopes"].split()),
        owner=row["owner"] or "",
        created=float(row["created"]),
        revoked=None if row["revoked"] is None else float(row["revoked"]),
    )


class SqlApiKeyRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def add(self, key: KeyRecord) -> None:
        self.db.execute(
            f"INSERT INTO api_keys ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.key_id,
                key.name,
                key.token_sha256,
                " ".join(sorted(key.scopes)),
                key.owner,
                key.created,
                key.revoked,
            ),
        )

    def get(self, key_id: str) -> KeyRecord | None:
        row = self.db.query_one(f"SELECT {_COLS} FROM api_keys WHERE key_id = ?", (key_id,))
        return _record(row) if row else None

    def revoke(self, key_id: str, when: float) -> bool:
        n = self.db.execute(
            "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
            (when, key_id),
        )
        return n > 0

    def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        rows = self.db.query(f"SELECT {_COLS} FROM api_keys{where} ORDER BY created, key_id")
        return [_record(r) for r in rows]
