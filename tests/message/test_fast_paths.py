"""The parser's fast paths give exactly what the plain formulation they replace gives.

Each fast path (a regex spelt so that the engine can skip ahead, a scan for candidate places
instead of a regex tried at every byte, the feed parser spared the lines of a single-part body)
is compared with the straightforward version on hand-picked awkward inputs and on generated
ones.
"""

from __future__ import annotations

import email
import email.utils
import re
from email import policy
from email.message import Message
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsift.message import (
    _MIME_PARAM_HEADER_RE,
    MAX_MIME_PARAM_HEADER,
    ParsedMessage,
    _message_from_bytes,
    _tame_mime_parameters,
    html_to_text,
    urls_from_text,
)
from mailsift.message import _URL_RE as FAST_URL_RE

# ---- reference formulations (what the code said before the fast paths) ---------------------

REF_URL_RE = re.compile(
    r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'`{}|\\^]{2,2000}""",
    re.IGNORECASE,
)
REF_EMPTY_PARAMS_RE = re.compile(rb";(?:\s*;)+")


def ref_tame(data: bytes) -> tuple[bytes, bool]:
    changed = False

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal changed
        value = m.group(0)
        tamed = REF_EMPTY_PARAMS_RE.sub(b";", value)[:MAX_MIME_PARAM_HEADER]
        changed |= tamed != value
        return tamed

    return _MIME_PARAM_HEADER_RE.sub(fix, data), changed


def ref_blanks(text: str) -> str:
    text = re.sub(r"[ \t\r\f\v\u00a0]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def message_state(msg: Message) -> Any:
    """Everything a parsed compat32 Message holds, sub-parts included."""
    out: dict[str, Any] = {"class": type(msg)}
    for key, value in vars(msg).items():
        if key == "defects":
            value = [(type(d).__name__, str(d)) for d in value]
        elif key == "policy":
            value = repr(value)
        elif isinstance(value, Message):
            value = message_state(value)
        elif isinstance(value, list) and value and isinstance(value[0], Message):
            value = [message_state(v) for v in value]
        out[key] = value
    return out


def same_as_stdlib(data: bytes) -> bool:
    ref = email.message_from_bytes(data, policy=policy.compat32)
    return message_state(_message_from_bytes(data)) == message_state(ref)


# ---- URLs ------------------------------------------------------------------------------------

URL_TEXTS = [
    "see http://a.example/x, HTTPS://B.EXAMPLE/Y and Ftp://c.example.",
    "hTtPſ://long-s.example/ (U+017F folds to s) and httpſ:/ no",
    "wWw.mixed.example www.x wwww.four.example ww.two.example w.w.w.",
    "hxxp://defanged.example fttp://no.example ftps://no.example http:/one.slash",
    "http://" + "a" * 3000 + " trailing",
    "xhttp://glued.example/ http://\u00e9x.example/\u00fc?q=1#f <http://angle.example>",
    "",
    "http://",
    "http://x",
    "https://ok.example\thttp://tab.example\nwww.nl.example",
]


@pytest.mark.parametrize("text", URL_TEXTS)
def test_url_regex_matches_the_ignorecase_spelling(text: str) -> None:
    assert [(m.span(), m.group(0)) for m in FAST_URL_RE.finditer(text)] == [
        (m.span(), m.group(0)) for m in REF_URL_RE.finditer(text)
    ]


_url_alphabet = st.sampled_from(
    [*"hHtTpPsSfFwW:/.ſ-x19 \t\n<>\"'`{}|\\^é", "http://", "HTTPS://", "ftp://", "www.", "WwW."]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_url_alphabet, max_size=60).map("".join))
def test_url_regex_matches_the_ignorecase_spelling_generated(text: str) -> None:
    assert [(m.span(), m.group(0)) for m in FAST_URL_RE.finditer(text)] == [
        (m.span(), m.group(0)) for m in REF_URL_RE.finditer(text)
    ]


