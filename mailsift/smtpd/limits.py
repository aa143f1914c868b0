"""Per-IP limits shared by all sessions of one server, and line-ending hygiene for DATA.

* ``ConnectionCounter``: simultaneous connections per client IP (``421 4.7.0`` above it).
* ``AuthThrottle``: failed AUTH attempts per client IP in a sliding window; once over the
  limit, AUTH is refused with ``454 4.7.0`` until old failures age out (RFC 4954 section 6).
* ``inspect_line_endings``: SMTP smuggling (SEC Consult, 2023; CVE-2023-51764/51765/51766):
  aiosmtpd only ends DATA on ``<CR><LF>.<CR><LF>``, but a message that *contains* ``<LF>.<CR><LF>``
  or ``<CR><LF>.<LF>`` (or any "." line ended or started by a bare CR/LF, or a line starting
  with a bare CR/LF, which is what ``<CR><LF>.<LF>`` becomes once un-dot-stuffed) could end DATA early
  on a next hop that is more lenient, and what follows would be read as new commands there.
  Such messages are refused; other bare CRs/LFs are normalised to CRLF (or refused when
  ``settings.smtp.bare_newlines = "reject"``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from enum import Enum

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
    def __init__(self, max_failures: int, window: float, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def _prune(self, ip: str) -> deque[float]:
        q = self._fails[ip]
        cutoff = self.clock() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, ip: str) -> bool:
        with self._lock:
            return len(self._prune(ip)) >= self.max_failures > 0

    def failure(self, ip: str) -> None:
        with self._lock:
            self._prune(ip).append(self.clock())

    def success(self, ip: str) -> None:
        with self._lock:
            self._fails.pop(ip, None)
