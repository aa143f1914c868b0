"""Perl regex translation details (the engine tests check behaviour end to end)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsift.classifier.rules.hscompile import inner_anchor, nested_repeat_product
from mailsift.classifier.rules.perlre import (
    RegexError,
    compile_python,
    possessive,
    split_delimited,
    translate,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/abc/i", ("abc", "i")),
        ("m{a/b}", ("a/b", "")),
        ("m!x!ms", ("x", "ms")),
        ("m,a,", ("a", "")),
        ("m(a(b)c)x", ("a(b)c", "x")),
        (r"/a\/b/", (r"a\/b", "")),
    ],
)
def test_split_delimited(spec: str, expected: tuple[str, str]) -> None:
    assert split_delimited(spec) == expected


@pytest.mark.parametrize("spec", ["abc", "/abc", "/abc/Q", "m"])
def test_split_delimited_errors(spec: str) -> None:
    with pytest.raises(RegexError):
        split_delimited(spec)


def test_inline_flag_switch_keeps_alternation_structure() -> None:
    t = translate("foo (?i)bar|baz", "")
    py = compile_python(t)
    assert py.search(b"foo BAR") and py.search(b"BAZ") and not py.search(b"FOO bar")


def test_end_anchors_differ_per_engine() -> None:
    t = translate(r"x\z|y\Z", "")
    assert t.hs == rb"x\z|y\Z"
    assert t.py == rb"x\Z|y(?=\n?\Z)"
    py = compile_python(t)
    assert py.search(b"y\n") and not py.search(b"x\n") and py.search(b"x")


def test_extended_mode_and_classes() -> None:
    t = translate(" a [ b] c # comment", "x")
    assert t.py == b"a[ b]c"


def test_non_ascii_literals_become_bytes() -> None:
    t = translate("caf\u00c3\u00a9", "")  # a UTF-8 file read as latin-1
    assert re.search(t.py, "café".encode())


def test_refused_constructs() -> None:
    for pat in (r"(?{ 1 })", r"\p{L}", r"(?|a|b)", r"a\Gb", r"(?R)"):
        with pytest.raises(RegexError):
            translate(pat, "")


def test_complexity_helpers() -> None:
    assert nested_repeat_product(rb"(?:a[bc]{1,80}){5}") == 400
    assert nested_repeat_product(rb".{0,300}") == 1
    assert inner_anchor(rb"(?:$|\W)x") and inner_anchor(rb"a^b")
    assert not inner_anchor(rb"^abc$") and not inner_anchor(rb"[$^]x")


# ---- auto-possessification: same spans as the original, on random patterns and texts ------

_ATOMS = ["a", "b", "\\n", "[ab]", "[^a]", "[^\\n]", "\\s", "\\S", "\\d", "\\w", "\\W", ".", "x"]
_QUANTS = ["", "+", "*", "?", "{1,3}", "{0,2}", "+?", "*?"]
_GROUP_QUANTS = ["", "?", "{0,3}", "{1,2}", "{0,3}?"]


@st.composite
def _patterns(draw: st.DrawFn, depth: int = 0) -> str:
    items = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9 if depth < 2 else 6))
        if kind <= 6:
            item = draw(st.sampled_from(_ATOMS))
        elif kind == 7:
            item = "(?:" + draw(_patterns(depth + 1)) + "|" + draw(_patterns(depth + 1)) + ")"
        elif kind == 8:
            item = "(" + draw(_patterns(depth + 1)) + ")"
        else:
            item = "(?=" + draw(_patterns(depth + 1)) + ")"
        # groups repeat a bounded number of times: nested unbounded repeats can take re
        # exponential time on some texts, rewritten or not
        quants = _QUANTS if kind <= 6 else _GROUP_QUANTS
        items.append(item + draw(st.sampled_from(quants)))
    return "".join(items)


@given(
    pattern=_patterns(),
    flags=st.sampled_from([0, re.I, re.S, re.M | re.S, re.I | re.M]),
    text=st.lists(st.sampled_from([b"a", b"b", b"A", b"x", b"1", b" ", b"\n"]), max_size=30).map(
        b"".join
    ),
)
@settings(max_examples=400, deadline=None)
def test_possessive_rewrite_keeps_every_match(pattern: str, flags: int, text: bytes) -> None:
    py = re.compile(pattern.encode(), flags)
    fast = possessive(py)
    want = [(m.span(), m.groups()) for m in py.finditer(text)]
    assert [(m.span(), m.groups()) for m in fast.finditer(text)] == want


def test_possessive_rewrite_where_it_is_safe_only() -> None:
    def changed(pattern: bytes, flags: int = 0) -> bool:
        py = re.compile(pattern, flags)
        return possessive(py) is not py

    assert changed(rb"(?:[^\n]+\n+)*Subject:")  # the header rules' line skipper
    assert changed(rb"\d+\.")
    assert not changed(rb"[a-z]+teen")  # t is a letter: backtracking can succeed
    assert not changed(rb"a+A", re.I)  # same letter when caseless
    assert changed(rb"a+A")
    assert not changed(rb"(?i:a+)B")  # the follower is outside the group: left alone
    assert not changed(rb"a+(?=b)")  # not a character item
    slow = re.compile(
        rb"\nReceived:[^\n]{0,200} for <?([^\n\s>;]+)>?;(?:[^\n]+\n+)*Subject: \1x", re.I
    )
    text = b"\nReceived: from a by b for <u@x>;\n" + b"X-Filler: " + b"y" * 60 + b"\n" * 2
    assert bool(possessive(slow).search(text * 5)) == bool(slow.search(text * 5))
