"""The store: every table of mailsift and every query on it, on SQLite or PostgreSQL.

Verdicts, feedback and learning state, sender lists, the audit trail, web sessions, the
quarantine's entries, API keys, mail accounts, the dashboard's counts, the SQL greylist and
the serving model's generation: one repository each, reached as an attribute of the store
(``store.verdicts``, ``store.quarantine``, ``store.accounts`` ...; see
``mailsift.store.base``).

``open_store(url)`` picks the backend from the URL and applies pending schema migrations
(``mailsift.store.migrations``: plain sequential numbers):

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
- ``postgresql://user@host:port/dbname`` (also ``postgres://``; any libpq URL)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsift.store.base import (
    AuditEvent,
    FeedbackRecord,
    LearnEvent,
    ListEntry,
    Store,
    StoreError,
    StoreUnavailable,
    VerdictRecord,
)

if TYPE_CHECKING:
    from mailsift.config import Settings

__all__ = [
    "AuditEvent",
    "FeedbackRecord",
    "LearnEvent",
    "ListEntry",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "VerdictRecord",
    "open_store",
    "open_store_for",
]


def open_store(
    url: str, pool_size: int = 4, connect_timeout: float = 2.0, pool_timeout: float = 2.0
) -> Store:
    """Open (and migrate) the store at ``url``. PostgreSQL: at most ``pool_size``
    connections; ``connect_timeout`` / ``pool_timeout`` are the deadlines of opening one and
    of waiting for a free one (``StoreUnavailable`` past them)."""
    if url.startswith("sqlite://"):
        from mailsift.store.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if not path.startswith("/"):
            raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative or sqlite:////abs")
        path = path[1:] or ":memory:"
        return SqliteStore(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        from mailsift.store.postgres import PostgresStore

        return PostgresStore(
            url, pool_size=pool_size, connect_timeout=connect_timeout, pool_timeout=pool_timeout
        )
    raise StoreError(f"unsupported store URL {url!r} (sqlite:///path or postgresql://...)")


def open_store_for(settings: Settings) -> Store:
    """``open_store`` with the URL, pool size and deadlines of ``settings``."""
    s = settings.store
    return open_store(settings.store_url, s.pool_size, s.connect_timeout, s.pool_timeout)