def test_html_message_text_urls_follow_the_html_ones() -> None:
    from mailsift.message import parse

    raw = (
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nplain http://plain.example/ http://both.example/\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<a href='http://both.example/'>x</a>"
        b" http://shown.example/\r\n--b--\r\n"
    )
    pm = parse(raw)
    assert [u.url for u in pm.urls] == [
        "http://both.example/",
        "http://shown.example/",
        "http://plain.example/",
    ]
    assert urls_from_text(pm.text)[0].url == "http://plain.example/"


# ---- MIME parameter taming -----------------------------------------------------------------

TAME_INPUTS = [
    b"",
    b"content-",
    b"Content-Type: text/plain\r\n\r\nbody",
    b"Content-Type: text/html" + b" ;" * 3000 + b"\r\n\r\n<p>x</p>",
    b"CONTENT-DISPOSITION : attachment; ; ;\n filename=a;;\n\t;b\nSubject: s\n\n",
    b"X-Content-Type: a;;\nxcontent-type: b;;\ncontent-typo: c;;\n\ncontent-type:;;\n",
    b"Subject: s\n\ncontent-type: in the body;;\r\ncontent-disposition:" + b"x" * 3000,
    b"Content-Type: multipart/mixed;\r\n boundary=b;\r\n\r\n--b\r\ncontent-type: a;\t;\r\n",
    b"\rcontent-type: after a lone CR;;\n\ncontent-type:ok\ncontent-type:;\r\n ;",
    b"content-type: \xff\xfe;;\n\x00content-type: ;;",
]


@pytest.mark.parametrize("data", TAME_INPUTS)
def test_tame_mime_parameters_matches_the_regex_sub(data: bytes) -> None:
    pm = ParsedMessage(raw=data, size=len(data), digest="")
    expected, changed = ref_tame(data)
    assert _tame_mime_parameters(data, pm) == expected
    assert bool(pm.defects) == changed


_tame_alphabet = st.sampled_from(
    [
        *(b"content-type", b"Content-Disposition", b"CONTENT-", b"x-", b"a", b"=", b"\xe9"),
        *(b":", b";", b" ", b"\t", b"\r", b"\n", b"\r\n"),
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tame_alphabet, max_size=80).map(b"".join))
def test_tame_mime_parameters_matches_the_regex_sub_generated(data: bytes) -> None:
    pm = ParsedMessage(raw=data, size=len(data), digest="")
    expected, changed = ref_tame(data)
    assert _tame_mime_parameters(data, pm) == expected
    assert bool(pm.defects) == changed


# ---- the feed parser spared a single-part body ----------------------------------------------

MESSAGES = [
    b"",
    b"\n",
    b"\r\n\r\nbody only",
    b"\rbody after a lone CR",
    b"Subject: no body",
    b"Subject: no blank line\nFrom: a@b\n",
    b"Subject: s\n\nbody\n",
    b"Subject: s\r\n\r\nbody\r\nline 2\r\n",
    b"Subject: s\r\rCR-only line ends\rbody",
    b"Subject: s\n\r\nmixed ends\n",
    b"Subject: s\nthis line is no header\n\nbody",
    b" continuation first\nSubject: s\n\nbody",
    b"From nobody Mon Jan  1 00:00:00 2001\nSubject: s\n\nbody",
    b"Subject: s\nFrom someone at the end\n\nbody",
    b"Subject: s\nFrom misplaced\nTo: t\n\nbody",
    b": no name\nSubject: s\n\nbody",
    b"Subject: folded\n  on two lines\n\n\n\nbody after blank lines",
    b"Subject: 8bit \xe9\xff\nContent-Type: text/plain; charset=latin-1\n\n\xe9t\xe9\n",
    b"Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--",
    b"Content-Type: MULTIPART/Mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n",
    b"Content-Type: multipart/mixed\n\nno boundary\n",
    b"Content-Type: message/rfc822\n\nSubject: inner\n\ninner body\n",
    b"Content-Type: message/delivery-status\n\nA: 1\n\nB: 2\n",
    b"Content-Type: text/plain\nX-Note: message/ and multipart/ in a value\n\nbody\n",
    b"Content-Type: multi\n part/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
    b"Content-Type: text/html\n\n<p>" + b"x" * 20000 + b"</p>\n",
    b"Subject: " + b"long " * 5000 + b"\n\n" + b"line\n" * 5000,
    b"Subject: s\n\n\x00nul\x00\n",
]


