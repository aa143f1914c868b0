"""Hostile HTML: bounded nesting keeps html_to_text linear; normal HTML renders as written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailsift import _htmldepth
from mailsift.config import load_settings
from mailsift.message import MAX_HTML_DEPTH, html_to_text, parse
from mailsift.pipeline.corpus import iter_corpus

# CPU seconds one hostile document may cost html_to_text here: generous (they take 1-30 ms;
# before the nesting bound, 50,000 nested <div> took 7 s), the figures are in
# bench/bench_hostile.py
GENEROUS = 0.5


def _cpu(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.thread_time()
    out = fn(*args)
    return out, time.thread_time() - t0


def nested_divs(n: int) -> str:
    return "<div>" * n + "deep text" + "</div>" * n


@pytest.mark.parametrize("n", [10_000, 50_000, 100_000, 200_000])
def test_nested_div_family_is_linear(n: int) -> None:
    (text, _, _, tags), spent = _cpu(html_to_text, nested_divs(n))
    assert spent < GENEROUS, f"{n} nested <div>: {spent:.3f} s of CPU"
    assert text == "deep text"
    assert tags == MAX_HTML_DEPTH + 3  # html, head, body and the divs within the bound


HOSTILE = {
    # end tags closing nothing between the start tags (a count of opens minus closes would
    # see no nesting at all)
    "stray end tags": "<div></b>" * 40_000 + "x",
    # formatting elements the tree builder reopens after their parent closes
    "reopened formatting": ("<div>" + "".join(f"<b id={i}>" for i in range(200)) + "</div>x") * 200,
    "end tags stopped by a table": "<div><table></div>" * 40_000,
    "a second body": ("<body>" + "<div>" * 200 + "</body>") * 200,
    "unclosed font": "<font>" * 40_000 + "x",
    "nested lists": "<ul><li>" * 40_000,
    # flat, but the tree builder's work per element grows with the select's content
    "one select": "<select>" + "<option>x" * 20_000,
    "divs in a select": "<select>" + "<div>" * 20_000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_other_hostile_shapes_are_bounded(name: str) -> None:
    _, spent = _cpu(html_to_text, HOSTILE[name])
    assert spent < GENEROUS, f"{name}: {spent:.3f} s of CPU"


def test_text_beyond_the_bound_is_kept() -> None:
    html = "".join(f"<div>w{i}" for i in range(1000)) + "</div>" * 1000
    text = html_to_text(html)[0]
    assert text.split() == [f"w{i}" for i in range(1000)]


def test_documents_within_the_bound_are_parsed_as_written() -> None:
    within = "<div>" * (MAX_HTML_DEPTH - 1) + "x" + "</div>" * (MAX_HTML_DEPTH - 1)
    assert _htmldepth.cap(within, MAX_HTML_DEPTH) is None
    assert _htmldepth.cap("<div>" * MAX_HTML_DEPTH + "<div>x", MAX_HTML_DEPTH) is not None
    # void elements, closed siblings, comments and script text nest nothing
    flat = ("<p>a<br><img src=x></p><!-- <div><div> -->" + "<script>'<div>'</script>") * 5000
    assert _htmldepth.cap(flat, 8) is None
    # country lists: a form with a few selects of hundreds of options
    countries = "<select>" + "".join(f"<option value={i}>c{i}" for i in range(300)) + "</select>"
    assert _htmldepth.cap("<form>" + countries * 5 + "</form>", MAX_HTML_DEPTH) is None
    # a '>' inside a quoted attribute value does not end the tag
    assert _htmldepth.cap('<div title="a>b"></div>' * 5000, 8) is None
    # non-ASCII text and tag names of every string width
    assert _htmldepth.cap("<dív>é€😀</dív>" * 5000, 8) is None
    capped = _htmldepth.cap("<x>é€😀" * 10, 4)
    assert capped == "<x>é€😀" * 4 + " é€😀" * 6


def test_parse_says_when_it_flattened() -> None:
    deep = nested_divs(5000).encode()
    raw = b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n" + deep
    pm = parse(raw)
    assert pm.html_text == "deep text"
    assert any("nested deeper than" in d for d in pm.defects), pm.defects
    normal = b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>you</b></p>"
    assert not any("nested deeper" in d for d in parse(normal).defects)


def test_no_corpus_html_reaches_the_bound() -> None:
    """Every HTML message of the SpamAssassin corpus's spam archives (where 1,022 of its
    1,209 HTML messages are) is rendered exactly as written."""
    corpus = load_settings().paths.corpus or Path("/work/shared/corpora/spamassassin")
    seen = 0
    for path in sorted(Path(corpus).glob("*spam*.tar.bz2")):
        for item in iter_corpus(path):
            if b"text/html" not in item.raw.lower():
                continue
            pm = parse(item.raw)
            if pm.html:
                seen += 1
                assert _htmldepth.cap(pm.html, MAX_HTML_DEPTH) is None, item.member
    assert seen > 900
