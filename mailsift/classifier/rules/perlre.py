"""Perl regular expressions (as SpamAssassin rules write them) -> Hyperscan and Python ``re``.

A rule's regex arrives as ``/pattern/flags``, ``m{pattern}flags``, ``m!pattern!flags`` ...
:func:`split_delimited` takes it apart; :func:`translate` rewrites the Perl-only syntax into
one normalized pattern that both Hyperscan (PCRE syntax) and Python's ``re`` accept, and
returns the two variants (they differ only in how ``\\z`` and ``\\Z`` are spelled).

Both engines scan **bytes** (the message text encoded as UTF-8; rule files are read as
latin-1 so every byte of a pattern survives): character classes such as ``\\w`` and ``/i``
are ASCII-only in both, which keeps their results identical (tests check this).

What is translated: ``/x`` (whitespace and ``#`` comments removed), ``\\Q...\\E``,
``\\x{HH}``, ``\\h``, ``\\e``, ``\\cX``, ``\\z``/``\\Z``, unknown letter escapes (Perl reads
``\\y`` as ``y``), POSIX classes ``[[:alpha:]]``, named groups ``(?<n>...)``/``\\k<n>``,
mid-pattern flag switches ``(?i)`` (turned into a scoped ``(?i:...)``), ``(?#comments)``.
What is refused (:class:`RegexError`, the rule is skipped with the reason): code blocks
``(?{...})``, recursion, branch reset, ``\\p{...}`` properties, ``\\G``, ``\\K``, code points
above 0xFF inside a character class.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

_FLAG_CHARS = set("imsxgoaludnpcre")
_OPENERS = {"{": "}", "(": ")", "[": "]", "<": ">"}
_POSIX = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\x0b",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
    "ascii": r"\x00-\x7f",
}
# escapes both engines understand as they are
_KNOWN_ESCAPES = set("AbBdDwWsSnrtf0123456789")
_REFUSED_ESCAPES = {
    "p": "unicode property \\p",
    "P": "unicode property \\P",
    "X": "extended grapheme \\X",
    "R": "linebreak \\R",
    "K": "keep-out \\K",
    "G": "\\G anchor",
    "l": "case modifier \\l",
    "u": "case modifier \\u",
    "L": "case modifier \\L",
    "U": "case modifier \\U",
    "N": "\\N",
}


class RegexError(ValueError):
    """The regex cannot be used; ``str(exc)`` is a short reason."""


@dataclass(frozen=True, slots=True)
class Translated:
    hs: bytes  # pattern for Hyperscan (PCRE syntax)
    py: bytes  # pattern for Python ``re`` (bytes)
    caseless: bool
    multiline: bool
    dotall: bool


def split_delimited(spec: str) -> tuple[str, str]:
    """``/pat/flags`` or ``m{pat}flags`` -> (pattern, flags). Raises :class:`RegexError`."""
    s = spec.strip()
    if s.startswith("m") and len(s) > 1 and not s[1].isalnum() and not s[1].isspace():
        s = s[1:]
    elif not s.startswith("/"):
        raise RegexError("not a delimited regex")
    if len(s) < 2:
        raise RegexError("empty regex")
    opener = s[0]
    closer = _OPENERS.get(opener, opener)
    end = s.rfind(closer)
    if end <= 0:
        raise RegexError("unterminated regex")
    flags = s[end + 1 :].strip()
    if not set(flags) <= _FLAG_CHARS:
        raise RegexError(f"unknown regex flags {flags!r}")
    return s[1:end], flags


class _Out:
    """Accumulates the two pattern variants side by side."""

    __slots__ = ("hs", "py")

    def __init__(self) -> None:
        self.hs: list[str] = []
        self.py: list[str] = []

    def both(self, text: str) -> None:
        self.hs.append(text)
        self.py.append(text)

    def split(self, hs: str, py: str) -> None:
        self.hs.append(hs)
        self.py.append(py)


def _hex(code: int) -> str:
    return f"\\x{code:02x}"


def _literal(ch: str) -> str:
    """One character as a pattern literal valid in both engines (inside or outside classes)."""
    if ch.isalnum() or ch == "_":
        return ch if ord(ch) < 0x80 else _hex(ord(ch))
    return _hex(ord(ch))


def _codepoint(code: int, in_class: bool) -> str:
    if code <= 0xFF:
        return _hex(code)
    if in_class:
        raise RegexError("code point above 0xFF in a character class")
    return "(?:" + "".join(_hex(b) for b in chr(code).encode("utf-8")) + ")"


class _Translator:
    def __init__(self, pattern: str, extended: bool) -> None:
        self.p = pattern
        self.i = 0
        self.x = extended
        self.out = _Out()
        # one entry per open group: the inline flag switches seen in it, each turned into a
        # scoped "(?flags:" that must close before the group's ")" and around each "|"
        self.groups: list[list[str]] = [[]]
        self.flags_seen: set[str] = set()

    # -- escapes -----------------------------------------------------------------------
    def escape(self, in_class: bool) -> str | tuple[str, str]:
        """Translate the escape at self.i (pointing after the backslash)."""
        p = self.p
        if self.i >= len(p):
            raise RegexError("trailing backslash")
        c = p[self.i]
        self.i += 1
        if c == "x":
            if self.i < len(p) and p[self.i] == "{":
                end = p.find("}", self.i)
                if end < 0:
                    raise RegexError("unterminated \\x{")
                digits = p[self.i + 1 : end].strip() or "0"
                self.i = end + 1
                try:
                    code = int(digits, 16)
                except ValueError as exc:
                    raise RegexError(f"bad \\x{{{digits}}}") from exc
                return _codepoint(code, in_class)
            m = re.match(r"[0-9a-fA-F]{1,2}", p[self.i :])
            if not m:
                return _hex(0)
            self.i += m.end()
            return _hex(int(m.group(0), 16))
        if c == "z":
            return ("\\z", "\\Z") if not in_class else "z"
        if c == "Z":
            return ("\\Z", "(?=\\n?\\Z)") if not in_class else "Z"
        if c == "h":
            return " \\t" if in_class else "[ \\t]"
        if c == "H":
            if in_class:
                raise RegexError("\\H inside a character class")
            return "[^ \\t]"
        if c == "v":
            return "\\n\\x0b\\f\\r" if in_class else "[\\n\\x0b\\f\\r]"
        if c == "e":
            return _hex(0x1B)
        if c == "a":
            return _hex(0x07)
        if c == "c":
            if self.i >= len(p):
                raise RegexError("bad \\c")
            ctl = ord(p[self.i].upper()) ^ 0x40
            self.i += 1
            return _hex(ctl)
        if c == "o" and self.i < len(p) and p[self.i] == "{":
            end = p.find("}", self.i)
            if end < 0:
                raise RegexError("unterminated \\o{")
            code = int(p[self.i + 1 : end] or "0", 8)
            self.i = end + 1
            return _codepoint(code, in_class)
        if c == "k" and not in_class and self.i < len(p) and p[self.i] in "<{'":
            close = {"<": ">", "{": "}", "'": "'"}[p[self.i]]
            end = p.find(close, self.i + 1)
            if end < 0:
                raise RegexError("bad \\k")
            name = p[self.i + 1 : end]
            self.i = end + 1
            return f"(?P={name})"
        if c == "g" and not in_class:
            m = re.match(r"\{?(-?\d+)\}?", p[self.i :])
            if not m or m.group(1).startswith("-"):
                raise RegexError("relative or named \\g back-reference")
            self.i += m.end()
            return "\\" + m.group(1)
        if c in _REFUSED_ESCAPES:
            raise RegexError(f"unsupported {_REFUSED_ESCAPES[c]}")
        if c == "E":
            return ""
        if c in _KNOWN_ESCAPES:
            if in_class and c in "AbBZz":
                return "\\x08" if c == "b" else c
            if c.isdigit() and c != "0":
                # back-reference (outside classes) or octal; keep as written
                m = re.match(r"\d*", p[self.i :])
                digits = c + (m.group(0) if m else "")
                self.i += len(digits) - 1
                if in_class:
                    return _hex(int(digits, 8) & 0xFF) if set(digits) <= set("01234567") else digits
                return "\\" + digits
            if c == "0":
                m = re.match(r"[0-7]{0,2}", p[self.i :])
                self.i += m.end() if m else 0
                return _hex(int("0" + (m.group(0) if m else ""), 8))
            return "\\" + c
        if c.isalnum():
            return c if ord(c) < 0x80 else _hex(ord(c))  # Perl: unknown escape = the letter
        return _literal(c)

    # -- character classes -------------------------------------------------------------
    def char_class(self) -> None:
        p = self.p
        parts: list[str] = ["["]
        parts_py: list[str] = ["["]
        if self.i < len(p) and p[self.i] == "^":
            parts.append("^")
            parts_py.append("^")
            self.i += 1
        first = True
        prev_was_set = False  # the previous item was a class escape like \w
        while True:
            if self.i >= len(p):
                raise RegexError("unterminated character class")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and p.startswith("[:", self.i):
                end = p.find(":]", self.i + 2)
                if end < 0:
                    item = "\\["
                    self.i += 1
                else:
                    name = p[self.i + 2 : end]
                    negated = name.startswith("^")
                    if negated or name not in _POSIX:
                        raise RegexError(f"unsupported POSIX class [:{name}:]")
                    item = _POSIX[name]
                    self.i = end + 2
                parts.append(item)
                parts_py.append(item)
                prev_was_set = True
                continue
            if c == "\\":
                self.i += 1
                esc = self.escape(in_class=True)
                hs_item, py_item = esc if isinstance(esc, tuple) else (esc, esc)
                parts.append(hs_item)
                parts_py.append(py_item)
                prev_was_set = hs_item in ("\\w", "\\W", "\\d", "\\D", "\\s", "\\S") or (
                    len(hs_item) > 2 and not hs_item.startswith("\\x")
                )
                continue
            if c == "-" and (
                prev_was_set
                or (
                    self.i + 1 < len(p)
                    and p[self.i + 1] == "\\"
                    and p[self.i + 2 : self.i + 3] in list("wWdDsS")
                )
            ):
                item = "\\-"
            elif c == "[":
                item = "\\["
            elif ord(c) >= 0x80:
                item = _hex(ord(c))
            elif c == "-":
                item = "-"
            else:
                item = c if c.isalnum() or c in " _" else "\\" + c
                if c in " \t" and self.x:
                    item = c  # whitespace inside a class is kept even under /x
            self.i += 1
            prev_was_set = False
            parts.append(item)
            parts_py.append(item)
        parts.append("]")
        parts_py.append("]")
        self.out.split("".join(parts), "".join(parts_py))

    # -- groups ------------------------------------------------------------------------
    def group_open(self) -> None:
        p = self.p
        rest = p[self.i :]
        if not rest.startswith("?"):
            self.out.both("(")
            self.groups.append([])
            return
        if rest.startswith("?#"):
            end = p.find(")", self.i)
            if end < 0:
                raise RegexError("unterminated (?# comment")
            self.i = end + 1
            return
        for bad, why in (
            ("?{", "code block"),
            ("??{", "code block"),
            ("?|", "branch reset"),
            ("?R", "recursion"),
            ("?&", "recursion"),
            ("?P>", "recursion"),
            ("?^", "caret flags"),
        ):
            if rest.startswith(bad):
                raise RegexError(f"unsupported {why} (?{bad[1:]}")
        if re.match(r"\?[+-]?\d+\)", rest):
            raise RegexError("unsupported recursion (?N)")
        m = re.match(r"\?<([A-Za-z_]\w*)>|\?'([A-Za-z_]\w*)'|\?P<([A-Za-z_]\w*)>", rest)
        if m:
            name = m.group(1) or m.group(2) or m.group(3)
            self.i += m.end()
            self.out.both(f"(?P<{name}>")
            self.groups.append([])
            return
        m = re.match(r"\?([imsxn]*)(?:-([imsxn]*))?([:)])", rest)
        if m:
            on, off, kind = m.group(1), m.group(2) or "", m.group(3)
            self.i += m.end()
            if "x" in on:
                self.x = True
            if "x" in off:
                self.x = False
            on = on.replace("x", "").replace("n", "")
            off = off.replace("x", "").replace("n", "")
            flags = on + ("-" + off if off else "")
            if kind == ":":
                self.out.both(f"(?{flags}:" if flags else "(?:")
                self.groups.append([])
                return
            if flags:
                # a switch for the rest of the enclosing group: make it a scoped group
                self.out.both(f"(?{flags}:")
                self.groups[-1].append(flags)
            return
        # (?:  (?=  (?!  (?<=  (?<!  (?>  (?(cond)  and the rest: pass through
        self.out.both("(")
        self.groups.append([])

    def group_close(self) -> None:
        if len(self.groups) <= 1:
            raise RegexError("unmatched )")
        extra = self.groups.pop()
        self.out.both(")" * len(extra) + ")")

    def alternation(self) -> None:
        switches = self.groups[-1]
        self.out.both(")" * len(switches) + "|" + "".join(f"(?{f}:" for f in switches))

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> _Out:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            self.i += 1
            if self.x and c in " \t\r\n\f\v":
                continue
            if self.x and c == "#":
                nl = p.find("\n", self.i)
                self.i = len(p) if nl < 0 else nl + 1
                continue
            if c == "\\":
                if self.i < len(p) and p[self.i] == "Q":
                    self.i += 1
                    end = p.find("\\E", self.i)
                    end = len(p) if end < 0 else end
                    self.out.both("".join(_literal(ch) for ch in p[self.i : end]))
                    self.i = end + 2
                    continue
                esc = self.escape(in_class=False)
                if isinstance(esc, tuple):
                    self.out.split(*esc)
                else:
                    self.out.both(esc)
            elif c == "[":
                self.char_class()
            elif c == "(":
                self.group_open()
            elif c == ")":
                self.group_close()
            elif c == "|":
                self.alternation()
            elif c == "{" and re.match(r",\d+\}", p[self.i :]):
                self.out.both("{0")  # Perl >= 5.34: {,n} is {0,n}; spell it out for both
            elif ord(c) >= 0x80:
                self.out.both(_hex(ord(c)))
            elif c in " \t#":
                self.out.both(_literal(c))
            else:
                self.out.both(c)
        if len(self.groups) != 1:
            raise RegexError("unbalanced parentheses")
        self.out.both(")" * len(self.groups[0]))
        return self.out


def translate(pattern: str, flags: str, *, multiline: bool = False) -> Translated:
    """Rewrite a Perl pattern (latin-1 str) for both engines. Raises :class:`RegexError`."""
    if "e" in flags or "r" in flags:
        raise RegexError("substitution flags")
    out = _Translator(pattern, extended="x" in flags).run()
    hs = "".join(out.hs).encode("latin-1")
    py = "".join(out.py).encode("latin-1")
    return Translated(
        hs=hs,
        py=py,
        caseless="i" in flags,
        multiline=multiline or "m" in flags,
        dotall="s" in flags,
    )


def compile_python(t: Translated) -> re.Pattern[bytes]:
    """Compile the Python variant; raises :class:`RegexError` with the reason."""
    fl = (re.I if t.caseless else 0) | (re.M if t.multiline else 0) | (re.S if t.dotall else 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(t.py, fl)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        msg = str(exc).split(" at position")[0]
        raise RegexError(f"regex error: {msg}") from exc


# ---- auto-possessification -----------------------------------------------------------------
#
# PCRE (and so SpamAssassin's Perl) turns ``X+`` into ``X++`` when what follows can never
# match a character X matches: backtracking into the repeat could only fail. Python's re
# does not, and SpamAssassin's header rules are full of ``(?:[^\n]+\n+)*`` that re then
# backtracks through character by character. :func:`possessive` applies the same rewrite
# to a compiled pattern: a greedy repeat of one character item, directly followed in its
# sequence by a mandatory character item with a disjoint character set, becomes
# possessive. Only paths that always fail are cut, so every search, match and count gives
# the same spans (tested against the original on random patterns and on the corpus).

_SINGLE_OPS = ("LITERAL", "NOT_LITERAL", "IN", "ANY")
_CHARSET_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII | re.LOCALE
_CHARSETS: dict[tuple[str, int], frozenset[int]] = {}


def _sre() -> tuple[Any, Any, Any]:
    """The interpreter's regex parser, compiler and constants (internals; callers guard)."""
    import importlib

    return (
        importlib.import_module("re._parser"),
        importlib.import_module("re._compiler"),
        importlib.import_module("re._constants"),
    )


