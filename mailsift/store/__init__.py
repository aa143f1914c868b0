"""The store: verdicts, feedback, sender lists and audit trail, on SQLite or PostgreSQL.

``open_store(url)`` picks the backend from the URL and applies pending schema migrations:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
- ``postgresql://user@host:port/dbname`` (also ``postgres://``; any libpq URL)

Interfaces are in ``mailsift.store.base``; how other areas add tables (a numbered
``NNNN_<name>.sql`` file in ``mailsift/store/migrations/``) and run queries
(``store.execute(sql, params)`` with ``?`` placeholders on both dialects,
``store.query``, ``store.transaction()``) is in ``mailsift.store.migrations``.
"""

from __future__ import annotations

from mailsift.store.base import (
    AuditEvent,
    FeedbackRecord,
    LearnEvent,
    ListEntry,
    Store,
    StoreError,
    VerdictRecord,
)

__all__ = [
    "AuditEvent",
    "FeedbackRecord",
    "LearnEvent",
    "ListEntry",
    "Store",
    "StoreError",
    "VerdictRecord",
    "open_store",
]


def open_store(url: str, pool_size: int = 4) -> Store:
    """Open (and migrate) the store at ``url``."""
    if url.startswith("sqlite://"):
        from mailsift.store.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if not path.startswith("/"):
            raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative or sqlite:////abs")
        path = path[1:] or ":memory:"
        return SqliteStore(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        from mailsift.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    raise StoreError(f"unsupported store URL {url!r} (sqlite:///path or postgresql://...)")
