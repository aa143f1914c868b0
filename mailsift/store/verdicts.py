"""Verdict records written in batches, off the answer's path, and found again at once.

``VerdictWriter``: the SMTP filter's answer to DATA and the HTTP API's answer to
``POST /v1/score`` wait only for what the message's durability needs, not for the verdict
record (what feedback by verdict id reads later). The record is queued in memory and
written by one background thread: everything queued while a commit ran goes into the next
transaction (``store.verdicts.add_many``), so under load one commit and one fsync serve
many messages, and no scoring thread waits for the disk.

Store outage: a batch the store refuses is kept, in order, and retried with a backoff
(``retry_initial`` doubling up to ``retry_max`` seconds). While the writer is down,
``refusal()`` names the failure and ``submit`` raises ``StoreError``: the filter answers
``451 4.3.0`` (reason ``store``) and the API 503 with ``Retry-After`` to every new message,
as they do when the store fails during scoring. The first batch written clears it. A queue
of ``max_queued`` records or ``max_queued_bytes`` of kept message samples (a store slower
than the load; samples are up to ``feedback.sample_max_bytes`` each) is refused the same
way until it drains. Between the store going away and the first failed write (one commit,
bounded by the store's own deadlines) messages may still be accepted: their records wait in
the queue and are written once the store is back.

A write that fails other than with ``StoreUnavailable`` first asks the store which of its
records it already has (``exists``: the commit may have gone through before the connection
dropped) and counts those as written. A batch that fails as a whole with ``StoreUnavailable`` (the store is down: each record's
write would wait for the same deadline) is kept for the retry. Any other failure of a batch
is written again one record at a time: a record that fails on its own while others go
through (a duplicate verdict id) is logged and dropped, so one bad row never blocks the
queue; when every record fails, or a record fails with ``StoreUnavailable``, the store is
down and they are kept.

``close(timeout)`` (the server's stop, once its requests drained) writes what is queued,
for up to ``timeout`` seconds if the store is down, and logs how many records it could not
write. A process killed outright (``kill -9``) loses the records still queued (at most
one commit's worth under normal load): for the SMTP filter never a message (each was
delivered or spooled before it was answered); for the API, the records of verdicts it had
answered, whose ids feedback then does not find (404).

The thread starts with the first record, in the process that submits it (the servers'
workers are forked after the store is opened).

``find_verdict``: a verdict id just answered may still be queued in the writer of the
worker (or node) that scored it. Verdict ids carry their creation time
(``mailsift.verdict.verdict_id_time``); a lookup of a recent id that the store does not
have yet polls the store for a bounded time (``RECENT_SECONDS``, ``WAIT_SECONDS``) until
that writer's commit lands, so feedback on a verdict id works from any worker at once. An
unknown id that is not recent is answered at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from mailsift.store.base import StoreError, StoreUnavailable, VerdictRecord, VerdictRepo
from mailsift.verdict import verdict_id_time

log = logging.getLogger("mailsift.store.verdicts")

Item = tuple[VerdictRecord, bytes | None]


class VerdictWriter:
    """``write_many(items)``: writes ``items`` in one transaction or raises (normally
    ``store.verdicts.add_many``). ``name``: the writer thread's name. ``exists(verdict_id)``:
    whether the store has that verdict; after a failed write the records it has are counted
    as written (a commit that went through while its connection dropped), not retried for
    ever against their own duplicate keys."""

    def __init__(
        self,
        write_many: Callable[[list[Item]], None],
        *,
        max_batch: int = 256,
        max_queued: int = 10_000,
        max_queued_bytes: int = 64 * 1024 * 1024,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        name: str = "mailsift-verdicts",
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self._exists = exists
        self._write_many = write_many
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0  # message samples queued (not yet being written)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._cond = threading.Condition()
        self._queue: deque[Item] = deque()
        self._busy = False  # a batch is being written
        self._down: str | None = None  # why the last write failed (the store is down)
        self._closing = False
        self._give_up_at = float("inf")  # close(): when to stop retrying a down store
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0

    # ---- the submitting side ---------------------------------------------------------------
    def refusal(self) -> str | None:
        """Why a new message must be refused now (the store is down, the queue is full,
        the writer is closing), or None."""
        with self._cond:
            return self._refusal()

    def _refusal(self) -> str | None:
        if self._closing:
            return "the verdict writer is closing"
        if self._down is not None:
            return f"the store is down: {self._down}"
        if len(self._queue) >= self.max_queued or self._queued_bytes >= self.max_queued_bytes:
            return (
                f"{len(self._queue)} verdict records ({self._queued_bytes} bytes of samples)"
                " wait for the store"
            )
        return None

    def submit(self, rec: VerdictRecord, sample: bytes | None) -> None:
        """Queue one verdict record; raises ``StoreError`` when ``refusal()`` says why not."""
        with self._cond:
            why = self._refusal()
            if why is not None:
                raise StoreError(f"could not record verdict {rec.verdict_id}: {why}")
            self._queue.append((rec, sample))
            self._queued_bytes += len(sample or b"")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif not self._busy:
                self._cond.notify_all()

    def pending(self) -> int:
        """Records queued or being written."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def queued(self) -> int:
        """Records waiting for a write to begin (``max_queued`` bounds them)."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float) -> bool:
        """Wait until every record queued so far is written (True), or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float) -> None:
        """Refuse new records, write those queued (retrying a down store for up to
        ``timeout`` s), stop the thread."""
        with self._cond:
            self._closing = True
            self._give_up_at = time.monotonic() + timeout
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._cond:
            lost = len(self._queue)
        if lost:
            log.warning(
                "%d verdict records not written at shutdown (the store is down: %s)",
                lost,
                self._down,
            )

    # ---- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self.retry_initial
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything is written
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self._queued_bytes -= sum(len(s or b"") for _, s in batch)
                self._busy = True
            kept, error = self._write(batch)
            with self._cond:
                self._busy = False
                if kept:
                    self._queue.extendleft(reversed(kept))  # first in, first written
                    self._queued_bytes += sum(len(s or b"") for _, s in kept)
                    if self._down is None:
                        log.warning("verdict records wait for the store: %s", error)
                    self._down = error or "write failed"
                elif self._down is not None:
                    log.warning("verdict records are written again")
                    self._down = None
                    delay = self.retry_initial
                self._cond.notify_all()
                if kept:
                    if self._closing and time.monotonic() >= self._give_up_at:
                        return
                    wait = min(delay, max(0.0, self._give_up_at - time.monotonic()))
                    self._cond.wait(wait)
                    delay = min(delay * 2, self.retry_max)

    def _stored(self, batch: list[Item]) -> set[str]:
        """The verdict ids of ``batch`` the store already has (``exists``), else none."""
        if self._exists is None:
            return set()
        try:
            return {rec.verdict_id for rec, _ in batch if self._exists(rec.verdict_id)}
        except Exception:  # the store cannot say: nothing is known to be stored
            return set()

    def _write(self, batch: list[Item]) -> tuple[list[Item], str]:
        """Write ``batch``; returns the records to keep for a retry (the store is down) and
        the error, or ``([], "")``."""
        try:
            self._write_many(batch)
            self.written += len(batch)
            return [], ""
        except StoreUnavailable as exc:  # the store is down: one by one would wait as long
            return batch, str(exc)
        except Exception as exc:
            error = str(exc)
        stored = self._stored(batch)
        if stored:  # an earlier attempt committed them, its answer lost (a dropped connection)
            self.written += len(stored)
            batch = [item for item in batch if item[0].verdict_id not in stored]
            if not batch:
                return [], ""
            try:
                self._write_many(batch)
                self.written += len(batch)
                return [], ""
            except StoreUnavailable as exc:
                return batch, str(exc)
            except Exception as exc:
                error = str(exc)
        if len(batch) == 1:
            return batch, error
        kept: list[Item] = []
        bad: list[tuple[Item, Exception]] = []
        for item in batch:
            try:
                self._write_many([item])
                self.written += 1
            except StoreUnavailable as exc:
                kept.append(item)
                error = str(exc)
            except Exception as exc:
                bad.append((item, exc))
        if len(kept) + len(bad) == len(batch):  # nothing goes through: the store is down
            return batch, error
        for (rec, _), why in bad:
            self.dropped += 1
            log.error("verdict %s not recorded: %s", rec.verdict_id, why)
        return kept, error


# a verdict id younger than this may still wait in some worker's writer queue (its time is
# the scorer's clock: the margin covers clock skew between nodes and a commit under load)
RECENT_SECONDS = 30.0
# how long a lookup of such an id waits for the commit that writes it
WAIT_SECONDS = 2.0
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


def find_verdict(
    repo: VerdictRepo,
    verdict_id: str,
    *,
    wait: float = WAIT_SECONDS,
    recent: float = RECENT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> VerdictRecord | None:
    """``repo.get(verdict_id)``; when the store does not have it and the id was made within
    ``recent`` seconds, asks again (every 2 ms, backing off to 50 ms) for up to ``wait``
    seconds: the writer that holds it commits within a few milliseconds normally."""
    rec = repo.get(verdict_id)
    if rec is not None or wait <= 0:
        return rec
    made = verdict_id_time(verdict_id)
    if made is None or abs(clock() - made) > recent:
        return None
    deadline = time.monotonic() + wait
    pause = _POLL_FIRST
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)
        rec = repo.get(verdict_id)
        if rec is not None:
            return rec
