"""Scan targets and their compiled patterns, and the matchers that decide a pattern.

Every regex rule is an :class:`Entry` of one :class:`Target` (``body``, ``rawbody``,
``full``, ``uri``, or one header request): its pattern as Python ``re`` compiled it, as
Hyperscan reads it, and, where the native PCRE2 matcher (``_pcre``) gives ``re``'s answers,
as PCRE2 compiled it with JIT. :func:`count` decides an entry on some bytes with PCRE2
when it has it (``re`` when PCRE2 exhausts its backtracking budget), else with ``re``.

Hyperscan and the ``_pcre`` extension are optional at import: without Hyperscan every
pattern runs alone (``MODE_RE``), without ``_pcre`` every decision is ``re``'s.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

# the engine's modules log under one name, the one operators filter on
log = logging.getLogger("mailsift.classifier.rules.engine")

try:  # hyperscan is a dependency, but keep the engine usable without it
    import hyperscan as hs

    HS_VERSION = getattr(hs, "__version__", "unknown")
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    hs = None  # type: ignore[assignment]
    HS_VERSION = "none"

try:  # the native PCRE2 matcher, built with the package (libpcre2-dev); else Python re
    from mailsift.classifier.rules import _pcre

    PCRE_VERSION: str | None = _pcre.version()
except ImportError:  # pragma: no cover - exercised only where the extension was not built
    _pcre = None  # type: ignore[assignment]
    PCRE_VERSION = None

MODE_HS = "hs"  # hyperscan answers exactly
MODE_PREFILTER = "prefilter"  # hyperscan hit confirmed (by PCRE2, else re)
MODE_RE = "re"  # no hyperscan: PCRE2 (else re) alone

MAX_REACH = 1 << 16  # bytes: longer bounds are treated as unbounded


@dataclass(slots=True)
class Entry:
    rule: int
    py: re.Pattern[bytes]
    hs_pattern: bytes
    hs_flags: int  # without SINGLEMATCH / PREFILTER / ALLOWEMPTY
    negate: bool
    multiple: int  # 0: plain hit; N: count matches up to N
    mode: str = MODE_RE
    predicted: int = 0  # hyperscan flags we expect to work (see hscompile.predict_flags)
    db_pattern: bytes | None = None  # a relaxed superset put in the database instead
    empty_result: int = 0  # result on "" (missing header without if-unset)
    unset_result: int | None = None  # result on the if-unset text
    # longest a match (with its look-arounds) can be, in bytes; -1 when unbounded
    reach: int = -1
    pc: Any = None  # the same pattern in PCRE2 (JIT), which decides when set (else ``py``)
    pcre_ok: bool = False  # PCRE2 gives re's answers for it (see perlre.pcre_agrees)


@dataclass(slots=True)
class Target:
    key: str
    entries: list[Entry] = field(default_factory=list)
    db: Any = None
    hs_ids: list[int] = field(default_factory=list)  # hyperscan id -> entry index
    re_only: list[int] = field(default_factory=list)  # entry indexes run with re alone
    negated: list[int] = field(default_factory=list)
    # a few patterns, all in PCRE2: each runs on its own (cheaper than a database scan)
    direct: bool = False

    def spec(self) -> list[tuple[str, int]]:
        """Every pattern with its flags, in entry order (what the cache key hashes)."""
        return [(e.hs_pattern.decode("latin-1"), e.hs_flags) for e in self.entries]


@dataclass(slots=True)
class HeaderTarget:
    """One header request (name + modifiers) and the target holding its regex rules."""

    name: str  # as written (case-insensitive), or a pseudo-header
    modifiers: tuple[str, ...]
    exists_rules: list[int] = field(default_factory=list)
    unset_hits: list[tuple[int, int]] = field(default_factory=list)  # (rule, value) if absent
    plain_name: str | None = None  # lower-cased name when the request reads one real header
    target: Target | None = None  # its own database (None: no regex rules)


def reach(py: re.Pattern[bytes], tree: Any = None) -> int:
    """Most bytes a match of ``py`` spans, plus every look-around's width (-1: unbounded).

    A match ending at or after offset E then starts at or after E minus this: confirming a
    hyperscan hit can begin there instead of at the start of the text.
    """
    try:
        sre_c = importlib.import_module("re._constants")  # stdlib internals: guarded
        sre_parse = importlib.import_module("re._parser")

        if tree is None:
            tree = sre_parse.parse(py.pattern, py.flags)
        total = tree.getwidth()[1]
        stack: list[Any] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, sre_parse.SubPattern):
                for op, av in node.data:
                    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                        total += av[1].getwidth()[1]
                    stack.append(av)
            elif isinstance(node, (tuple, list)):
                stack.extend(node)
    except Exception:  # internals moved or an odd pattern: no bound
        return -1
    return total if total < MAX_REACH else -1


def native(e: Entry) -> Any:
    """An entry's pattern compiled by PCRE2 with JIT (the PCRE variant of the translation,
    as Hyperscan reads it: Perl's own semantics; the flags are its ``re`` pattern's), or
    None when PCRE2 refuses it or might answer otherwise than ``re`` (``re`` decides then)."""
    if _pcre is None or not e.pcre_ok:
        return None
    fl = e.py.flags
    try:
        return _pcre.Regex(
            e.hs_pattern,
            caseless=bool(fl & re.IGNORECASE),
            multiline=bool(fl & re.MULTILINE),
            dotall=bool(fl & re.DOTALL),
        )
    except _pcre.RegexError:
        return None


def count(e: Entry, data: bytes, pos: int = 0) -> int:
    """1 if ``e`` matches ``data`` at or after ``pos`` (its match count, up to its
    ``maxhits``, for ``multiple`` rules), else 0."""
    pos = max(pos, 0)
    pc = e.pc
    if pc is not None:
        try:
            return pc.count(data, pos, e.multiple) if e.multiple else int(pc.search(data, pos))
        except _pcre.LimitError:  # PCRE2's backtracking bound: re decides (slowly)
            log.debug("pcre2 match limit on %r; deciding with re", e.hs_pattern[:60])
    if not e.multiple:
        return 1 if e.py.search(data, pos) is not None else 0
    # the matches are counted in C: no Python step per match
    return len(list(itertools.islice(e.py.finditer(data, pos), e.multiple)))


def match_re(e: Entry, data: bytes) -> int:
    """The rule's value on ``data`` by ``re`` alone, negation applied (an entry's results on
    a missing header are computed with it once, when the rules are built)."""
    if e.multiple:
        n = 0
        for _ in e.py.finditer(data):
            n += 1
            if n >= e.multiple:
                break
        found = n
    else:
        found = 1 if e.py.search(data) is not None else 0
    if e.negate:
        return 0 if found else 1
    return found