def parse_tree(py: re.Pattern[bytes]) -> Any:
    """The interpreter's parse of ``py`` (internals: None when unavailable)."""
    try:
        return _sre()[0].parse(py.pattern, py.flags)
    except Exception:
        return None


def possessive(py: re.Pattern[bytes], tree: Any = None) -> re.Pattern[bytes]:
    """``py`` with auto-possessified repeats, or ``py`` itself when nothing changes (or the
    interpreter's regex internals are not the ones this was written for). ``tree``: its
    :func:`parse_tree`, which this rewrites in place."""
    try:
        parser, compiler, const = _sre()
        if tree is None:
            tree = parser.parse(py.pattern, py.flags)
        if not _possessify(tree, py.flags, const):
            return py
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out: re.Pattern[bytes] = compiler.compile(tree, py.flags)
        return out
    except Exception:  # internals moved, or an odd pattern: keep the original
        return py


def _possessify(sp: Any, flags: int, c: Any) -> bool:
    changed = False
    data = sp.data
    for i, (op, av) in enumerate(data):
        if op is c.MAX_REPEAT:
            lo, hi, sub = av
            if hi > lo and _single(sub) and i + 1 < len(data):
                nxt = _first_char_item(data[i + 1], c)
                if nxt is not None and not (
                    _charset(sub.data[0], flags, sp) & _charset(nxt, flags, sp)
                ):
                    data[i] = (c.POSSESSIVE_REPEAT, av)
                    changed = True
                    continue
            changed |= _possessify(sub, flags, c)
        elif op in (c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            changed |= _possessify(av[2], flags, c)
        elif op is c.SUBPATTERN:
            _group, add, remove, sub = av
            changed |= _possessify(sub, (flags | add) & ~remove, c)
        elif op is c.BRANCH:
            for branch in av[1]:
                changed |= _possessify(branch, flags, c)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            changed |= _possessify(av[1], flags, c)
        elif op is c.ATOMIC_GROUP:
            changed |= _possessify(av, flags, c)
        elif op is c.GROUPREF_EXISTS:
            for branch in av[1:]:
                if branch is not None:
                    changed |= _possessify(branch, flags, c)
    return changed


def _single(sub: Any) -> bool:
    return len(sub.data) == 1 and str(sub.data[0][0]) in _SINGLE_OPS


def _first_char_item(node: tuple[Any, Any], c: Any) -> tuple[Any, Any] | None:
    """The character item ``node`` must start with (a single item, or a repeat of one with
    a minimum of at least one), else None."""
    op, av = node
    if str(op) in _SINGLE_OPS:
        return node
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1 and _single(av[2]):
        item: tuple[Any, Any] = av[2].data[0]
        return item
    return None


def _charset(item: tuple[Any, Any], flags: int, sp: Any) -> frozenset[int]:
    """The bytes one character item matches (flags as in effect there), asked of re itself."""
    key = (repr(item), flags & _CHARSET_FLAGS)
    found = _CHARSETS.get(key)
    if found is None:
        parser, compiler, _const = _sre()
        one = compiler.compile(parser.SubPattern(sp.state, [item]), flags & _CHARSET_FLAGS)
        found = frozenset(b for b in range(256) if one.fullmatch(bytes((b,))) is not None)
        if len(_CHARSETS) < 65536:
            _CHARSETS[key] = found
    return found


# ---- where PCRE2 (Perl) and Python re may disagree -------------------------------------------
#
# The engine decides with PCRE2 where it can, and must give re's answers. The two differ on
# one family of patterns: a group repeated more than once whose body can match the empty
# string (``(?:\W*|.*){0,3}``, a repeated look-ahead ``(?=x){1,2}``). Perl stops or
# backtracks such an iteration by other rules than re does, so counts (and, rarely, whether
# there is a match) can differ. No stock rule's result differs on the corpus, but such
# patterns are left to re rather than trusted to luck.


def pcre_agrees(py: re.Pattern[bytes], tree: Any = None) -> bool:
    """Whether PCRE2 can stand in for ``py`` (no repeat of more than one iteration over a
    body that can match empty). ``tree``: its :func:`parse_tree`, before any rewrite.
    False when the interpreter's regex internals are not the expected ones."""
    try:
        parser, _compiler, c = _sre()
        if tree is None:
            tree = parser.parse(py.pattern, py.flags)
        stack: list[Any] = [tree]
        while stack:
            sp = stack.pop()
            for op, av in sp.data:
                if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                    _lo, hi, sub = av
                    if hi > 1 and sub.getwidth()[0] == 0:
                        return False
                    stack.append(sub)
                elif op is c.SUBPATTERN:
                    stack.append(av[3])
                elif op is c.BRANCH:
                    stack.extend(av[1])
                elif op in (c.ASSERT, c.ASSERT_NOT):
                    stack.append(av[1])
                elif op is c.ATOMIC_GROUP:
                    stack.append(av)
                elif op is c.GROUPREF_EXISTS:
                    stack.extend(b for b in av[1:] if b is not None)
        return True
    except Exception:
        return False
