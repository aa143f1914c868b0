"""Greylisting state: triplets and client pass counts, in SQLite (default) or Redis (shared).

Both backends implement :class:`GreylistStore` with the same semantics, checked by one contract
test. Every record carries its logical expiry time (``expires``, on the caller's clock, so a
test clock can jump days ahead); Redis keys also get a real TTL so old state cleans itself up.

- ``sqlite:///path/greylist.db`` (or ``""``: ``<var_dir>/greylist.db``): one filter.
- ``redis://host:port/db``: several filters sharing one state; keys under a prefix
  (``settings.greylist.redis_prefix``).

Errors surface as :class:`GreylistStoreError` so the check can turn them into a result.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mailsift.config import Settings


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS greylist_triplets (
    key TEXT PRIMARY KEY, first_seen REAL NOT NULL, passed REAL, last_seen REAL NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS greylist_clients (
    client TEXT PRIMARY KEY, passes INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS greylist_triplets_expires ON greylist_triplets(expires);
"""


class SqliteGreylistStore:
    """One SQLite file; safe across threads (one connection behind a lock)."""

    dependency = "sqlite"  # the name its outages are logged and counted under

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise GreylistStoreError(f"greylist store {self.path}: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock, self._db:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise GreylistStoreError(f"greylist store {self.path}: {exc}") from exc

    def get_triplet(self, key: str, now: float) -> Triplet | None:
        rows = self._run(
            "SELECT first_seen, passed, last_seen, expires FROM greylist_triplets "
            "WHERE key = ? AND expires > ?",
            (key, now),
        )
        return Triplet(*rows[0]) if rows else None

    def put_triplet(self, key: str, triplet: Triplet) -> None:
        self._run(
            "INSERT INTO greylist_triplets(key, first_seen, passed, last_seen, expires) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET first_seen=excluded.first_seen,"
            " passed=excluded.passed, last_seen=excluded.last_seen, expires=excluded.expires",
            (key, triplet.first_seen, triplet.passed, triplet.last_seen, triplet.expires),
        )

    def client_passes(self, client: str, now: float) -> int:
        rows = self._run(
            "SELECT passes FROM greylist_clients WHERE client = ? AND expires > ?", (client, now)
        )
        return int(rows[0][0]) if rows else 0

    def add_client_pass(self, client: str, now: float, expires: float) -> int:
        rows = self._run(
            "INSERT INTO greylist_clients(client, passes, expires) VALUES (?, 1, ?) "
            "ON CONFLICT(client) DO UPDATE SET "
            "passes = CASE WHEN greylist_clients.expires > ? THEN greylist_clients.passes + 1 "
            "ELSE 1 END, expires = excluded.expires RETURNING passes",
            (client, expires, now),
        )
        return int(rows[0][0])

    def purge(self, now: float) -> int:
        a = self._run("DELETE FROM greylist_triplets WHERE expires <= ? RETURNING key", (now,))
        b = self._run("DELETE FROM greylist_clients WHERE expires <= ? RETURNING client", (now,))
        return len(a) + len(b)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def sqlite_greylist_counts(path: str | Path, now: float) -> dict[str, int]:
    """Triplets still waiting for their retry, triplets passed and clients whitelisted in
    the greylist file at ``path``, read-only (the dashboard never changes the file)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT SUM(CASE WHEN passed IS NULL THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN passed IS NOT NULL THEN 1 ELSE 0 END)"
                " FROM greylist_triplets WHERE expires > ?",
                (now,),
            ).fetchone()
            clients = db.execute(
                "SELECT COUNT(*) FROM greylist_clients WHERE expires > ?", (now,)
            ).fetchone()
    except sqlite3.Error as exc:
        raise GreylistStoreError(f"greylist store {path}: {exc}") from exc
    return {
        "waiting": int(row[0] or 0),
        "passed": int(row[1] or 0),
        "clients": int(clients[0] or 0),
    }


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
    """``sqlite:///path`` / ``sqlite:////abs/path`` / ``redis://...`` / a bare file path."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisGreylistStore(url, prefix)
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
