"""PostgreSQL backend: psycopg 3 with a small connection pool of its own (``_Pool``).

For several machines sharing one store. Connections run in autocommit mode; ``transaction()``
opens a real transaction on one pooled connection. Queries are written with ``?`` placeholders
(as for SQLite) and translated here to psycopg's ``%s`` (literal ``%`` doubled). Named
critical sections (``store.lock``) are transaction-scoped advisory locks, so learn events get
gap-free, commit-ordered ids and migrations are applied once even when several processes open
the store at the same moment. Commits are durable with PostgreSQL's default
``synchronous_commit = on``.

Verdicts (the one write of every scoring request) bypass the pool: the group-commit writer
has a connection of its own and writes a whole group as one prepared statement (a
data-modifying CTE inserting the verdicts and their samples: see ``SqlVerdictRepo``), which
in autocommit mode is one atomic transaction and one round trip. Measured in one process,
old and new alternating: ~0.55-0.95 ms of client CPU and ~0.7 ms of server CPU per verdict
with BEGIN + two executemany + COMMIT on a pooled connection, ~0.3-0.45 ms and ~0.5 ms now
(of which zlib of the sample ~0.08 ms and the round trip ~0.05 ms).

Outages: every call has a deadline. Opening a connection waits at most
``store.connect_timeout`` and waiting for a free pooled connection at most
``store.pool_timeout`` (2 s each by default); a refused or broken connection fails at once.
All of these raise ``StoreUnavailable`` (a ``StoreError``: the API answers 503 with
``Retry-After``, the SMTP filter 451) and are reported to ``mailsift.outages``. The pool has
no reconnect backoff: ``psycopg_pool`` retried with a doubling delay, so after a minute's
outage the first request served came ~58 s after the database returned. Here a broken
connection discards every idle connection of its generation (they all went through the
same outage), and the next call simply connects again: the first call made after the
database is back is served.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from mailsift import outages
from mailsift.store.base import Dialect, Params, Row, StoreError, StoreUnavailable, Tx
from mailsift.store.sql import SqlStore

# a pooled connection idle longer than this is checked with a round trip before reuse
CHECK_AFTER_IDLE_S = 2.0

_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``?`` placeholders (outside quotes) -> ``%s``; every literal ``%`` -> ``%%``."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"
        return tok.replace("%", "%%")

    return _TOKEN_RE.sub(sub, sql)


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _run(self, sql: str, params: Params) -> psycopg.Cursor[Any]:
        if params:
            return self.conn.execute(translate(sql), list(params))  # type: ignore[arg-type]
        return self.conn.execute(sql)  # type: ignore[arg-type]

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._run(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement for many parameter rows (psycopg pipelines them: one round trip)."""
        with self.conn.cursor() as cur:
            cur.executemany(translate(sql), [list(r) for r in rows])  # type: ignore[arg-type]

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        cur = self._run(sql, params)
        if cur.description is None:
            return []
        return list(cur.fetchall())

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None


