"""``SqlStore``: the repositories written once in portable SQL over a backend's connections.

A backend (``SqliteStore``, ``PostgresStore``) implements three hooks: ``_begin()`` (a context
manager yielding a ``Tx`` with a transaction open), ``_autocommit()`` (a ``Tx`` whose
statements commit one by one) and ``_lock(tx, name)`` (serialise a critical section across
processes for the rest of the transaction). Everything else lives here.

Transactions are per thread: inside ``with store.transaction():`` every ``store.execute`` /
``store.query`` call (and every repository call) of that thread joins the open transaction,
so a repository method can be combined with others atomically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any, Generic, TypeVar

from mailsift.store import migrations
from mailsift.store.accounts import SqlAccountRepo
from mailsift.store.api_keys import SqlApiKeyRepo
from mailsift.store.base import (
    LIST_KINDS,
    AuditEvent,
    Dialect,
    FeedbackRecord,
    LearnedState,
    LearnEvent,
    ListEntry,
    Params,
    Row,
    StoreError,
    Tx,
    UserLesson,
    VerdictRecord,
    Vote,
    compress,
    decompress,
    dumps,
    loads,
)
from mailsift.store.failures import FailureLog
from mailsift.store.generations import SqlGenerationRepo
from mailsift.store.greylist import SqlGreylistRepo
from mailsift.store.quarantine import SqlQuarantineRepo
from mailsift.store.sessions import SqlSessionRepo
from mailsift.store.stats import SqlStatsRepo


class SqlStore:
    """Common implementation; see ``mailsift.store.base.Store`` for the interface."""

    dialect: Dialect
    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self.verdicts = SqlVerdictRepo(self)
        self.feedback = SqlFeedbackRepo(self)
        self.lists = SqlListRepo(self)
        self.audit = SqlAuditRepo(self)
        self.sessions = SqlSessionRepo(self)
        self.quarantine = SqlQuarantineRepo(self)
        self.api_keys = SqlApiKeyRepo(self)
        self.stats = SqlStatsRepo(self)
        self.greylist = SqlGreylistRepo(self)
        self.accounts = SqlAccountRepo(self)
        self.generations = SqlGenerationRepo(self)
        self.auth_failures = FailureLog(self, "smtp_auth_failures")

    # ---- backend hooks ---------------------------------------------------------------------
    def _begin(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _autocommit(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _lock(self, tx: Tx, name: str) -> None:
        raise NotImplementedError

    def _writer(self) -> AbstractContextManager[Tx]:
        """A ``Tx`` in autocommit mode for the group-commit writer's one-statement writes
        (one writer at a time). Default: ``_autocommit()``; a backend may keep a connection
        of its own for it."""
        return self._autocommit()

    def close(self) -> None:
        raise NotImplementedError

    # ---- generic access --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic unit; nested calls in the same thread join the outer transaction."""
        current: Tx | None = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        with self._begin() as tx:
            self._local.tx = tx
            try:
                yield tx
            finally:
                self._local.tx = None

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        current: Tx | None = getattr(self._local, "tx", None)
        if current is not None:
            yield current
        else:
            with self._autocommit() as tx:
                yield tx

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement (committed at once outside a transaction); returns rowcount."""
        with self._tx() as tx:
            return tx.execute(sql, params)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        with self._tx() as tx:
            return tx.query(sql, params)

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        with self._tx() as tx:
            return tx.query_one(sql, params)

    def lock(self, name: str) -> None:
        """Inside ``transaction()``: hold a named cross-process lock until it ends."""
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            raise StoreError("store.lock() needs an open transaction")
        self._lock(tx, name)

    def probe(self) -> None:
        """One round trip to the database; raises (``StoreUnavailable`` on PostgreSQL) when
        it cannot be reached."""
        self.query_one("SELECT 1 AS one")

    def ping(self) -> bool:
        try:
            self.probe()
        except Exception:
            return False
        return True

    # ---- migrations ------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply every pending migration once; returns the versions applied now."""
        applied_now: list[int] = []
        with self.transaction():
            self.lock("schema_migrations")
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                f" applied {migrations.MACROS[self.dialect]['FLOAT']} NOT NULL,"
                " checksum TEXT NOT NULL)"
            )
            self._renumber()
        for mig in migrations.discover():
            with self.transaction() as tx:
                self.lock("schema_migrations")
                if tx.query_one("SELECT 1 FROM schema_migrations WHERE version = ?", [mig.version]):
                    continue
                try:
                    self._run_script(tx, mig.script(self.dialect))
                except Exception as exc:
                    raise StoreError(
                        f"migration {mig.version:04d}_{mig.name} failed: {exc}"
                    ) from exc
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied, checksum)"
                    " VALUES (?, ?, ?, ?)",
                    [mig.version, mig.name, time.time(), mig.checksum(self.dialect)],
                )
                applied_now.append(mig.version)
        return applied_now

    def _renumber(self) -> None:
        """Rewrite rows recorded under the former numbering (``migrations.RENUMBERED``) to
        the sequential number of the same script, so it is not applied a second time."""
        for old, new in migrations.RENUMBERED.items():
            if self.query_one("SELECT 1 AS x FROM schema_migrations WHERE version = ?", [new]):
                continue
            self.execute("UPDATE schema_migrations SET version = ? WHERE version = ?", [new, old])

    def _run_script(self, tx: Tx, script: str) -> None:
        for stmt in migrations.split_statements(script):
            tx.execute(stmt)

    def applied_migrations(self) -> list[int]:
        rows = self.query("SELECT version FROM schema_migrations ORDER BY version")
        return [int(r["version"]) for r in rows]


