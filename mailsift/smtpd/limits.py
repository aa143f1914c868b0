"""Per-IP limits shared by all sessions of one server, and line-ending hygiene for DATA.

* ``ConnectionCounter``: simultaneous connections per client IP (``421 4.7.0`` above it).
* ``SharedConnectionTable`` / ``SharedConnectionCounter``: the same limit when several worker
  processes serve one filter (``smtp.workers``): counts in shared memory, per worker.
* ``AuthThrottle``: failed AUTH attempts per client IP in a sliding window, counted in the
  store (every worker and node) when there is one; once over the limit, AUTH is refused with
  ``454 4.7.0`` until old failures age out (RFC 4954 section 6).
* ``inspect_line_endings``: SMTP smuggling (SEC Consult, 2023; CVE-2023-51764/51765/51766):
  aiosmtpd only ends DATA on ``<CR><LF>.<CR><LF>``, but a message that *contains* ``<LF>.<CR><LF>``
  or ``<CR><LF>.<LF>`` (or any "." line ended or started by a bare CR/LF, or a line starting
  with a bare CR/LF, which is what ``<CR><LF>.<LF>`` becomes once un-dot-stuffed) could end DATA early
  on a next hop that is more lenient, and what follows would be read as new commands there.
  Such messages are refused; other bare CRs/LFs are normalised to CRLF (or refused when
  ``settings.smtp.bare_newlines = "reject"``).
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import re
import struct
import threading
import time
import zlib
from collections import defaultdict, deque
from enum import Enum
from typing import Any

# a line holding only "." where either line break around it is not a proper CRLF
_SMUGGLE_RE = re.compile(rb"(?:^|\r\n|\r|\n)\.(?:\r\n|\r|\n)")
# aiosmtpd removes the leading dot of every line (RFC 5321 4.5.2), so "<CRLF>.<LF>" arrives
# as "<CRLF><LF>": a line that *starts* with a bare LF/CR is ambiguous and treated alike
_UNSTUFFED_RE = re.compile(rb"(?:^|\r\n)(?:\n|\r(?!\n))")
_BARE_RE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class LineEndings(Enum):
    CLEAN = "clean"
    BARE = "bare"  # bare CR or LF somewhere, but no smuggling form
    SMUGGLING = "smuggling"


def inspect_line_endings(data: bytes) -> LineEndings:
    if not _BARE_RE.search(data):
        return LineEndings.CLEAN
    if _UNSTUFFED_RE.search(data):
        return LineEndings.SMUGGLING
    for m in _SMUGGLE_RE.finditer(data):
        g = m.group(0)
        if g != b"\r\n.\r\n" and not (m.start() == 0 and g == b".\r\n"):
            return LineEndings.SMUGGLING
    return LineEndings.BARE


def normalise_line_endings(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


class ConnectionCounter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._count: dict[str, int] = defaultdict(int)

    def acquire(self, ip: str) -> bool:
        """Count a new connection; False (and not counted) when the IP is at its limit."""
        with self._lock:
            if self.limit and self._count[ip] >= self.limit:
                return False
            self._count[ip] += 1
            return True

    def release(self, ip: str) -> None:
        with self._lock:
            self._count[ip] -= 1
            if self._count[ip] <= 0:
                del self._count[ip]

    def current(self, ip: str) -> int:
        with self._lock:
            return self._count.get(ip, 0)


class AuthThrottle:
    """Failed AUTH attempts per client IP in a sliding window of ``window`` seconds: at
    ``max_failures`` (0: never) AUTH from that IP is refused until old failures age out. A
    successful login forgets that (IP, user)'s earlier failures (typos), not other users'.

    With a store (``store.auth_failures``) the attempts are counted there, on the wall clock,
    so every worker process and node of a filter meets the same limit (a guesser spreading
    its attempts over them gains nothing); its calls then block on the store, so the SMTP
    handler makes them in a thread. Without one (no accounts store), in this process.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self, max_failures: int, window: float, clock=time.monotonic, store: Any = None
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.log = store.auth_failures if store is not None else None
        self._lock = threading.Lock()
        self._fails: dict[str, deque[tuple[float, str]]] = defaultdict(deque)

    def _prune(self, ip: str) -> deque[tuple[float, str]]:
        q = self._fails[ip]
        cutoff = self.clock() - self.window
        while q and q[0][0] < cutoff:
            q.popleft()
        return q

    def blocked(self, ip: str) -> bool:
        if self.max_failures <= 0:
            return False
        if self.log is not None:
            since = time.time() - self.window
            return self.log.failures(since, client_ip=ip) >= self.max_failures  # type: ignore[no-any-return]
        with self._lock:
            return len(self._prune(ip)) >= self.max_failures

    def failure(self, ip: str, user: str = "") -> None:
        if self.log is not None:
            now = time.time()
            self.log.record_failure(ip, user, now)
            self.log.purge_failures(now - self.window)
            return
        with self._lock:
            self._prune(ip).append((self.clock(), user))

    def success(self, ip: str, user: str = "") -> None:
        if self.log is not None:
            self.log.clear_failures(ip, user)
            return
        with self._lock:
            q = self._prune(ip)
            kept = [f for f in q if f[1] != user]
            q.clear()
            q.extend(kept)