@pytest.mark.parametrize("data", MESSAGES)
def test_message_from_bytes_is_the_stdlib_parse(data: bytes) -> None:
    assert same_as_stdlib(data)


_mime_lines = st.sampled_from(
    [
        b"Subject: s",
        b"From x",
        b"From: a@b",
        b"Content-Type: text/plain",
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: message/rfc822",
        b"Content-Transfer-Encoding: base64",
        b" folded",
        b"\tfolded",
        b": empty name",
        b"no header here",
        b"--b",
        b"--b--",
        b"",
        b"\xe9\xff 8bit",
        b"aGVsbG8=",
    ]
)
_line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_mime_lines, _line_ends), max_size=25))
def test_message_from_bytes_is_the_stdlib_parse_generated(
    lines: list[tuple[bytes, bytes]],
) -> None:
    assert same_as_stdlib(b"".join(line + end for line, end in lines))


# ---- HTML text -------------------------------------------------------------------------------

HTML_INPUTS = [
    "<p>a  b\t\tc \u00a0 d</p><p>\r\n</p>\n\n\n<div>e\x0b\x0cf</div>",
    "<pre>  lead and trail  </pre>",
    "<p>\u00a0</p>" * 5 + "<br>" * 5 + "x",
    "",
    "<p> \t \n \t </p>\u3000<p>ideographic space stays</p>",
]


@pytest.mark.parametrize("html", HTML_INPUTS)
def test_html_text_blanks_collapse_as_the_regex_did(html: str) -> None:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    tree.strip_tags(["script", "style", "head", "title", "noscript", "template"])
    body = tree.body or tree.root
    raw_text = body.text(separator=" ", strip=False) if body is not None else ""
    assert html_to_text(html)[0] == ref_blanks(raw_text)


# ---- foreign headers -------------------------------------------------------------------------


def test_every_foreign_header_name_starts_with_x_dash() -> None:
    # _parse_into only tries FOREIGN_HEADER_RE on names starting with "x-"
    from mailsift.message import FOREIGN_HEADER_RE

    pattern = FOREIGN_HEADER_RE.pattern
    assert pattern.startswith("^(") and pattern.endswith(")")
    names = pattern[2:-1].split("|")
    assert len(names) > 40 and all(n.startswith("x-") for n in names)
    assert FOREIGN_HEADER_RE.flags & re.IGNORECASE


# ---- recipients ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("Bob <BOB@Example.COM>", "carol@example.org, dave@x"),
        ('"unbalanced <a@b', "c@d>"),  # joined with ", " and parsed as one list
        ("undisclosed-recipients:;", ""),
        ("a@b, " * 600,),  # too long to be cached
    ],
)
def test_recipients_are_getaddresses_of_the_joined_values(values: tuple[str, ...]) -> None:
    from mailsift.message import parse, recipients

    expected = tuple(a.lower() for _, a in email.utils.getaddresses(list(values)) if a)
    assert recipients(values) == expected
    assert recipients(values) == expected  # from the cache when short
    head = "".join(f"{'To' if i % 2 == 0 else 'Cc'}: {v}\r\n" for i, v in enumerate(values))
    pm = parse(("Subject: s\r\n" + head + "\r\nbody").encode())
    to = tuple(pm.header_all("To")) + tuple(pm.header_all("Cc"))
    assert pm.to_addrs == [a.lower() for _, a in email.utils.getaddresses(list(to)) if a]


# ---- body -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", " \t\r\n", "\u3000\u2028\x85\x1c", "x", " x ", "\u200b"])
@pytest.mark.parametrize("html_text", ["", "rendered"])
def test_body_and_html_only_test_the_text_as_strip_did(text: str, html_text: str) -> None:
    pm = ParsedMessage(raw=b"", size=0, digest="", text=text, html="<p>", html_text=html_text)
    if text.strip():
        assert pm.body == (text if not html_text else text + "\n" + html_text)
    else:
        assert pm.body == html_text
    assert pm.is_html_only == (not text.strip())