# ---- group commit --------------------------------------------------------------------------

T = TypeVar("T")


class _Pending(Generic[T]):
    __slots__ = ("done", "error", "item", "lead")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.lead = False  # woken to lead the next batch rather than because it is written


class GroupCommit(Generic[T]):
    """Writes from concurrent threads that arrive together share one transaction.

    ``submit(item)`` returns once ``item`` is committed (or raises its own error). The first
    caller to find no batch in flight leads: it writes everything queued so far with
    ``write_batch(items)`` (one transaction, one commit), wakes the callers whose items were
    in it, and hands the lead to the oldest caller still queued, if any, so a leader never
    waits for other callers' batches after its own. Items queue while a commit is in flight,
    so the batch size follows the load by itself (no timer, no added latency when idle). If
    a batch fails, its items are written one by one so each caller gets its own outcome
    (e.g. one duplicate id fails one call, not its neighbours).
    """

    def __init__(self, write_batch: Callable[[list[T]], None], max_batch: int = 256) -> None:
        self._write_batch = write_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending[T]] = []
        self._leading = False

    def submit(self, item: T) -> None:
        me = _Pending(item)
        with self._lock:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            me.done.wait()
            if not me.lead:
                if me.error is not None:
                    raise me.error
                return
        self._lead(me)
        if me.error is not None:
            raise me.error

    def _lead(self, me: _Pending[T]) -> None:
        """Write batches until ``me`` is written, then pass the lead on (or drop it)."""
        while True:
            with self._lock:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            try:
                self._write(batch)
            finally:
                mine = me in batch
                with self._lock:
                    nxt = self._queue[0] if mine and self._queue else None
                    if mine and nxt is None:
                        self._leading = False
                for p in batch:
                    if p is not me:
                        p.done.set()
                if nxt is not None:
                    nxt.lead = True
                    nxt.done.set()
            if mine:
                return

    def _write(self, batch: list[_Pending[T]]) -> None:
        try:
            self._write_batch([p.item for p in batch])
            return
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
        for p in batch:  # find which item(s) failed: one transaction each
            try:
                self._write_batch([p.item])
            except BaseException as exc:
                p.error = exc


# ---- repositories --------------------------------------------------------------------------