class SharedConnectionTable:
    """Connections per client IP counted across the worker processes of one filter.

    An anonymous shared mapping made by the supervisor before it forks the workers, so
    every worker sees the same counts: an open-addressing table (linear probing, deletion
    by backward shift) of ``slots`` entries, each the IP (16 bytes, IPv4 mapped into IPv6)
    and one 32-bit count per worker. Each worker writes only its own column, so when a
    worker dies the supervisor drops what it held (:meth:`clear_worker`) and the limit
    stays true for the others. Updates are serialised by a POSIX record lock on an
    unlinked temporary file: held per process, and released by the kernel when its holder
    dies, so a killed worker never leaves the table locked.
    """

    KEY = 16

    def __init__(self, workers: int, slots: int = 8192) -> None:
        import mmap
        import tempfile

        self.workers = workers
        self.slots = slots
        self.entry = self.KEY + 4 * workers
        self._mem = mmap.mmap(-1, self.entry * slots)  # MAP_SHARED | MAP_ANONYMOUS
        self._lockfile = tempfile.TemporaryFile()  # noqa: SIM115 (lives with the table)
        self._tlock = threading.Lock()
        self._counts = struct.Struct(f"={workers}i")

    # ---- locking ---------------------------------------------------------------------------
    def _lock(self) -> None:
        self._tlock.acquire()
        fcntl.lockf(self._lockfile.fileno(), fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self._lockfile.fileno(), fcntl.LOCK_UN)
        self._tlock.release()

    # ---- slots -----------------------------------------------------------------------------
    @staticmethod
    def key(ip: str) -> bytes:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return hashlib.blake2b(ip.encode(), digest_size=16).digest()
        if isinstance(addr, ipaddress.IPv4Address):
            return b"\0" * 10 + b"\xff\xff" + addr.packed
        return addr.packed

    def _key_at(self, i: int) -> bytes:
        off = i * self.entry
        return self._mem[off : off + self.KEY]

    def _counts_at(self, i: int) -> tuple[int, ...]:
        return self._counts.unpack_from(self._mem, i * self.entry + self.KEY)

    def _home(self, key: bytes) -> int:
        return zlib.crc32(key) % self.slots

    def _find(self, key: bytes) -> tuple[int, bool]:
        """(slot of ``key``, True) or (the empty slot it would go into, False); (-1, False)
        when the table is full."""
        i = self._home(key)
        for _ in range(self.slots):
            k = self._key_at(i)
            if k == key:
                return i, True
            if k == _EMPTY_KEY:
                return i, False
            i = (i + 1) % self.slots
        return -1, False

    def _delete(self, i: int) -> None:
        """Empty slot ``i`` and shift later entries of its probe run back (no tombstones)."""
        n = self.slots
        j = i
        while True:
            j = (j + 1) % n
            k = self._key_at(j)
            if k == _EMPTY_KEY:
                break
            h = self._home(k)
            # the entry at j may move to i when its home is not within (i, j]
            if (i < j and (h <= i or h > j)) or (i > j and h <= i and h > j):
                src, dst = j * self.entry, i * self.entry
                self._mem[dst : dst + self.entry] = self._mem[src : src + self.entry]
                i = j
        off = i * self.entry
        self._mem[off : off + self.entry] = bytes(self.entry)

    # ---- counting --------------------------------------------------------------------------
    def acquire(self, worker: int, ip: str, limit: int) -> bool:
        key = self.key(ip)
        self._lock()
        try:
            i, found = self._find(key)
            if i < 0:  # more distinct IPs connected at once than slots: not counted
                return True
            counts = list(self._counts_at(i)) if found else [0] * self.workers
            if limit and sum(counts) >= limit:
                return False
            counts[worker] += 1
            off = i * self.entry
            if not found:
                self._mem[off : off + self.KEY] = key
            self._counts.pack_into(self._mem, off + self.KEY, *counts)
            return True
        finally:
            self._unlock()

    def release(self, worker: int, ip: str) -> None:
        key = self.key(ip)
        self._lock()
        try:
            i, found = self._find(key)
            if not found:
                return
            counts = list(self._counts_at(i))
            counts[worker] = max(0, counts[worker] - 1)
            if sum(counts) == 0:
                self._delete(i)
            else:
                self._counts.pack_into(self._mem, i * self.entry + self.KEY, *counts)
        finally:
            self._unlock()

    def current(self, ip: str) -> int:
        self._lock()
        try:
            i, found = self._find(self.key(ip))
            return sum(self._counts_at(i)) if found else 0
        finally:
            self._unlock()

    def clear_worker(self, worker: int) -> None:
        """Forget the connections a (dead) worker held, then rebuild the table without the
        entries that leaves empty."""
        self._lock()
        try:
            live: list[tuple[bytes, list[int]]] = []
            for i in range(self.slots):
                k = self._key_at(i)
                if k == _EMPTY_KEY:
                    continue
                counts = list(self._counts_at(i))
                counts[worker] = 0
                if sum(counts):
                    live.append((k, counts))
            self._mem[:] = bytes(len(self._mem))
            for k, counts in live:
                i, _found = self._find(k)
                off = i * self.entry
                self._mem[off : off + self.KEY] = k
                self._counts.pack_into(self._mem, off + self.KEY, *counts)
        finally:
            self._unlock()


_EMPTY_KEY = bytes(SharedConnectionTable.KEY)


class SharedConnectionCounter:
    """``ConnectionCounter``'s interface over a :class:`SharedConnectionTable`, for worker
    ``worker``: the limit holds for the sum over all workers."""

    def __init__(self, table: SharedConnectionTable, worker: int, limit: int) -> None:
        self.table, self.worker, self.limit = table, worker, limit

    def acquire(self, ip: str) -> bool:
        return self.table.acquire(self.worker, ip, self.limit)

    def release(self, ip: str) -> None:
        self.table.release(self.worker, ip)

    def current(self, ip: str) -> int:
        return self.table.current(ip)
