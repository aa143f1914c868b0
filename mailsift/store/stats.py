"""``SqlStatsRepo``: the dashboard's figures, read from the verdicts and feedback tables in
one bounded query each (the same SQL on SQLite and PostgreSQL), reached as ``store.stats``.

Counts are grouped by time bucket: ``floor(created / size)`` for a bucket ``size`` in
seconds (3600 for hours, 86400 for days), so bucket ``k`` starts at ``k * size`` (UTC).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore

# the rule hits of at most this many recent verdicts are counted
MAX_RULE_ROWS = 20_000


@runtime_checkable
class StatsRepo(Protocol):
    def verdicts_by_bucket(self, since: float, size: float) -> list[tuple[int, str, int]]:
        """(bucket, action, count) of the verdicts since ``since``."""

    def feedback_by_bucket(self, since: float, size: float) -> list[tuple[int, str, int]]:
        """(bucket, label, count) of the reports since ``since``."""

    def feedback_by_status(self, since: float) -> list[tuple[str, int]]:
        """(status, count) of the reports since ``since``."""

    def rule_hits(self, since: float, limit: int = MAX_RULE_ROWS) -> Counter[str]:
        """How many of the latest ``limit`` verdicts since ``since`` hit each rule."""


class SqlStatsRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def _bucket(self, size: float) -> str:
        if self.db.dialect == "postgresql":
            return f"CAST(FLOOR(created / {size:.0f}) AS BIGINT)"
        return f"CAST(created / {size:.0f} AS INTEGER)"

    def _count_by_bucket(
        self, table: str, column: str, since: float, size: float
    ) -> list[tuple[int, str, int]]:
        """(bucket, value of `column`, rows) of `table` since `since`; `table` and `column`
        are names from this module, never input."""
        rows = self.db.query(
            f"SELECT {self._bucket(size)} AS b, {column}, COUNT(*) AS n "
            f"FROM {table} WHERE created >= ? GROUP BY b, {column}",
            (since,),
        )
        return [(int(r["b"]), str(r[column]), int(r["n"])) for r in rows]

    def verdicts_by_bucket(self, since: float, size: float) -> list[tuple[int, str, int]]:
        return self._count_by_bucket("verdicts", "action", since, size)

    def feedback_by_bucket(self, since: float, size: float) -> list[tuple[int, str, int]]:
        return self._count_by_bucket("feedback", "label", since, size)

    def feedback_by_status(self, since: float) -> list[tuple[str, int]]:
        rows = self.db.query(
            "SELECT status, COUNT(*) AS n FROM feedback WHERE created >= ? GROUP BY status",
            (since,),
        )
        return [(str(r["status"]), int(r["n"])) for r in rows]

    def rule_hits(self, since: float, limit: int = MAX_RULE_ROWS) -> Counter[str]:
        rows = self.db.query(
            "SELECT rules FROM verdicts WHERE created >= ? ORDER BY created DESC LIMIT ?",
            (since, limit),
        )
        counts: Counter[str] = Counter()
        for r in rows:
            try:
                hits = json.loads(r["rules"] or "[]")
            except ValueError:
                continue
            for h in hits:
                name = (
                    h[0]
                    if isinstance(h, list | tuple)
                    else h.get("name")
                    if isinstance(h, dict)
                    else h
                )
                if name:
                    counts[str(name)] += 1
        return counts
