"""Store-and-forward mode: a durable spool in front of the next hop.

A message is accepted (``250``) only after ``Spool.put`` returned: the message file was
written to ``tmp/``, fsynced, renamed into ``queue/`` and the directory fsynced (the rename
is the commit point). ``SpoolRunner`` delivers in the background with exponential backoff
(``spool_retry_initial`` doubling up to ``spool_retry_max``), and the queue is rescanned on
start, so nothing accepted is dropped by a restart.

Delivering once: each delivery attempt is bracketed by two durable marks in ``<id>.state``.
Once the next hop has answered the recipients, and before ``DATA`` is sent, the state is
rewritten (rename + fsync) with ``delivering`` (the recipients being sent to, and since
when), and the state it will have once delivered (those recipients done) is written and
fsynced to ``tmp/``. Right after the next hop's 250 to the end of data, with no I/O wait in
between, that file is renamed over ``<id>.state`` (one rename: the "delivered" mark), then
the directory is fsynced; only then is the message deleted. Recipients marked done are never
sent again. A filter killed mid-delivery finds ``delivering`` on restart: it logs a WARNING
naming the message and recipients and delivers again. If the kill came before the end of
data reached the next hop, the next hop discarded the transaction (RFC 5321 4.1.1.4) and
nothing is duplicated; the one window left is between the next hop's 250 and our rename
(the next hop's reply in flight, a few microseconds of our event loop): a kill exactly there
delivers that message twice, the window SMTP itself has (RFC 1047). The SIGKILL test
measures it.

Several processes on one spool (the workers of ``mailsift serve smtp``): a delivery attempt
first claims its message with an exclusive ``flock`` on ``<id>.msg`` and holds it until the
attempt ended, so each message is in one delivery at a time; a process that finds it
claimed leaves it and looks again later. The kernel drops the claim of a process that dies,
so another worker (or the restart) takes the message over and, finding ``delivering``,
proceeds as above. A deferred message's next attempt time is written into its state
(``next_try``), so the other workers keep the backoff; a runner's first scan after it
started ignores it (a restart retries what it finds at once, as before).

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
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailsift import outages
from mailsift.durable import fsync_dir, write_durably
from mailsift.smtpd.delivery import DeliveryError, DeliveryResult, deliver_async

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
    # {"rcpts": [...], "since": epoch}: an attempt that was sending DATA when the state was
    # last written (found on load after a crash; None otherwise)
    delivering: dict[str, Any] | None = None
    next_try: float = 0.0  # epoch of the next attempt after a deferral (0: at once)

    @property
    def pending(self) -> list[str]:
        return [r for r in self.rcpts if r not in self.done and r not in self.failed]


class Spool:
    def __init__(self, root: Path, *, clean_tmp: bool = True) -> None:
        """``clean_tmp``: remove what a crash left in ``tmp/`` (never acknowledged). Off in
        the workers of a multi-process filter: their supervisor cleans it before they
        start, and a worker restarted later must not remove the others' files in flight."""
        self.root = root
        self.queue = root / "queue"
        self.tmp = root / "tmp"
        self.failed_dir = root / "failed"
        for d in (self.queue, self.tmp, self.failed_dir):
            d.mkdir(parents=True, exist_ok=True)
        if clean_tmp:
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
            entry.delivering = st.get("delivering")
            entry.next_try = st.get("next_try", 0.0)
        return entry

    def claim(self, qid: str) -> int | None:
        """An exclusive claim on message ``qid`` for one delivery attempt: an open file
        descriptor holding ``flock(LOCK_EX)`` on ``<id>.msg`` (give it to :meth:`release`),
        or None when another process holds it or the message is gone."""
        try:
            fd = os.open(self.queue / f"{qid}.msg", os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if os.fstat(fd).st_nlink == 0:  # delivered and removed since it was listed
            os.close(fd)
            return None
        return fd

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the last descriptor drops the flock

    @staticmethod
    def _state_bytes(entry: SpoolEntry) -> bytes:
        st: dict[str, Any] = {
            "done": entry.done,
            "failed": entry.failed,
            "attempts": entry.attempts,
            "last_error": entry.last_error,
        }
        if entry.delivering is not None:
            st["delivering"] = entry.delivering
        if entry.next_try:
            st["next_try"] = entry.next_try
        return json.dumps(st).encode()

    def save_state(self, entry: SpoolEntry) -> None:
        write_durably(self.queue / f"{entry.id}.state", self._state_bytes(entry), self.tmp)

    def mark_delivering(self, entry: SpoolEntry, after: SpoolEntry) -> Path:
        """Before DATA: record durably that ``entry`` is being sent (``entry.delivering``
        set), and write + fsync ``after`` (its state once the next hop said 250) to
        ``tmp/``; returns that file, for ``mark_delivered``."""
        self.save_state(entry)
        prepared = self.tmp / f"{entry.id}.delivered.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        fd = os.open(prepared, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self._state_bytes(after))
            os.fsync(fd)
        finally:
            os.close(fd)
        return prepared

    def mark_delivered(self, entry: SpoolEntry, prepared: Path) -> None:
        """Right after the next hop's 250: one rename makes the prepared state current
        (visible to a restart at once; durable after ``fsync_dir(self.queue)``)."""
        os.replace(prepared, self.queue / f"{entry.id}.state")

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
        recheck: float = 1.0,
    ) -> None:
        """``recheck``: seconds before looking again at a message another process had
        claimed (it may be deferred, or its process may have died)."""
        self.spool = spool
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.max_age = max_age
        self.recheck = recheck
        self._first_scan: set[str] | None = None  # the ids found by the first scan
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
            ids = self.spool.ids()
            if self._first_scan is None:
                self._first_scan = set(ids)
            for qid in ids:
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
                fd = await asyncio.to_thread(self.spool.claim, qid)
                if fd is None:  # another process delivers it, or it is gone
                    self._next_try[qid] = time.monotonic() + self.recheck
                    return
                try:
                    await self._deliver(qid)
                finally:
                    self.spool.release(fd)
        except Exception:
            log.exception("spool: unexpected error delivering %s", qid)
            self._backoff_only(qid, 1)
        finally:
            self._inflight.discard(qid)
            self._wake.set()

    def _delay(self, attempts: int) -> float:
        return min(self.retry_max, self.retry_initial * (2 ** max(0, attempts - 1)))

    def _backoff_only(self, qid: str, attempts: int) -> None:
        self._next_try[qid] = time.monotonic() + self._delay(attempts)

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
        wait = entry.next_try - time.time()
        first = self._first_scan or set()
        if qid in first:
            first.discard(qid)  # only its first attempt here ignores next_try
        elif wait > 0:  # deferred by another worker: keep its backoff
            self._next_try[qid] = time.monotonic() + wait
            return
        if entry.delivering is not None:
            log.warning(
                "spool %s: was being delivered to %s when the filter stopped (since %s):"
                " the next hop may already have it; delivering it again",
                qid,
                ", ".join(entry.delivering.get("rcpts", [])) or "?",
                time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(entry.delivering.get("since", 0)))
                ),
            )
            entry.delivering = None
        pending = entry.pending
        if pending:
            prepared: Path | None = None
            committed = False

            async def before_data(res: DeliveryResult) -> None:
                nonlocal prepared
                entry.delivering = {"rcpts": list(res.accepted), "since": time.time()}
                prepared = await asyncio.to_thread(
                    self.spool.mark_delivering, entry, _after(entry, res)
                )

            def on_accepted(res: DeliveryResult) -> None:
                nonlocal committed
                assert prepared is not None
                try:
                    self.spool.mark_delivered(entry, prepared)
                    committed = True
                except OSError:  # the state is written again below
                    log.exception("spool %s: could not record the delivery at once", qid)

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
                    before_data=before_data,
                    on_accepted=on_accepted,
                )
            except DeliveryError as exc:
                if prepared is not None:
                    prepared.unlink(missing_ok=True)
                entry.delivering = None
                entry.attempts += 1
                entry.last_error = str(exc)
                if exc.unreachable:
                    outages.dependency_failed("next_hop", exc)
                if exc.temporary:
                    log.info("spool %s: deferred (%s)", qid, exc)
                else:
                    log.warning("spool %s: refused permanently (%s)", qid, exc)
                    for r in pending:
                        entry.failed[r] = str(exc)
                self._expire(entry)
                entry.next_try = time.time() + self._delay(entry.attempts) if entry.pending else 0.0
                await asyncio.to_thread(self.spool.save_state, entry)
                if entry.pending:
                    self._backoff_only(qid, entry.attempts)
                    return
            else:
                outages.dependency_ok("next_hop")
                entry = _after(entry, res)
                self._expire(entry)
                # the "delivered" mark (already current after the rename) is made durable
                # before anything is deleted; written in full if the rename failed or
                # recipients remain (their backoff and expiry are in it)
                if committed and not entry.pending:
                    await asyncio.to_thread(fsync_dir, self.spool.queue)
                else:
                    if entry.pending:
                        entry.next_try = time.time() + self._delay(entry.attempts)
                    await asyncio.to_thread(self.spool.save_state, entry)
                if entry.pending:
                    self._backoff_only(qid, entry.attempts)
                    return
        await asyncio.to_thread(self.spool.finish, entry)
        self._next_try.pop(qid, None)
        log.info("spool %s: delivered to %s", qid, ", ".join(entry.done) or "nobody")


def _after(entry: SpoolEntry, res: DeliveryResult) -> SpoolEntry:
    """``entry`` as it is once the next hop said 250 to this attempt's end of data."""
    failed = dict(entry.failed)
    for r, (code, msg) in res.refused.items():
        if code >= 500:
            failed[r] = f"{code} {msg}"
    return replace(
        entry,
        done=[*entry.done, *res.accepted],
        failed=failed,
        attempts=entry.attempts + 1,
        delivering=None,
    )
