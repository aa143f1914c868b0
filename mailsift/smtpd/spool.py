"""Store-and-forward mode: a durable spool in front of the next hop.

A message is accepted (``250``) only after ``Spool.put`` returned: the message file was
written to ``tmp/``, fsynced, renamed into ``queue/`` and the directory fsynced (the rename
is the commit point). ``SpoolRunner`` delivers in the background with exponential backoff
(``spool_retry_initial`` doubling up to ``spool_retry_max``), and the queue is rescanned on
start, so nothing accepted is dropped by a restart.

Exactly once: when the next hop accepted the message for some recipients, that fact is
recorded durably (``<id>.state``, written by rename + fsync) *before* the message file is
deleted, and recipients already marked done are never sent again. The remaining window is
the one SMTP itself has (the next hop said 250 but we crashed before writing the mark).

A permanent refusal by the next hop moves the recipient into ``failed`` (kept in
``failed/`` for the operator, logged); no bounce is generated (no backscatter). So does a
message still undelivered ``spool_max_age`` after it was accepted (5 days by default, like
Postfix's ``maximal_queue_lifetime``): it stops being retried and waits in ``failed/``, with
the last error, for the operator to deliver by hand.

File format: ``<id>.msg`` is one JSON line (envelope) followed by the raw message bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailsift.durable import fsync_dir, write_durably
from mailsift.smtpd.delivery import DeliveryError, deliver_async

log = logging.getLogger("mailsift.smtpd.spool")


@dataclass(slots=True)
class SpoolEntry:
    id: str
    mail_from: str
    rcpts: list[str]
    data: bytes
    received: float
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    last_error: str = ""

    @property
    def pending(self) -> list[str]:
        return [r for r in self.rcpts if r not in self.done and r not in self.failed]


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue = root / "queue"
        self.tmp = root / "tmp"
        self.failed_dir = root / "failed"
        for d in (self.queue, self.tmp, self.failed_dir):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # half-written files of a crash: never acked
            leftover.unlink(missing_ok=True)

    def put(self, mail_from: str, rcpts: Sequence[str], data: bytes, queue_id: str = "") -> str:
        qid = queue_id or uuid.uuid4().hex
        head = {"mail_from": mail_from, "rcpts": list(rcpts), "received": time.time()}
        write_durably(self.queue / f"{qid}.msg", json.dumps(head).encode() + b"\n" + data, self.tmp)
        return qid

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.queue.glob("*.msg"))

    def load(self, qid: str) -> SpoolEntry:
        raw = (self.queue / f"{qid}.msg").read_bytes()
        head_line, _, data = raw.partition(b"\n")
        head = json.loads(head_line)
        entry = SpoolEntry(qid, head["mail_from"], head["rcpts"], data, head["received"])
        state_path = self.queue / f"{qid}.state"
        if state_path.exists():
            st = json.loads(state_path.read_text())
            entry.done = st.get("done", [])
            entry.failed = st.get("failed", {})
            entry.attempts = st.get("attempts", 0)
            entry.last_error = st.get("last_error", "")
        return entry

    def save_state(self, entry: SpoolEntry) -> None:
        st = {
            "done": entry.done,
            "failed": entry.failed,
            "attempts": entry.attempts,
            "last_error": entry.last_error,
        }
        write_durably(self.queue / f"{entry.id}.state", json.dumps(st).encode(), self.tmp)

    def finish(self, entry: SpoolEntry) -> None:
        """All recipients done or failed: delete (failed ones are kept in failed/)."""
        msg, state = self.queue / f"{entry.id}.msg", self.queue / f"{entry.id}.state"
        if entry.failed:
            os.replace(msg, self.failed_dir / msg.name)
            if state.exists():
                os.replace(state, self.failed_dir / state.name)
            fsync_dir(self.failed_dir)
        else:
            msg.unlink(missing_ok=True)  # the .state (all done) outlives the .msg
            state.unlink(missing_ok=True)
        fsync_dir(self.queue)

    def __len__(self) -> int:
        return len(self.ids())


class SpoolRunner:
    """Delivers spooled mail in the server's event loop, with backoff; rescans on start."""

    def __init__(
        self,
        spool: Spool,
        *,
        host: str,
        port: int,
        helo: str,
        timeout: float,
        retry_initial: float,
        retry_max: float,
        max_age: float = 5 * 86400.0,
        concurrency: int = 8,
    ) -> None:
        self.spool = spool
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.max_age = max_age
        self._sem = asyncio.Semaphore(concurrency)
        self._next_try: dict[str, float] = {}
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)

    def wake(self, qid: str | None = None) -> None:
        if qid:
            self._next_try[qid] = 0.0
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            for qid in self.spool.ids():
                if qid in self._inflight or self._next_try.get(qid, 0.0) > now:
                    continue
                self._inflight.add(qid)
                task = asyncio.get_running_loop().create_task(self._attempt(qid))
                self._workers.add(task)
                task.add_done_callback(self._workers.discard)
            due = [t for q, t in self._next_try.items() if q not in self._inflight]
            delay = min([max(0.05, t - now) for t in due] + [self.retry_max, 5.0])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _attempt(self, qid: str) -> None:
        try:
            async with self._sem:
                await self._deliver(qid)
        except Exception:
            log.exception("spool: unexpected error delivering %s", qid)
            self._backoff_only(qid, 1)
        finally:
            self._inflight.discard(qid)
            self._wake.set()

    def _backoff_only(self, qid: str, attempts: int) -> None:
        delay = min(self.retry_max, self.retry_initial * (2 ** max(0, attempts - 1)))
        self._next_try[qid] = time.monotonic() + delay

    def _expire(self, entry: SpoolEntry) -> None:
        """Past ``max_age``: the recipients still pending fail (kept in failed/, no bounce)."""
        age = time.time() - entry.received
        if not entry.pending or age <= self.max_age:
            return
        reason = (
            f"expired: not delivered {age / 3600.0:.1f} h after it was accepted"
            f" (last error: {entry.last_error or 'none'})"
        )
        for r in entry.pending:
            entry.failed[r] = reason
        log.error("spool %s: %s; kept in failed/ for the operator", entry.id, reason)

    async def _deliver(self, qid: str) -> None:
        try:
            entry = await asyncio.to_thread(self.spool.load, qid)
        except FileNotFoundError:
            self._next_try.pop(qid, None)
            return
        pending = entry.pending
        if pending:
            try:
                res = await deliver_async(
                    self.host,
                    self.port,
                    entry.mail_from,
                    pending,
                    entry.data,
                    self.timeout,
                    helo=self.helo,
                    partial=True,
                )
            except DeliveryError as exc:
                entry.attempts += 1
                entry.last_error = str(exc)
                if exc.temporary:
                    log.info("spool %s: deferred (%s)", qid, exc)
                else:
                    log.warning("spool %s: refused permanently (%s)", qid, exc)
                    for r in pending:
                        entry.failed[r] = str(exc)
                self._expire(entry)
                await asyncio.to_thread(self.spool.save_state, entry)
                if entry.pending:
                    self._backoff_only(qid, entry.attempts)
                    return
            else:
                entry.done.extend(res.accepted)
                for r, (code, msg) in res.refused.items():
                    if code >= 500:
                        entry.failed[r] = f"{code} {msg}"
                entry.attempts += 1
                self._expire(entry)
                # the durable mark comes before anything is deleted: never delivered twice
                await asyncio.to_thread(self.spool.save_state, entry)
                if entry.pending:
                    self._backoff_only(qid, entry.attempts)
                    return
        await asyncio.to_thread(self.spool.finish, entry)
        self._next_try.pop(qid, None)
        log.info("spool %s: delivered to %s", qid, ", ".join(entry.done) or "nobody")