def _verdict(row: Row) -> VerdictRecord:
    return VerdictRecord(
        verdict_id=row["verdict_id"],
        digest=row["digest"],
        score=float(row["score"]),
        probability=float(row["probability"]),
        action=row["action"],
        model_version=row["model_version"],
        created=float(row["created"]),
        recipients=tuple(loads(row["recipients"], [])),
        sender=row["sender"],
        client_ip=row["client_ip"],
        rules=[(str(n), float(s)) for n, s in loads(row["rules"], [])],
        list_decision=row["list_decision"],
        reason=row["reason"],
    )


_VerdictRows = tuple[tuple[Any, ...], tuple[Any, ...] | None]  # (verdict row, sample row)

_VERDICT_COLS = (
    "verdict_id, created, digest, recipients, sender, client_ip, score, probability,"
    " action, model_version, rules, list_decision, reason"
)
_VERDICT_VALUES = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"
_SAMPLE_VALUES = "(?,?,?)"


@lru_cache(maxsize=128)
def _one_statement(n_verdicts: int, n_samples: int) -> str:
    """PostgreSQL: ``n_verdicts`` verdict rows and ``n_samples`` sample rows in one statement
    (a data-modifying CTE), so a group commit is one round trip and one implicit transaction
    (no BEGIN/COMMIT); the text depends only on the two counts, so psycopg prepares it."""
    verdicts = f"INSERT INTO verdicts ({_VERDICT_COLS}) VALUES " + ",".join(
        [_VERDICT_VALUES] * n_verdicts
    )
    if not n_samples:
        return verdicts
    samples = "INSERT INTO verdict_samples (verdict_id, created, raw) VALUES " + ",".join(
        [_SAMPLE_VALUES] * n_samples
    )
    return f"WITH v AS ({verdicts}) {samples}"


def _executemany(tx: Tx, sql: str, rows: list[tuple[Any, ...]]) -> None:
    many = getattr(tx, "executemany", None)
    if many is not None and len(rows) > 1:
        many(sql, rows)
    else:
        for r in rows:
            tx.execute(sql, r)


