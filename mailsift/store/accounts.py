"""``SqlAccountRepo``: the mail accounts (tables of migration 0008), the same SQL on SQLite
and PostgreSQL, reached as ``store.accounts``.

An account is a login (a lower-case address), an argon2id hash of its password, a
``disabled`` and an ``admin`` flag and an optional expiry. Hashing, verifying and what the
flags mean is ``mailsift.smtpd.accounts``'s business; this module only keeps the rows, and
records the one import of a former accounts JSON file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mailsift.store.base import Row

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore


@dataclass(slots=True)
class Account:
    name: str
    password_hash: str
    disabled: bool = False
    admin: bool = False
    expires: float | None = None  # epoch seconds; after it the account is "old"
    created: float = 0.0

    def active(self, now: float | None = None) -> bool:
        if self.disabled:
            return False
        return self.expires is None or (now if now is not None else time.time()) < self.expires


UPDATABLE = ("password_hash", "disabled", "admin", "expires")


@runtime_checkable
class AccountRepo(Protocol):
    def add(self, account: Account) -> bool:
        """Store a new account; False when one of that name exists."""

    def get(self, name: str) -> Account | None: ...

    def update(self, name: str, **fields: Any) -> Account | None:
        """Change ``fields`` (of ``UPDATABLE``); the account afterwards, None if unknown."""

    def list(self) -> list[Account]:
        """Every account, by name."""

    def count(self) -> int: ...

    def import_once(self, source: str, accounts: Sequence[Account]) -> int | None:
        """Add ``accounts`` (keeping any existing account of the same name) and record the
        import, unless this store imported accounts before: then nothing (None). Returns how
        many were added. Atomic across processes: one import, ever."""


_COLS = "name, password_hash, disabled, admin, expires, created"


def _account(row: Row) -> Account:
    return Account(
        name=row["name"],
        password_hash=row["password_hash"],
        disabled=bool(row["disabled"]),
        admin=bool(row["admin"]),
        expires=None if row["expires"] is None else float(row["expires"]),
        created=float(row["created"]),
    )


class SqlAccountRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def add(self, account: Account) -> bool:
        n = self.db.execute(
            f"INSERT INTO accounts ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            [
                account.name,
                account.password_hash,
                int(account.disabled),
                int(account.admin),
                account.expires,
                account.created,
            ],
        )
        return n > 0

    def get(self, name: str) -> Account | None:
        row = self.db.query_one(f"SELECT {_COLS} FROM accounts WHERE name = ?", [name])
        return _account(row) if row else None

    def update(self, name: str, **fields: Any) -> Account | None:
        bad = set(fields) - set(UPDATABLE)
        if bad:
            raise ValueError(f"not updatable: {sorted(bad)}")
        values = [int(v) if k in ("disabled", "admin") else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.db.transaction():
            if fields:
                self.db.execute(f"UPDATE accounts SET {sets} WHERE name = ?", [*values, name])
            return self.get(name)

    def list(self) -> list[Account]:
        return [_account(r) for r in self.db.query(f"SELECT {_COLS} FROM accounts ORDER BY name")]

    def count(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM accounts")
        return int(row["n"]) if row else 0

    def import_once(self, source: str, accounts: Sequence[Account]) -> int | None:
        with self.db.transaction() as tx:
            self.db.lock("accounts_import")
            if tx.query_one("SELECT 1 AS x FROM accounts_imports"):
                return None
            added = sum(1 for a in accounts if self.add(a))
            tx.execute(
                "INSERT INTO accounts_imports (source, imported, accounts) VALUES (?, ?, ?)",
                [source, time.time(), added],
            )
            return added
