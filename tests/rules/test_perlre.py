"""Perl regex translation details (the engine tests check behaviour end to end)."""

from __future__ import annotations

import re

import pytest

from mailsift.classifier.rules.engine import _inner_anchor, _nested_repeat_product
from mailsift.classifier.rules.perlre import RegexError, compile_python, split_delimited, translate


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
    assert _nested_repeat_product(rb"(?:a[bc]{1,80}){5}") == 400
    assert _nested_repeat_product(rb".{0,300}") == 1
    assert _inner_anchor(rb"(?:$|\W)x") and _inner_anchor(rb"a^b")
    assert not _inner_anchor(rb"^abc$") and not _inner_anchor(rb"[$^]x")