class SqlVerdictRepo:
    _COLS = _VERDICT_COLS

    _INSERT = f"INSERT INTO verdicts ({_COLS}) VALUES {_VERDICT_VALUES}"
    _INSERT_SAMPLE = (
        f"INSERT INTO verdict_samples (verdict_id, created, raw) VALUES {_SAMPLE_VALUES}"
    )

    def __init__(self, db: SqlStore) -> None:
        self.db = db
        self._one_statement = db.dialect == "postgresql"
        self._group: GroupCommit[_VerdictRows] = GroupCommit(self._write_batch)

    def add(self, rec: VerdictRecord, sample: bytes | None = None) -> None:
        """Record a verdict durably. Verdicts that arrive together (concurrent scoring
        threads) share one transaction: one commit, one fsync (group commit). Each call
        still returns only once its own row is committed, so an answered verdict survives a
        crash and is readable at once from any process."""
        rows = self._rows(rec, sample)
        tx: Tx | None = getattr(self.db._local, "tx", None)
        if tx is not None:  # join the caller's transaction
            self._write(tx, [rows])
            return
        self._group.submit(rows)

    def add_many(self, items: Sequence[tuple[VerdictRecord, bytes | None]]) -> None:
        """Record ``items`` in one transaction (one commit), without the group commit: for a
        caller that batches verdicts itself (``mailsift.smtpd.verdicts.VerdictWriter``)."""
        if not items:
            return
        rows = [self._rows(rec, sample) for rec, sample in items]
        tx: Tx | None = getattr(self.db._local, "tx", None)
        if tx is not None:  # join the caller's transaction
            self._write(tx, rows)
            return
        self._write_batch(rows)

    def _rows(self, rec: VerdictRecord, sample: bytes | None) -> _VerdictRows:
        sample_row = (rec.verdict_id, rec.created, compress(sample)) if sample is not None else None
        return self._row(rec), sample_row

    @staticmethod
    def _row(rec: VerdictRecord) -> tuple[Any, ...]:
        return (
            rec.verdict_id,
            rec.created,
            rec.digest,
            dumps(list(rec.recipients)),
            rec.sender,
            rec.client_ip,
            rec.score,
            rec.probability,
            rec.action,
            rec.model_version,
            dumps(rec.rules),  # (name, score) pairs: JSON arrays, as lists would be
            rec.list_decision,
            rec.reason,
        )

    def _write(self, tx: Tx, items: list[_VerdictRows]) -> None:
        if self._one_statement:
            tx.execute(*self._statement(items))
            return
        rows = [r for r, _ in items]
        samples = [s for _, s in items if s is not None]
        _executemany(tx, self._INSERT, rows)
        if samples:
            _executemany(tx, self._INSERT_SAMPLE, samples)

    @staticmethod
    def _statement(items: list[_VerdictRows]) -> tuple[str, list[Any]]:
        params = [v for r, _ in items for v in r]
        n_samples = 0
        for _, s in items:
            if s is not None:
                params += s
                n_samples += 1
        return _one_statement(len(items), n_samples), params

    def _write_batch(self, items: list[_VerdictRows]) -> None:
        if self._one_statement:  # atomic on its own: no transaction around it
            with self.db._writer() as tx:
                self._write(tx, items)
            return
        with self.db.transaction() as tx:
            self._write(tx, items)

    def get(self, verdict_id: str) -> VerdictRecord | None:
        row = self.db.query_one(
            f"SELECT {self._COLS} FROM verdicts WHERE verdict_id = ?", [verdict_id]
        )
        return _verdict(row) if row else None

    def by_digest(self, digest: str, limit: int = 20) -> list[VerdictRecord]:
        rows = self.db.query(
            f"SELECT {self._COLS} FROM verdicts WHERE digest = ? ORDER BY created DESC LIMIT ?",
            [digest, limit],
        )
        return [_verdict(r) for r in rows]

    def recent(
        self, limit: int = 100, since: float | None = None, action: str | None = None
    ) -> list[VerdictRecord]:
        where, params = _where(("created >=", since), ("action =", action))
        rows = self.db.query(
            f"SELECT {self._COLS} FROM verdicts{where} ORDER BY created DESC LIMIT ?",
            [*params, limit],
        )
        return [_verdict(r) for r in rows]

    def count_by_action(self, since: float | None = None) -> dict[str, int]:
        where, params = _where(("created >=", since))
        rows = self.db.query(
            f"SELECT action, COUNT(*) AS n FROM verdicts{where} GROUP BY action", params
        )
        return {r["action"]: int(r["n"]) for r in rows}

    def sample(self, verdict_id: str) -> bytes | None:
        row = self.db.query_one(
            "SELECT raw FROM verdict_samples WHERE verdict_id = ?", [verdict_id]
        )
        return decompress(row["raw"]) if row else None

    def purge_samples(self, before: float) -> int:
        return self.db.execute("DELETE FROM verdict_samples WHERE created < ?", [before])

    def purge(self, before: float) -> int:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM verdict_samples WHERE created < ?", [before])
            return tx.execute("DELETE FROM verdicts WHERE created < ?", [before])


class SqlFeedbackRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def add(self, rec: FeedbackRecord) -> int:
        row = self.db.query_one(
            "INSERT INTO feedback"
            " (created, verdict_id, digest, label, user_name, source, status, reporter)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING feedback_id",
            [
                rec.created,
                rec.verdict_id,
                rec.digest,
                rec.label,
                rec.user,
                rec.source,
                rec.status,
                rec.reporter or rec.user,
            ],
        )
        assert row is not None
        rec.feedback_id = int(row["feedback_id"])
        return rec.feedback_id

    def set_status(self, feedback_id: int, status: str) -> None:
        self.db.execute(
            "UPDATE feedback SET status = ? WHERE feedback_id = ?", [status, feedback_id]
        )

    def recent(self, limit: int = 100, user: str | None = None) -> list[FeedbackRecord]:
        where, params = _where(("user_name =", user))
        rows = self.db.query(
            "SELECT feedback_id, created, verdict_id, digest, label, user_name, source, status,"
            f" reporter FROM feedback{where} ORDER BY feedback_id DESC LIMIT ?",
            [*params, limit],
        )
        return [
            FeedbackRecord(
                label=r["label"],
                user=r["user_name"],
                digest=r["digest"],
                verdict_id=r["verdict_id"],
                source=r["source"],
                created=float(r["created"]),
                status=r["status"],
                feedback_id=int(r["feedback_id"]),
                reporter=r["reporter"],
            )
            for r in rows
        ]

    def count_since(
        self,
        since: float,
        user: str | None = None,
        source: str | None = None,
        reporter: str | None = None,
    ) -> int:
        where, params = _where(
            ("reporter =", reporter),
            ("user_name =", user),
            ("source =", source),
            ("created >=", since),
        )
        row = self.db.query_one(
            f"SELECT COUNT(*) AS n FROM feedback{where} AND status <> 'rate_limited'", params
        )
        return int(row["n"]) if row else 0

    def reported(self, reporter: str, digest: str, label: str) -> bool:
        row = self.db.query_one(
            "SELECT 1 AS x FROM feedback WHERE digest = ? AND reporter = ? AND label = ?"
            " AND status <> 'rate_limited' LIMIT 1",
            [digest, reporter, label],
        )
        return row is not None

    def keep_message(self, digest: str, raw: bytes) -> None:
        self.db.execute(
            "INSERT INTO feedback_messages (digest, created, raw) VALUES (?, ?, ?)"
            " ON CONFLICT (digest) DO NOTHING",
            [digest, time.time(), compress(raw)],
        )

    def message(self, digest: str) -> bytes | None:
        row = self.db.query_one("SELECT raw FROM feedback_messages WHERE digest = ?", [digest])
        return decompress(row["raw"]) if row else None

    def learned(self, digest: str) -> LearnedState | None:
        row = self.db.query_one(
            "SELECT digest, label, weight, updated, layer FROM learned WHERE digest = ?",
            [digest],
        )
        if row is None:
            return None
        return LearnedState(
            row["digest"], row["label"], float(row["weight"]), float(row["updated"]), row["layer"]
        )

    def teach(
        self,
        digest: str,
        label: str,
        weight: float,
        *,
        layer: str = "model",
        reporters: Sequence[str] = (),
        cols: bytes | None = None,
        amount: float = 0.0,
    ) -> tuple[str, LearnEvent | None]:
        """Decide and record, atomically across processes, what teaching ``label`` for
        ``digest`` means: ("learned", event) the first time, ("relabelled", event) when the
        model was taught the other label before (the event says to unlearn it first, when
        the model's arrays learned it), ("duplicate", None) when this label was taught
        already, and ("contested", None) for a users' ("global") lesson against an earlier
        lesson of the other label: only a trusted lesson relabels."""
        with self.db.transaction() as tx:
            self.db.lock("learn_events")
            prev = self.learned(digest)
            if prev is not None and prev.label == label:
                return "duplicate", None
            if prev is not None and layer != "model":
                return "contested", None
            now = time.time()
            if prev is None:
                tx.execute(
                    "INSERT INTO learned (digest, label, weight, updated, layer)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [digest, label, weight, now, layer],
                )
            else:
                tx.execute(
                    "UPDATE learned SET label = ?, weight = ?, updated = ?, layer = ?"
                    " WHERE digest = ?",
                    [label, weight, now, layer, digest],
                )
            # only what the model's arrays learned can be taken back from them
            unlearn = prev.label if prev is not None and prev.layer == "model" else None
            blob = compress(cols) if cols is not None else None
            row = tx.query_one(
                "INSERT INTO learn_events"
                " (created, digest, label, unlearn, weight, layer, reporters, cols, amount)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING event_id",
                [now, digest, label, unlearn, weight, layer, dumps(list(reporters)), blob, amount],
            )
            assert row is not None
            event = LearnEvent(
                int(row["event_id"]),
                digest,
                label,
                unlearn,
                weight,
                now,
                layer,
                tuple(reporters),
                cols,
                amount,
            )
            return ("relabelled" if prev is not None else "learned"), event

    def events_after(self, event_id: int, limit: int = 1000) -> list[LearnEvent]:
        rows = self.db.query(
            "SELECT event_id, digest, label, unlearn, weight, created, layer, reporters, cols,"
            " amount FROM learn_events WHERE event_id > ? ORDER BY event_id LIMIT ?",
            [event_id, limit],
        )
        return [
            LearnEvent(
                int(r["event_id"]),
                r["digest"],
                r["label"],
                r["unlearn"],
                float(r["weight"]),
                float(r["created"]),
                r["layer"],
                tuple(loads(r["reporters"], [])),
                decompress(r["cols"]),
                float(r["amount"]),
            )
            for r in rows
        ]

    # ---- users' own lessons and corroboration votes ----------------------------------------
    def add_user_lesson(self, user: str, digest: str, label: str, cols: bytes, delta: float) -> int:
        row = self.db.query_one(
            "INSERT INTO user_lessons (created, user_name, digest, label, cols, delta)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING lesson_id",
            [time.time(), user, digest, label, compress(cols), delta],
        )
        assert row is not None
        return int(row["lesson_id"])

    def user_lessons_after(self, lesson_id: int, limit: int = 1000) -> list[UserLesson]:
        rows = self.db.query(
            "SELECT lesson_id, created, user_name, digest, label, cols, delta FROM user_lessons"
            " WHERE lesson_id > ? ORDER BY lesson_id LIMIT ?",
            [lesson_id, limit],
        )
        return [
            UserLesson(
                int(r["lesson_id"]),
                r["user_name"],
                r["digest"],
                r["label"],
                decompress(r["cols"]) or b"",
                float(r["delta"]),
                float(r["created"]),
            )
            for r in rows
        ]

    def add_vote(
        self, reporter: str, domain: str, digest: str, label: str, bands: Sequence[str]
    ) -> None:
        now = time.time()
        with self.db.transaction() as tx:
            row = tx.query_one(
                "INSERT INTO feedback_votes (created, reporter, domain, digest, label)"
                " VALUES (?, ?, ?, ?, ?) RETURNING vote_id",
                [now, reporter, domain, digest, label],
            )
            assert row is not None
            for band in dict.fromkeys(bands):
                tx.execute(
                    "INSERT INTO vote_bands (band, vote_id, created) VALUES (?, ?, ?)",
                    [band, int(row["vote_id"]), now],
                )

    def votes(self, bands: Sequence[str], since: float) -> list[Vote]:
        bands = list(dict.fromkeys(bands))
        if not bands:
            return []
        marks = ", ".join("?" for _ in bands)
        rows = self.db.query(
            "SELECT DISTINCT v.reporter, v.domain, v.label FROM vote_bands b"
            " JOIN feedback_votes v ON v.vote_id = b.vote_id"
            f" WHERE b.band IN ({marks}) AND b.created >= ? ORDER BY v.reporter, v.label",
            [*bands, since],
        )
        return [Vote(r["reporter"], r["domain"], r["label"]) for r in rows]

    def purge_votes(self, before: float) -> int:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM vote_bands WHERE created < ?", [before])
            return tx.execute("DELETE FROM feedback_votes WHERE created < ?", [before])

    def last_event_id(self) -> int:
        row = self.db.query_one("SELECT MAX(event_id) AS m FROM learn_events")
        return int(row["m"]) if row and row["m"] is not None else 0

    def training_set(self) -> Iterator[tuple[str, str, bytes]]:
        rows = self.db.query("SELECT digest, label FROM learned ORDER BY updated")
        for r in rows:
            raw = self.message(r["digest"])
            if raw is not None:
                yield r["digest"], r["label"], raw

    # ---- full retrains ---------------------------------------------------------------------
    def record_retrain(
        self, model_version: str, last_event_id: int, promoted: bool, detail: dict[str, Any]
    ) -> None:
        self.db.execute(
            "INSERT INTO retrains (created, model_version, last_event_id, promoted, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            [time.time(), model_version, last_event_id, int(promoted), dumps(detail)],
        )

    def retrain_event_id(self, model_version: str) -> int | None:
        """The last learn event a retrained model already contains (None: not a retrain)."""
        row = self.db.query_one(
            "SELECT last_event_id FROM retrains WHERE model_version = ?"
            " ORDER BY run_id DESC LIMIT 1",
            [model_version],
        )
        return int(row["last_event_id"]) if row else None