class _PgWriterTx(_PgTx):
    """The writer's ``Tx``: one cursor for the connection's life (no cursor built a write)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.cur = conn.cursor()

    def _run(self, sql: str, params: Params) -> psycopg.Cursor[Any]:
        if params:
            return self.cur.execute(translate(sql), params)  # type: ignore[arg-type]
        return self.cur.execute(sql)  # type: ignore[arg-type]


DEPENDENCY = "postgresql"
# Every connection: PostgreSQL ends a session left idle inside a transaction for this long
# (a client that vanished mid-transaction would otherwise keep its transaction and locks,
# e.g. the learn-event lock every feedback takes, until TCP notices, hours later), and the
# client gives up on a server that stopped answering (TCP keepalives, TCP_USER_TIMEOUT)
# instead of waiting on it forever. Transactions here are a few statements long.
IDLE_IN_TRANSACTION_MS = 10_000
_TCP = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def session_kwargs(url: str) -> dict[str, Any]:
    """Connection parameters added to ``url`` (its own ``options`` are kept)."""
    options = conninfo_to_dict(url).get("options") or ""
    guc = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    return {**_TCP, "options": f"{options} {guc}".strip()}


# errors that mean the database cannot be reached or the connection is gone (as opposed to a
# bad statement or a constraint violation, which are the caller's to handle)
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def _unavailable(exc: BaseException, what: str) -> StoreUnavailable:
    outages.dependency_failed(DEPENDENCY, exc)
    return StoreUnavailable(f"PostgreSQL store unavailable ({what}): {exc}")


class _Pool:
    """At most ``max_size`` autocommit connections, made on demand, with deadlines.

    ``connection()`` waits at most ``wait_timeout`` for a free slot, reuses the most recently
    returned idle connection (checked with a round trip when idle ``CHECK_AFTER_IDLE_S`` or
    more: a busy connection just worked, and one round trip per statement would cost as
    much as the statement) or opens one within ``connect_timeout``. A connection found
    broken bumps the generation: every idle connection of an older generation is closed
    instead of reused, so after an outage no call is handed a dead connection.
    """

    def __init__(
        self, url: str, max_size: int, connect_timeout: float, wait_timeout: float
    ) -> None:
        self.url = url
        self.max_size = max(1, max_size)
        self.connect_timeout = connect_timeout
        self.wait_timeout = wait_timeout
        self._session = session_kwargs(url)
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._lock = threading.Lock()
        self._idle: list[tuple[psycopg.Connection[Any], int, float]] = []
        self.generation = 0
        self.closed = False

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection (``StoreUnavailable`` past ``connect_timeout`` or refused)."""
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(self.connect_timeout)),
                **self._session,
                **kwargs,
            )
        except psycopg.Error as exc:
            raise _unavailable(exc, "connect") from exc
        outages.dependency_ok(DEPENDENCY)
        return conn

    def broken(self) -> None:
        """A connection broke: idle connections of this generation are not reused."""
        with self._lock:
            self.generation += 1
            stale, self._idle = self._idle, []
        for conn, _gen, _t in stale:
            conn.close()

    def _take_idle(self) -> tuple[psycopg.Connection[Any], int] | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, gen, last = self._idle.pop()
                current = gen == self.generation
            if not current or conn.closed or conn.broken:
                conn.close()
                continue
            if time.monotonic() - last < CHECK_AFTER_IDLE_S:
                return conn, gen
            try:
                conn.execute("")  # an empty query: one round trip
            except psycopg.Error:
                conn.close()
                self.broken()
                return None
            return conn, gen

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self.closed:
            raise StoreError("store is closed")
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise _unavailable(
                TimeoutError(f"no connection free within {self.wait_timeout:g} s"),
                f"pool of {self.max_size} busy",
            )
        conn: psycopg.Connection[Any] | None = None
        gen = 0
        try:
            got = self._take_idle()
            if got is None:
                gen = self.generation
                conn = self.connect(row_factory=dict_row)
            else:
                conn, gen = got
            try:
                yield conn
            except _UNAVAILABLE as exc:
                if conn.broken or conn.closed:
                    self.broken()
                raise _unavailable(exc, "query") from exc
            outages.dependency_ok(DEPENDENCY)
        finally:
            if conn is not None:
                self._give_back(conn, gen)
            self._slots.release()

    def _give_back(self, conn: psycopg.Connection[Any], gen: int) -> None:
        reusable = (
            not self.closed
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
        )
        if reusable:
            with self._lock:
                if gen == self.generation:
                    self._idle.append((conn, gen, time.monotonic()))
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn, _gen, _t in idle:
            conn.close()


class PostgresStore(SqlStore):
    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        connect_timeout: float = 2.0,
        pool_timeout: float = 2.0,
    ) -> None:
        super().__init__(url)
        # the group-commit writer's own connection (opened at its first write), so a verdict
        # write costs no pool checkout; statements are prepared from their first use
        self._writer_lock = threading.Lock()
        self._writer_tx: _PgWriterTx | None = None
        self._writer_gen = 0
        self._writer_last = 0.0
        self.pool = _Pool(url, pool_size, connect_timeout, pool_timeout)
        try:  # fail fast with a clear error
            self.pool.connect().close()
        except StoreError as exc:
            raise StoreError(f"cannot connect to PostgreSQL store: {exc}") from exc
        self.migrate()

    @contextmanager
    def _begin(self) -> Iterator[Tx]:
        with self.pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @contextmanager
    def _autocommit(self) -> Iterator[Tx]:
        with self.pool.connection() as conn:
            yield _PgTx(conn)

    @contextmanager
    def _writer(self) -> Iterator[Tx]:
        """The writer's connection (autocommit), reopened when it broke or the pool saw a
        broken connection since it was opened; checked with a round trip after
        ``CHECK_AFTER_IDLE_S`` idle, as pooled connections are."""
        if not self._writer_lock.acquire(timeout=self.pool.wait_timeout):
            raise _unavailable(
                TimeoutError(f"writer busy for {self.pool.wait_timeout:g} s"), "writer"
            )
        try:
            tx = self._writer_tx
            if (
                tx is None
                or tx.conn.broken
                or tx.conn.closed
                or self._writer_gen != self.pool.generation
            ):
                tx = self._open_writer()
            elif time.monotonic() - self._writer_last >= CHECK_AFTER_IDLE_S:
                try:
                    tx.conn.execute("")
                except psycopg.Error:
                    tx = self._open_writer()
            try:
                yield tx
            except _UNAVAILABLE as exc:
                if tx.conn.broken or tx.conn.closed:
                    self.pool.broken()
                raise _unavailable(exc, "write") from exc
            self._writer_last = time.monotonic()
            outages.dependency_ok(DEPENDENCY)
        finally:
            self._writer_lock.release()

    def _open_writer(self) -> _PgWriterTx:
        if self._writer_tx is not None:
            self._writer_tx.conn.close()
            self._writer_tx = None
        if self.pool.closed:
            raise StoreError("store is closed")
        gen = self.pool.generation
        conn = self.pool.connect(prepare_threshold=0)
        self._writer_tx = _PgWriterTx(conn)
        self._writer_gen = gen
        return self._writer_tx

    def _lock(self, tx: Tx, name: str) -> None:
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        tx.query("SELECT pg_advisory_xact_lock(?)", [key])

    def close(self) -> None:
        self.pool.close()
        with self._writer_lock:
            if self._writer_tx is not None:
                self._writer_tx.conn.close()
                self._writer_tx = None
