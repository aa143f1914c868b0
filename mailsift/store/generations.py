"""``SqlGenerationRepo``: the serving model's generation shared by every node on a store
(table of migration 0006), the same SQL on SQLite and PostgreSQL, reached as
``store.generations``. ``mailsift.api.reload`` writes a new one on every reload and every
process polls it (see there)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore


@runtime_checkable
class GenerationRepo(Protocol):
    def get(self, name: str) -> str | None:
        """The current generation of ``name`` (None: never set)."""

    def set(self, name: str, generation: str) -> None:
        """Make ``generation`` the current one of ``name``."""


class SqlGenerationRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def get(self, name: str) -> str | None:
        row = self.db.query_one("SELECT generation FROM model_generation WHERE name = ?", (name,))
        return str(row["generation"]) if row else None

    def set(self, name: str, generation: str) -> None:
        self.db.execute(
            "INSERT INTO model_generation (name, generation, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, "
            "updated = excluded.updated",
            (name, generation, time.time()),
        )