def normalize_pattern(pattern: str) -> str:
    p = pattern.strip().lower()
    if p.startswith("@"):
        p = "*" + p
    return p


class SqlListRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db
        # bumped by every change made through this object: caches in this process see their
        # own writes at once, without asking the database
        self.local_version = 0

    def _bump(self) -> None:
        self.db.execute("UPDATE list_version SET version = version + 1 WHERE id = 1")
        self.local_version += 1

    def add(self, entry: ListEntry) -> bool:
        if entry.kind not in LIST_KINDS:
            raise ValueError(f"unknown list kind {entry.kind!r} (one of {', '.join(LIST_KINDS)})")
        pattern = normalize_pattern(entry.pattern)
        if not pattern:
            raise ValueError("empty list pattern")
        with self.db.transaction():
            n = self.db.execute(
                "INSERT INTO sender_lists (kind, owner, pattern, created, added_by, comment)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, owner, pattern) DO NOTHING",
                [
                    entry.kind,
                    entry.owner.strip().lower(),
                    pattern,
                    entry.created or time.time(),
                    entry.added_by,
                    entry.comment,
                ],
            )
            if n:
                self._bump()
        return bool(n)

    def remove(self, kind: str, pattern: str, owner: str = "") -> bool:
        with self.db.transaction():
            n = self.db.execute(
                "DELETE FROM sender_lists WHERE kind = ? AND owner = ? AND pattern = ?",
                [kind, owner.strip().lower(), normalize_pattern(pattern)],
            )
            if n:
                self._bump()
        return bool(n)

    def entries(self, kind: str | None = None, owner: str | None = None) -> list[ListEntry]:
        where, params = _where(
            ("kind =", kind), ("owner =", owner.strip().lower() if owner is not None else None)
        )
        rows = self.db.query(
            "SELECT kind, owner, pattern, created, added_by, comment FROM sender_lists"
            f"{where} ORDER BY kind, owner, pattern",
            params,
        )
        return [
            ListEntry(
                r["kind"],
                r["pattern"],
                r["owner"],
                float(r["created"]),
                r["added_by"],
                r["comment"],
            )
            for r in rows
        ]

    def version(self) -> int:
        row = self.db.query_one("SELECT version FROM list_version WHERE id = 1")
        return int(row["version"]) if row else 0


