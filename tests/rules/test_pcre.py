"""The native PCRE2 matcher (``_pcre``): built, JIT-compiled, and equal to Python ``re``.

The engine decides prefilter hits, ``multiple`` counts and the patterns Hyperscan refuses
with it; its answers must be the ones ``re`` gives (on random patterns here, on the stock
rules over corpus mail in ``test_stock_differential``), and a match that runs into PCRE2's
backtracking limit is decided by ``re`` instead of being answered "no".
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailsift.classifier.rules import RuleSet, targets
from mailsift.classifier.rules import _pcre as pcre
from mailsift.classifier.rules.perlre import compile_python, pcre_agrees, translate

from .conftest import hits, make_message
from .test_perlre import _patterns


def _both(pattern: str, flags: str = "") -> tuple[pcre.Regex, re.Pattern[bytes]]:
    t = translate(pattern, flags, multiline="m" in flags)
    native = pcre.Regex(t.hs, caseless=t.caseless, multiline=t.multiline, dotall=t.dotall)
    return native, compile_python(t)


def test_the_extension_is_built_with_jit() -> None:
    # CI builds it (libpcre2-dev); the engine must not quietly fall back to re there
    assert targets.PCRE_VERSION is not None and targets.PCRE_VERSION.startswith("10.")
    assert pcre.Regex(rb"fo+").jit
    assert RuleSet.from_text("body X /foo/\n").use_pcre


def test_search_count_and_start_position() -> None:
    p = pcre.Regex(rb"foo[a-z]+bar")
    assert p.search(b"xx foozbar") and not p.search(b"xx foo bar")
    assert p.search(b"xx foozbar", 3) and not p.search(b"xx foozbar", 4)
    assert p.search(b"foozbar", 99) is False  # past the end: nothing, no error
    assert p.count(b"foozbar foozbar foozbar") == 3
    assert p.count(b"foozbar foozbar foozbar", 0, 2) == 2  # up to the limit
    assert p.count(b"foozbar foozbar", 1) == 1
    # a look-behind sees the text before the start position, as in re (pos != slicing)
    lb = pcre.Regex(rb"(?<=a)b")
    assert lb.search(b"ab", 1) and re.compile(rb"(?<=a)b").search(b"ab", 1)
    assert not pcre.Regex(rb"^b").search(b"ab", 1)


def test_empty_matches_count_as_finditer_does() -> None:
    for pattern, text in [(rb"x*", b"axxb"), (rb"", b"abc"), (rb"\b", b"ab cd"), (rb"a?", b"baab")]:
        assert pcre.Regex(pattern).count(text) == len(list(re.finditer(pattern, text)))


def test_perl_syntax_that_re_spells_otherwise() -> None:
    # \z and \Z as Perl has them (the Hyperscan/PCRE variant of the translation)
    z, _ = _both(r"ab\z")
    assert z.search(b"ab") and not z.search(b"ab\n")
    big_z, _ = _both(r"ab\Z")
    assert big_z.search(b"ab\n") and big_z.search(b"ab")
    # bytes, ASCII rules: /i does not fold Latin-1, \w is ASCII, . stops at LF only
    caseless, _ = _both("\xc9t\xe9", "i")
    assert not caseless.search("\xe9t\xe9".encode("latin-1"))
    assert not pcre.Regex(rb"\w").search("\xe9".encode("latin-1"))
    assert pcre.Regex(rb"a.b").search(b"a\rb") and not pcre.Regex(rb"a.b").search(b"a\nb")
    assert pcre.Regex(rb"a$").search(b"a\n") and not pcre.Regex(rb"a$").search(b"a\r\n")


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(pcre.RegexError, match="missing closing parenthesis"):
        pcre.Regex(rb"(ab")
    with pytest.raises(TypeError):
        pcre.Regex("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        pcre.Regex(rb"a").search("a")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pcre.set_match_limit(0)


def test_pickles_as_its_pattern() -> None:
    p = pcre.Regex(rb"a.c", caseless=True, dotall=True)
    q = pickle.loads(pickle.dumps(p))  # our own object, in this process
    assert q.pattern == b"a.c" and q.search(b"A\nC") and not q.search(b"abd")


@given(
    pattern=_patterns(),
    flags=st.sampled_from(["", "i", "s", "ms", "im"]),
    text=st.lists(st.sampled_from([b"a", b"b", b"A", b"x", b"1", b" ", b"\n"]), max_size=30).map(
        b"".join
    ),
    pos=st.integers(0, 32),
)
@settings(max_examples=400, deadline=None)
def test_same_answers_as_re_on_random_patterns(
    pattern: str, flags: str, text: bytes, pos: int
) -> None:
    native, py = _both(pattern, flags)
    assume(pcre_agrees(py))  # the engine leaves the others to re (next test)
    case = (pattern, flags, text, pos)
    try:
        found = native.search(text, pos)
        count, count2 = native.count(text, pos), native.count(text, pos, 2)
    except pcre.LimitError:  # the engine asks re then (test_match_limit_...)
        assume(False)
    assert found == (py.search(text, pos) is not None), case
    want = len(list(py.finditer(text, pos)))
    assert count == want, case
    assert count2 == min(want, 2), case


# found by the test above before pcre_agrees existed: a repeated group whose body can match
# empty iterates by Perl's rules in PCRE2 and by others in re
DIVERGENT = [
    (r"(?:\W*|.*){0,3}", "i", b"a\n"),
    (r"(?=(\n+?){1,2}){1,2}\W?\n+?", "im", b"a\n"),
    (r"[ab]*?(?:\d{0,2}\W*|[ab]+a{0,2}(?=x[^a]{0,2}\d+?){0,3}){0,3}", "ms", b"b a"),
]


@pytest.mark.parametrize(("pattern", "flags", "text"), DIVERGENT)
def test_patterns_pcre_would_answer_otherwise_are_left_to_re(
    pattern: str, flags: str, text: bytes
) -> None:
    native, py = _both(pattern, flags)
    want = len(list(py.finditer(text)))
    assert native.count(text) != want  # the divergence is real ...
    assert not pcre_agrees(py)  # ... and recognised
    rs = RuleSet.from_text(
        f"rawbody R /{pattern}/{flags}\ntflags R multiple\n", use_hyperscan=False
    )
    (entry,) = rs._rawbody.entries
    assert entry.pc is None  # re decides, so the engine counts as re does
    assert pcre_agrees(re.compile(rb"(?:\W+|a.*){0,3}(?:x*)?"))  # non-empty bodies, or one go


@pytest.fixture
def low_match_limit() -> Iterator[None]:
    pcre.set_match_limit(1000)
    yield
    pcre.set_match_limit(pcre.MATCH_LIMIT)


def test_match_limit_raises_and_the_engine_asks_re(low_match_limit: None) -> None:
    slow = pcre.Regex(rb"(?:a|aa)+c")  # backtracks exponentially on a run of a's
    text = "a" * 24 + "b c"  # a 'c' is there, so PCRE2 cannot rule the text out up front
    with pytest.raises(pcre.LimitError):
        slow.search(text.encode())
    rs = RuleSet.from_text("body SLOW_RULE /(?:a|aa)+c/\nbody OTHER /aaa/\n", use_hyperscan=False)
    assert rs.use_pcre
    # PCRE2 gives up on this body; re decides it (no hit), and the other rule still runs
    assert hits(rs, make_message(text + "\n")) >= {"OTHER"}
    assert "SLOW_RULE" not in hits(rs, make_message(text + "\n"))
    assert "SLOW_RULE" in hits(rs, make_message("a" * 24 + "b aac\n"))


def test_pcre_compiles_only_what_hyperscan_cannot_answer_alone() -> None:
    rs = RuleSet.from_text(
        "body EXACT /cheap\\s+pills/\n"
        "body LOOKAHEAD /cheap(?!\\s+talk)/\n"
        "body COUNTED /pills/\ntflags COUNTED multiple\n"
        "header SUBJ Subject =~ /offer/\n"
    )
    pc = {rs.names[e.rule]: e.pc is not None for e in rs._body.entries}
    assert pc == {"EXACT": False, "LOOKAHEAD": True, "COUNTED": True}
    # a target of a few patterns runs them in PCRE2 without its database
    (subject,) = [t for t in rs._header_targets if t.key.startswith("header:subject")]
    assert subject.direct and all(e.pc is not None for e in subject.entries)
    got = hits(rs, make_message("cheap pills, cheap talk, pills\n", subject="an offer"))
    assert got >= {"EXACT", "LOOKAHEAD", "COUNTED", "SUBJ"}
