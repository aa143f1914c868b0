"""Hyperscan databases for the scan targets, compiled in a sandboxed child process.

All patterns of a target go into one Hyperscan database (``HS_FLAG_SINGLEMATCH``):
patterns Hyperscan takes exactly answer directly (``MODE_HS``); patterns it can only
approximate (look-arounds, back-references, possessive quantifiers) are compiled in
``HS_FLAG_PREFILTER`` mode and a hit is confirmed (``MODE_PREFILTER``); the rare pattern
Hyperscan refuses even then runs alone (``MODE_RE``). A prefilter pattern enters the
database with its bounded repeats opened up (:func:`relax_repeats`: a superset Hyperscan
scans much faster; its hits are confirmed anyway).

A few patterns make Hyperscan's compiler run for minutes or eat gigabytes (prefilter mode on
wide bounded repeats). Compiling in a child process (:class:`Compiler`) with a memory cap
and a timeout per pattern contains that: a pattern that times out runs alone. Each
target's database is built in one go with predicted flags (:func:`predict_flags`);
patterns with inner anchors (which Hyperscan may refuse) are tried alone first, and huge or
nested-bounded-repeat patterns (:func:`too_complex`) enter as relaxed prefilters or are left
out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any

from mailsift.classifier.rules.targets import MODE_HS, MODE_PREFILTER, MODE_RE, Entry, Target, hs

# the engine's modules log under one name, the one operators filter on
log = logging.getLogger("mailsift.classifier.rules.engine")

TRIAL_TIMEOUT = 10.0  # seconds for one pattern
DB_TIMEOUT = 900.0  # seconds for one target's database
CHILD_MEMORY = 4 * 1024**3


def _child_main(conn: Any, parent_end: Any, parent_pid: int) -> None:  # pragma: no cover
    """The compiler process: answers ``conn`` until told to stop or the parent goes."""
    from mailsift.lifecycle import die_with_parent

    die_with_parent(parent_pid)
    # the parent's end of the pipe, inherited through fork: held here too, the parent's
    # death would never show as EOF (recv) or EPIPE (send), and a send of a database larger
    # than the pipe's buffer would block for good
    parent_end.close()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    except (ImportError, ValueError, OSError):
        pass
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "try":
            conn.send(_try_compile(msg[1], msg[2], msg[3]))
        elif msg[0] == "db":
            try:
                db = hs.Database()
                db.compile(
                    expressions=msg[1],
                    ids=list(range(len(msg[1]))),
                    elements=len(msg[1]),
                    flags=msg[2],
                )
                conn.send(("ok", hs.dumpb(db)))
            except Exception as exc:
                conn.send(("error", str(exc)))
        else:
            return


_NEEDS_PREFILTER_RE = re.compile(rb"\(\?<?[=!]|\\[1-9]|\(\?P=|\(\?>|[*+?}]\+|\(\?\(")
HUGE_PATTERN = 20000  # bytes: left to re (the compiler takes minutes on such expansions)
LONG_PATTERN = 1500  # bytes: long patterns with nested bounded repeats ...
MAX_NESTED_REPEAT = 200  # ... unrolling beyond this are left to re


def predict_flags(pattern: bytes, flags: int, py: re.Pattern[bytes]) -> int:
    """The flags hyperscan most likely accepts: prefilter for what it cannot do exactly."""
    if hs is None:
        return 0
    out = flags | hs.HS_FLAG_SINGLEMATCH
    if _NEEDS_PREFILTER_RE.search(pattern):
        return out | hs.HS_FLAG_PREFILTER | hs.HS_FLAG_ALLOWEMPTY
    if py.search(b"") is not None:
        out |= hs.HS_FLAG_ALLOWEMPTY
    return out


def _try_compile(pattern: bytes, flags: int, predicted: int = 0) -> int | None:
    """Flags with which hyperscan takes ``pattern`` alone (predicted ones first), or None."""
    base = flags | hs.HS_FLAG_SINGLEMATCH
    pf = hs.HS_FLAG_PREFILTER
    options = [base | extra for extra in (0, hs.HS_FLAG_ALLOWEMPTY, pf, pf | hs.HS_FLAG_ALLOWEMPTY)]
    if predicted:
        options.insert(0, predicted)
    for candidate in options:
        try:
            hs.Database().compile(expressions=[pattern], ids=[0], elements=1, flags=[candidate])
            return candidate
        except Exception:  # noqa: S112 - hyperscan.error or MemoryError: try the next mode
            continue
    return None


class Compiler:
    """A child process that compiles patterns; restarted when a compile times out."""

    def __init__(self) -> None:
        import multiprocessing

        # fork: the child needs nothing but hyperscan, and spawn would re-run __main__
        self._ctx = multiprocessing.get_context("fork")
        self._proc: Any = None
        self._conn: Any = None
        self.broken = False  # the child failed other than by a timeout: do not cache

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child_main, args=(child, parent, os.getpid()), daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent

    def _call(self, msg: tuple[Any, ...], timeout: float) -> Any:
        try:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            self._conn.send(msg)
            if self._conn.poll(timeout):
                return self._conn.recv()
        except Exception as exc:  # child died, pipe broke, could not start
            log.warning("hyperscan compiler process failed: %s", exc)
            self.broken = True
        self.close()  # timed out or died: kill it, the next call starts a fresh one
        raise TimeoutError

    def trial(self, pattern: bytes, flags: int, predicted: int = 0) -> int | None:
        try:
            result: int | None = self._call(("try", pattern, flags, predicted), TRIAL_TIMEOUT)
            return result
        except TimeoutError:
            log.warning("hyperscan gave up on %r (timeout); using re", pattern[:80])
            return None

    def database(self, exprs: list[bytes], flags: list[int]) -> bytes | None:
        try:
            status, payload = self._call(("db", exprs, flags), DB_TIMEOUT)
        except TimeoutError:
            return None
        return payload if status == "ok" else None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(("stop",))
        if self._proc is not None:
            self._proc.join(timeout=1)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = None
        self._conn = None


def _set_mode(e: Entry, flags: int | None) -> None:
    """Record the flags Hyperscan takes the pattern with (None: it runs alone)."""
    if flags is None:
        e.mode = MODE_RE
    else:
        e.mode = MODE_PREFILTER if flags & hs.HS_FLAG_PREFILTER else MODE_HS
        e.predicted = flags


def _class_end(p: bytes, i: int) -> int:
    """Index of the ``]`` closing the character class that opens at ``p[i]`` (``len(p)`` if
    unclosed); a leading ``^`` and a ``]`` right after it are literal, escapes are skipped."""
    j, n = i + 1, len(p)
    if p[j : j + 1] == b"^":
        j += 1
    if p[j : j + 1] == b"]":
        j += 1
    while j < n and p[j : j + 1] != b"]":
        j += 2 if p[j : j + 1] == b"\\" else 1
    return j


def relax_repeats(p: bytes) -> bytes:
    """``X{a,b}`` -> ``X{a,}`` (``X*``, ``X+``): a superset of what ``p`` matches."""
    out = bytearray()
    i, n = 0, len(p)
    while i < n:
        c = p[i : i + 1]
        if c == b"\\":
            out += p[i : i + 2]
            i += 2
            continue
        if c == b"[":
            j = _class_end(p, i)
            out += p[i : j + 1]
            i = j + 1
            continue
        m = _QUANT_RE.match(p, i) if c == b"{" else None
        if m:
            low = int(m.group(1))
            out += b"*" if low == 0 else b"+" if low == 1 else b"{%d,}" % low
            i = m.end()
            continue
        out += c
        i += 1
    return bytes(out)


def too_complex(pattern: bytes) -> bool:
    """Patterns Hyperscan's compiler chokes on (minutes, gigabytes): leave them to re.

    Two kinds show up in the stock rules: huge ReplaceTags expansions, and bounded repeats
    nested in bounded repeats (``(?:...[...]{1,80}...){5}``), which Hyperscan unrolls.
    """
    if len(pattern) > HUGE_PATTERN:
        return True
    return len(pattern) > LONG_PATTERN and nested_repeat_product(pattern) > MAX_NESTED_REPEAT


_QUANT_RE = re.compile(rb"\{(\d+)(?:,(\d*))?\}")


def nested_repeat_product(p: bytes) -> int:
    """Largest product of bounded-repeat counts along one nesting path (1 when none nest)."""
    stack: list[int] = [1]  # the largest product inside each open group
    best = 1
    last_atom = 1  # product of the atom just read (a group's inner product, else 1)
    i, n = 0, len(p)
    while i < n:
        c = p[i : i + 1]
        if c == b"\\":
            i += 2
            last_atom = 1
            continue
        if c == b"[":
            i = _class_end(p, i) + 1
            last_atom = 1
            continue
        if c == b"(":
            stack.append(1)
            i += 1
            continue
        if c == b")":
            inner = stack.pop() if len(stack) > 1 else 1
            last_atom = inner
            i += 1
            continue
        m = _QUANT_RE.match(p, i) if c == b"{" else None
        if m:
            hi = int(m.group(2) or m.group(1)) if m.group(2) != "" else int(m.group(1))
            product = max(1, hi) * last_atom if last_atom > 1 else max(1, hi)
            if last_atom > 1:
                best = max(best, product)
            stack[-1] = max(stack[-1], product)
            i = m.end()
            continue
        stack[-1] = max(stack[-1], last_atom)
        last_atom = 1
        i += 1
    return best


def inner_anchor(p: bytes) -> bool:
    """``^`` or ``$`` somewhere other than the pattern's two ends (outside classes)."""
    i, n = 0, len(p)
    while i < n:
        c = p[i : i + 1]
        if c == b"\\":
            i += 2
            continue
        if c == b"[":
            i = _class_end(p, i) + 1
            continue
        if (c == b"^" and i > 0) or (c == b"$" and i < n - 1):
            return True
        i += 1
    return False