class SqlAuditRepo:
    def __init__(self, db: SqlStore) -> None:
        self.db = db

    def record(
        self, actor: str, action: str, target: str = "", detail: dict[str, Any] | None = None
    ) -> None:
        self.db.execute(
            "INSERT INTO audit (created, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            [time.time(), actor, action, target, dumps(detail or {})],
        )

    def recent(
        self, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEvent]:
        where, params = _where(("actor =", actor), ("action =", action))
        rows = self.db.query(
            "SELECT event_id, created, actor, action, target, detail FROM audit"
            f"{where} ORDER BY event_id DESC LIMIT ?",
            [*params, limit],
        )
        return [
            AuditEvent(
                r["actor"],
                r["action"],
                r["target"],
                loads(r["detail"], {}),
                float(r["created"]),
                int(r["event_id"]),
            )
            for r in rows
        ]


def _where(*conds: tuple[str, Any]) -> tuple[str, list[Any]]:
    """ " WHERE a = ? AND b >= ?" for the conditions whose value is not None.

    Always yields a WHERE clause (``1 = 1`` when empty) so callers may append ``AND ...``.
    """
    parts = [f"{c} ?" for c, v in conds if v is not None]
    params = [v for _, v in conds if v is not None]
    return " WHERE " + (" AND ".join(parts) if parts else "1 = 1"), params
