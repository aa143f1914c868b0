"""Greylisting state: triplets and client pass counts, in SQL (a SQLite file by default, or
PostgreSQL) or Redis (shared).

Both backends implement :class:`GreylistStore` with the same semantics, checked by one contract
test. Every record carries its logical expiry time (``expires``, on the caller's clock, so a
test clock can jump days ahead); Redis keys also get a real TTL so old state cleans itself up.
The SQL backend's tables are a store migration (0007) and its queries are ``SqlGreylistRepo``
(``store.greylist``): a greylist file is a store of its own.

- ``sqlite:///path/greylist.db`` (or ``""``: ``<var_dir>/greylist.db``): one filter.
- ``postgresql://...``: several filters sharing one state in a PostgreSQL store.
- ``redis://host:port/db``: several filters sharing one state; keys under a prefix
  (``settings.greylist.redis_prefix``).

Errors surface as :class:`GreylistStoreError` so the check can turn them into a result.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mailsift.config import Settings
from mailsift.store.base import Store, StoreError

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore

T = TypeVar("T")


class GreylistStoreError(Exception):
    """The greylist store is unavailable or failed."""


@dataclass(frozen=True, slots=True)
class Triplet:
    first_seen: float  # first (deferred) attempt
    passed: float | None  # when a retry was accepted; None while still greylisted
    last_seen: float
    expires: float


class GreylistStore(Protocol):
    def get_triplet(self, key: str, now: float) -> Triplet | None: ...

    def put_triplet(self, key: str, triplet: Triplet) -> None: ...

    def client_passes(self, client: str, now: float) -> int: ...

    def add_client_pass(self, client: str, now: float, expires: float) -> int: ...

    def purge(self, now: float) -> int: ...

    def close(self) -> None: ...


class SqlGreylistRepo:
    """The greylist tables of a store (migration 0007), the same SQL on SQLite and
    PostgreSQL; reached as ``store.greylist``."""

    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def get_triplet(self, key: str, now: float) -> Triplet | None:
        row = self.db.query_one(
            "SELECT first_seen, passed, last_seen, expires FROM greylist_triplets "
            "WHERE key = ? AND expires > ?",
            (key, now),
        )
        if row is None:
            return None
        passed = row["passed"]
        return Triplet(
            float(row["first_seen"]),
            None if passed is None else float(passed),
            float(row["last_seen"]),
            float(row["expires"]),
        )

    def put_triplet(self, key: str, triplet: Triplet) -> None:
        self.db.execute(
            "INSERT INTO greylist_triplets(key, first_seen, passed, last_seen, expires) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET first_seen=excluded.first_seen,"
            " passed=excluded.passed, last_seen=excluded.last_seen, expires=excluded.expires",
            (key, triplet.first_seen, triplet.passed, triplet.last_seen, triplet.expires),
        )

    def client_passes(self, client: str, now: float) -> int:
        row = self.db.query_one(
            "SELECT passes FROM greylist_clients WHERE client = ? AND expires > ?", (client, now)
        )
        return int(row["passes"]) if row else 0

    def add_client_pass(self, client: str, now: float, expires: float) -> int:
        row = self.db.query_one(
            "INSERT INTO greylist_clients(client, passes, expires) VALUES (?, 1, ?) "
            "ON CONFLICT(client) DO UPDATE SET "
            "passes = CASE WHEN greylist_clients.expires > ? THEN greylist_clients.passes + 1 "
            "ELSE 1 END, expires = excluded.expires RETURNING passes",
            (client, expires, now),
        )
        if row is None:
            raise StoreError("greylist_clients upsert returned no row")
        return int(row["passes"])

    def purge(self, now: float) -> int:
        with self.db.transaction() as tx:
            a = tx.execute("DELETE FROM greylist_triplets WHERE expires <= ?", (now,))
            b = tx.execute("DELETE FROM greylist_clients WHERE expires <= ?", (now,))
        return a + b

    def counts(self, now: float) -> dict[str, int]:
        """Unexpired triplets still waiting for their retry ("waiting") and passed
        ("passed"), and unexpired client pass counts ("clients")."""
        row = self.db.query_one(
            "SELECT SUM(CASE WHEN passed IS NULL THEN 1 ELSE 0 END) AS waiting,"
            " SUM(CASE WHEN passed IS NOT NULL THEN 1 ELSE 0 END) AS passed"
            " FROM greylist_triplets WHERE expires > ?",
            (now,),
        )
        clients = self.db.query_one(
            "SELECT COUNT(*) AS n FROM greylist_clients WHERE expires > ?", (now,)
        )
        return {
            "waiting": int((row or {}).get("waiting") or 0),
            "passed": int((row or {}).get("passed") or 0),
            "clients": int((clients or {}).get("n") or 0),
        }


class SqlGreylistStore:
    """A ``GreylistStore`` over a store's greylist tables (SQLite or PostgreSQL); failures
    surface as ``GreylistStoreError``. ``close()`` closes the store."""

    def __init__(self, store: Store, where: str | None = None) -> None:
        self.store = store
        self.where = where or store.dialect
        self.dependency = store.dialect  # the name its outages are logged and counted under
        # its failures: the store's own errors, and the driver's errors for a statement that
        # failed (a locked or corrupt file, a lost connection, a constraint)
        self._errors: tuple[type[Exception], ...] = (StoreError, sqlite3.Error)
        if store.dialect == "postgresql":
            import psycopg

            self._errors += (psycopg.Error,)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except self._errors as exc:
            raise GreylistStoreError(f"greylist store {self.where}: {exc}") from exc

    def get_triplet(self, key: str, now: float) -> Triplet | None:
        return self._call(self.store.greylist.get_triplet, key, now)

    def put_triplet(self, key: str, triplet: Triplet) -> None:
        self._call(self.store.greylist.put_triplet, key, triplet)

    def client_passes(self, client: str, now: float) -> int:
        return self._call(self.store.greylist.client_passes, client, now)

    def add_client_pass(self, client: str, now: float, expires: float) -> int:
        return self._call(self.store.greylist.add_client_pass, client, now, expires)

    def purge(self, now: float) -> int:
        return self._call(self.store.greylist.purge, now)

    def counts(self, now: float) -> dict[str, int]:
        """See ``SqlGreylistRepo.counts``."""
        return self._call(self.store.greylist.counts, now)

    def close(self) -> None:
        self.store.close()


class SqliteGreylistStore(SqlGreylistStore):
    """A SQLite file of its own (a store: its migrations are applied on open); safe across
    threads (a connection per thread, WAL). A file made before the greylist tables were a
    migration keeps its rows."""

    def __init__(self, path: str | Path) -> None:
        from mailsift.store import open_store

        self.path = str(path)
        if self.path in ("", ":memory:"):
            # the store's SQLite connections are per thread: an in-memory database would be
            # a different, empty one in each thread the check runs in
            raise GreylistStoreError("the SQLite greylist needs a file, not :memory:")
        try:
            store = open_store(f"sqlite:///{self.path}")
        except StoreError as exc:
            raise GreylistStoreError(f"greylist store {self.path}: {exc}") from exc
        super().__init__(store, self.path)


def sqlite_greylist_counts(path: str | Path, now: float) -> dict[str, int] | None:
    """The counts of the SQLite greylist file at ``path`` (``SqlGreylistRepo.counts``), or
    None when there is no such file (nothing greylisted yet; it is not created here)."""
    if not Path(path).is_file():
        return None
    grey = SqliteGreylistStore(path)
    try:
        return grey.counts(now)
    finally:
        grey.close()


_COUNT_CLIENT_LUA = """
local n = 0
local exp = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if exp > tonumber(ARGV[1]) then n = tonumber(redis.call('HGET', KEYS[1], 'passes') or '0') end
n = n + 1
redis.call('HSET', KEYS[1], 'passes', n, 'expires', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
"""


class RedisGreylistStore:
    """Hashes under ``<prefix>t:<triplet>`` and ``<prefix>c:<client>``, with real TTLs."""

    dependency = "redis"  # the name its outages are logged and counted under

    def __init__(self, url: str, prefix: str = "mailsift:greylist:", timeout: float = 2.0) -> None:
        import redis

        self.prefix = prefix
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._add_pass = self._r.register_script(_COUNT_CLIENT_LUA)

    @staticmethod
    def _ttl(expires: float, now: float) -> int:
        return max(1, math.ceil(expires - now))

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._errors as exc:
            raise GreylistStoreError(f"greylist redis: {exc}") from exc

    def get_triplet(self, key: str, now: float) -> Triplet | None:
        h = self._call(self._r.hgetall, self.prefix + "t:" + key)
        if not h or float(h.get("expires", 0)) <= now:
            return None
        passed = h.get("passed") or ""
        return Triplet(
            float(h["first_seen"]),
            float(passed) if passed else None,
            float(h["last_seen"]),
            float(h["expires"]),
        )

    def put_triplet(self, key: str, triplet: Triplet) -> None:
        k = self.prefix + "t:" + key
        mapping: dict[str | bytes, bytes | float | int | str] = {
            "first_seen": repr(triplet.first_seen),
            "passed": "" if triplet.passed is None else repr(triplet.passed),
            "last_seen": repr(triplet.last_seen),
            "expires": repr(triplet.expires),
        }

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(k, mapping=mapping)
            pipe.expire(k, self._ttl(triplet.expires, triplet.last_seen))
            pipe.execute()

        self._call(write)

    def client_passes(self, client: str, now: float) -> int:
        h = self._call(self._r.hgetall, self.prefix + "c:" + client)
        if not h or float(h.get("expires", 0)) <= now:
            return 0
        return int(h.get("passes", 0))

    def add_client_pass(self, client: str, now: float, expires: float) -> int:
        k = self.prefix + "c:" + client
        n = self._call(self._add_pass, [k], [repr(now), repr(expires), self._ttl(expires, now)])
        return int(n)

    def purge(self, now: float) -> int:
        """Logical expiry for records a test clock outran (Redis TTLs handle the rest)."""
        removed = 0
        for k in self._call(lambda: list(self._r.scan_iter(match=self.prefix + "*", count=500))):
            exp = self._call(self._r.hget, k, "expires")
            if exp is not None and float(exp) <= now:
                removed += int(self._call(self._r.delete, k))
        return removed

    def close(self) -> None:
        self._r.close()


def open_greylist_store(url: str, *, prefix: str = "mailsift:greylist:") -> GreylistStore:
    """``sqlite:///path`` / ``sqlite:////abs/path`` / ``postgresql://...`` / ``redis://...``
    / a bare file path."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisGreylistStore(url, prefix)
    if url.startswith(("postgresql://", "postgres://")):
        from mailsift.store import open_store

        try:
            return SqlGreylistStore(open_store(url), "postgresql")
        except StoreError as exc:
            raise GreylistStoreError(f"greylist store: {exc}") from exc
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path.startswith("/"):
            raise GreylistStoreError(f"bad SQLite URL {url!r}: use sqlite:///relative or ////abs")
        return SqliteGreylistStore(path[1:] or ":memory:")
    if "://" in url:
        raise GreylistStoreError(f"unknown greylist backend {url!r}")
    return SqliteGreylistStore(url)


def greylist_store_from_settings(settings: Settings) -> GreylistStore:
    url = settings.greylist.backend or str(settings.paths.var_dir / "greylist.db")
    return open_greylist_store(url, prefix=settings.greylist.redis_prefix)