def compile_target(t: Target, compiler: Compiler) -> None:
    """Build a target's database; patterns hyperscan refuses (or chokes on) run with re.

    Patterns go straight into the database with their predicted flags; only when that
    fails is each pattern tried alone (in the child, with a timeout) to find the culprits.
    """
    for e in t.entries:
        e.db_pattern = None
        if len(e.hs_pattern) > HUGE_PATTERN:
            _set_mode(e, None)
        elif too_complex(e.hs_pattern):
            # a superset with the bounded repeats opened up compiles fast; hits are confirmed
            e.db_pattern = relax_repeats(e.hs_pattern)
            pf = e.hs_flags | hs.HS_FLAG_SINGLEMATCH | hs.HS_FLAG_PREFILTER | hs.HS_FLAG_ALLOWEMPTY
            ok = compiler.trial(e.db_pattern, e.hs_flags, pf)
            _set_mode(e, pf if ok is not None else None)
            if ok is not None:
                e.mode = MODE_PREFILTER
        elif inner_anchor(e.hs_pattern):  # hyperscan refuses some: find out one by one
            _set_mode(e, compiler.trial(e.hs_pattern, e.hs_flags, e.predicted))
            _relax_prefilter(e)
        else:
            _set_mode(e, e.predicted)
            _relax_prefilter(e)
    if not _build_db(t, compiler):
        for e in t.entries:
            if e.mode != MODE_RE:
                if not too_complex(e.hs_pattern):
                    e.db_pattern = None  # the exact pattern, as tried alone
                _set_mode(e, compiler.trial(e.hs_pattern, e.hs_flags, e.predicted))
        if not _build_db(t, compiler):
            log.warning("hyperscan database for %s failed; using re", t.key)
            for e in t.entries:
                e.mode = MODE_RE
            t.db, t.hs_ids = None, []
    t.re_only = [i for i, e in enumerate(t.entries) if e.mode == MODE_RE]


def _relax_prefilter(e: Entry) -> None:
    """A prefilter pattern's hits are confirmed by re anyway: put a superset with its bounded
    repeats opened up in the database, which hyperscan scans far faster (on 1,000 corpus
    bodies: FUZZY_PHARMACY alone 27 -> 2 ms; the whole body database 30% faster)."""
    if e.mode == MODE_PREFILTER:
        relaxed = relax_repeats(e.hs_pattern)
        if relaxed != e.hs_pattern:
            e.db_pattern = relaxed


def _build_db(t: Target, compiler: Compiler) -> bool:
    """Compile the database of the target's Hyperscan patterns; False when it fails."""
    t.hs_ids = [i for i, e in enumerate(t.entries) if e.mode != MODE_RE]
    t.db = None
    if not t.hs_ids:
        return True
    exprs = [t.entries[i].db_pattern or t.entries[i].hs_pattern for i in t.hs_ids]
    flags = [t.entries[i].predicted for i in t.hs_ids]
    blob = compiler.database(exprs, flags)
    if blob is None:
        return False
    t.db = hs.loadb(blob, hs.HS_MODE_BLOCK)
    return True
