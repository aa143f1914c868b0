"""The eval tests' fast paths give what their plain definitions give, on odd inputs.

Each ``_ref_*`` below is the straightforward definition (as the evals were first written);
the fast paths in :mod:`mailsift.classifier.rules.evals` (shared per-message counts, lower-
cased copies, early exits, one regex instead of two) must agree with it everywhere.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from mailsift.classifier.rules import evals
from mailsift.classifier.rules.views import MessageViews
from mailsift.message import ParsedMessage, address_of, parse, parse_date

from .conftest import make_message

MAX = 262144


def views(pm: ParsedMessage) -> MessageViews:
    v = MessageViews(pm, MAX)
    v.header_names()  # as the engine does before the evals
    return v


def _pm(**fields: Any) -> ParsedMessage:
    fields.setdefault("raw", b"")
    return ParsedMessage(size=0, digest="", **fields)


# ---- reference definitions -----------------------------------------------------------------


def _ref_received_date(value: str) -> Any:
    m = re.search(r";\s*([^;]+)$", value)
    if m is None:
        return None
    dt = parse_date(m.group(1).strip())
    return dt if dt is not None and dt.tzinfo is not None else None


def _ref_text_plain_heads(raw: bytes, limit: int = 50) -> list[bytes]:
    ct_prefix = re.compile(rb"Content-Type:[ \t]*\"?$", re.IGNORECASE)
    out: list[bytes] = []
    for spelling in (b"text/plain", b"TEXT/PLAIN", b"Text/Plain", b"Text/plain"):
        pos = raw.find(spelling)
        while pos >= 0 and len(out) < limit:
            line_start = raw.rfind(b"\n", 0, pos) + 1
            if ct_prefix.match(raw, line_start, pos):
                start = raw.rfind(b"\n\n", 0, pos)
                end = raw.find(b"\n\n", pos)
                out.append(raw[start + 1 if start >= 0 else 0 : end if end >= 0 else len(raw)])
            pos = raw.find(spelling, pos + len(spelling))
    return out


def _ref_text_encoding(raw: bytes, want: bytes) -> int:
    cte = re.compile(rb"\nContent-Transfer-Encoding:\s*\"?([\w-]+)", re.IGNORECASE)
    n = 0
    for head in _ref_text_plain_heads(raw):
        m = cte.search(b"\n" + head)
        if m and m.group(1).lower() == want:
            n += 1
    return n


_NOT_UPPER = bytes(c for c in range(256) if not 65 <= c <= 90)
_NOT_LOWER = bytes(c for c in range(256) if not 97 <= c <= 122)
_NOT_LOWER_DIGITS = bytes(c for c in range(256) if not (97 <= c <= 122 or 48 <= c <= 57))


def _ref_uppercase_lines(body: bytes) -> float:
    length = lower = upper = 0
    for line in body.split(b"\n"):
        if not re.search(rb"\S\s+\S", line) or re.match(rb"^(?:[A-Za-z0-9+/=]{60,76} ){2}", line):
            continue
        length += len(line)
        lower += len(line.translate(None, _NOT_LOWER_DIGITS))
        upper += len(line.translate(None, _NOT_UPPER))
    if length < 200 or not upper + lower:
        return 0.0
    return 100.0 * upper / (upper + lower)


def _ref_body_caps(body: bytes, ratio: float, min_letters: float) -> int:
    text = body[body.find(b"\n") + 1 :][:20000]
    upper = len(text.translate(None, _NOT_UPPER))
    lower = len(text.translate(None, _NOT_LOWER))
    letters = upper + lower
    return int(letters >= min_letters and upper / letters >= ratio)


def _ref_visible(text: str, limit: float) -> int:
    head = text[: int(limit) * 20 + 1000]
    n = len(head) - sum(head.count(c) for c in " \t\r\n\f\v\u00a0")
    return n if len(head) == len(text) else max(n, int(limit) + 1)


def _ref_subject_all_caps(pm: ParsedMessage) -> int:
    subject = re.sub(
        r"^(?:(?:Re|Fwd|Fw|Aw|Antwort|Sv):\s*)+", "", pm.subject.strip(), flags=re.IGNORECASE
    )
    if not re.search(r"\s", subject) or len(subject) < 10:
        return 0
    raw = " ".join(pm.raw_header_all("Subject"))
    if evals._CAPS_FP_ENCODED_WORD_RE.search(raw):
        return 0
    letters = re.sub(r"[^a-zA-Z]", "", subject)
    return int(bool(letters) and letters == letters.upper())


def _ref_mime_parts(pm: ParsedMessage) -> list[tuple[str, str, str]]:
    out = []
    for headers in [pm.raw_headers, *pm.part_headers]:
        fields = {k.lower(): val for k, val in reversed(headers)}
        out.append(
            (
                fields.get("content-type", "text/plain").strip().lower(),
                fields.get("content-transfer-encoding", "").strip().lower(),
                fields.get("content-disposition", "").strip().lower(),
            )
        )
    return out


# ---- the tests -----------------------------------------------------------------------------

RECEIVED = [
    "from a by b; Tue, 20 Aug 2002 16:21:22 +0100",
    "from a by b;Tue, 20 Aug 2002 16:21:22 +0100\n",
    "from a by b; id 1; Tue, 20 Aug 2002 16:21:22 +0100 (IST)",
    "from a by b; Tue, 20 Aug 2002 16:21:22 +0100;",  # ends with ';': no date
    "from a by b; Tue, 20 Aug 2002 16:21:22 +0100;\n",
    "from a by b;   ",
    "from a by b;",
    ";",
    "",
    "no semicolon Tue, 20 Aug 2002 16:21:22 +0100",
    "from a; \u2003Tue, 20 Aug 2002 16:21:22 +0100\u2003",  # Unicode spaces around
    "from a; 20 Aug 2002 16:21:22 -0000",  # "no zone": naive, not used
    "from a; 20 Aug 2002 16:21:22 EST",
    "from a; garbage",
]


@pytest.mark.parametrize("value", RECEIVED)
def test_received_date_is_the_regex_definition(value: str) -> None:
    assert evals._received_date(value) == _ref_received_date(value)


def _heads_raw(rng: random.Random) -> bytes:
    spellings = [b"text/plain", b"TEXT/PLAIN", b"Text/Plain", b"Text/plain", b"TeXt/pLaIn"]
    ctes = [b"base64", b"BASE64", b'"Base64"', b"quoted-printable", b"7bit"]
    blocks = []
    for _ in range(rng.randrange(0, 70)):  # beyond the 50-head limit sometimes
        ct = rng.choice([b"Content-Type: ", b"content-type:\t", b'CONTENT-TYPE: "', b"X-Ct: "])
        lines = [ct + rng.choice(spellings) + b"; charset=us-ascii"]
        if rng.random() < 0.7:
            lines.append(
                rng.choice([b"Content-Transfer-Encoding: ", b"content-transfer-encoding:"])
            )
            lines[-1] += rng.choice(ctes)
        rng.shuffle(lines)
        blocks.append(b"\n".join(lines) + b"\n\nbody text/plain here\n")
    return b"\n".join(blocks)


def test_text_plain_heads_and_encoding_match_the_four_spelling_scan() -> None:
    rng = random.Random(7)
    for _ in range(300):
        raw = _heads_raw(rng)
        assert evals._text_plain_heads(raw) == [h.lower() for h in _ref_text_plain_heads(raw)]
        for want in (b"base64", b"quoted-printable", b"7bit"):
            v = MessageViews(_pm(raw=raw), MAX)  # no CR: raw_head_and_body is raw
            got = evals.text_encoding(v, (want.decode(),))
            assert got == _ref_text_encoding(raw, want)


def _random_body(rng: random.Random) -> bytes:
    b64 = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0"
    pieces = [
        b"HELLO",
        b"world",
        b" ",
        b"\t",
        b"\x0b",
        b"\x0c",
        b"\r",
        b"  ",
        b"\n",
        b"\n\n",
        b"123",
        b"\xc3\x9c",
        b"x",
        b"Mixed Case Words",
        b64[: rng.randrange(55, 80)] + b" ",
    ]
    return b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 400)))


def test_counted_lines_are_inner_space_and_not_base64() -> None:
    rng = random.Random(3)
    inner, b64 = re.compile(rb"\S\s+\S"), re.compile(rb"^(?:[A-Za-z0-9+/=]{60,76} ){2}")
    for _ in range(500):
        for line in _random_body(rng).split(b"\n"):
            want = bool(inner.search(line)) and not b64.match(line)
            assert bool(evals._COUNTED_LINE_RE.match(line)) == want, line


def test_uppercase_and_body_caps_match_their_line_by_line_definitions() -> None:
    rng = random.Random(5)
    for i in range(400):
        body = _random_body(rng)
        if i % 50 == 0:
            body = body * 80  # past body_caps' 20,000 bytes
        v = views(_pm())
        v._body = body
        v.memo["charsets"] = set()  # no CJK-like charset declared
        assert evals._uppercase_pct(v) == _ref_uppercase_lines(body)
        for args in ((0.5, 200.0), (0.0, 0.0), (0.9, 5.0)):
            try:
                want: int | str = _ref_body_caps(body, *args)
            except ZeroDivisionError:
                want = "error"
            try:
                got: int | str = evals.body_caps(v, args)
            except ZeroDivisionError:
                got = "error"
            assert got == want


def test_uppercase_skips_likely_caps_charsets() -> None:
    v = views(_pm())
    v._body = b"SUBJECT\n" + b"SHOUTING WORDS HERE " * 20 + b"\n"
    v.memo["charsets"] = {b"iso-2022-jp"}
    assert evals._uppercase_pct(v) == 0.0
    v = views(_pm())
    v._body = b"SUBJECT\n" + b"SHOUTING WORDS HERE " * 20 + b"\n"
    v.memo["charsets"] = {b"us-ascii"}
    assert evals._uppercase_pct(v) == 100.0


HTML_TEXTS = [
    "",
    "x",
    "a b\u00a0c\td\n",
    "\u2003" * 50,  # not a space for the visible-character count
    "word " * 300,  # 1,500 characters
    "y" * 1019 + " ",  # around the first cut-off (1,000 + 20 x limit)
    "y" * 1020,
    "y" * 1021,
    "z" * 9001,
    " " * 8999 + "z",  # 9,000 characters, one visible: all read for ("0000", "0400")
    " " * 9000 + "z",  # one more: past that cut-off (no hit, however few are visible)
    "w " * 40000,
]
RANGES = [
    ("0000", "0400"),
    ("0400", "0800"),
    ("1600", "2000"),
    ("2800", "3200"),
    ("0", "0"),
    ("5", "1"),
    ("0", "-60"),  # a negative cut-off: the general path
    ("0.5", "0.9"),
    (),
]


@pytest.mark.parametrize("text", HTML_TEXTS)
def test_image_only_counts_visible_characters_as_the_cut_off_definition(text: str) -> None:
    v = views(_pm(text=text, images=1))
    for limit in (0, 1, 5, 200, 400, 1000, 8000):
        got = evals.image_only(v, (str(limit),))
        assert got == int(_ref_visible(v.pm.body, limit) <= limit), limit
    assert evals.image_only(views(_pm(text=text)), ("400",)) == 0


PARTS = [
    [],
    [(400, True)],
    [(401, True)],
    [(0, True)],
    [(300, False)],
    [(5000, False), (700, True)],  # any part
    [(700, False), (5000, True)],
]


@pytest.mark.parametrize("parts", PARTS)
def test_html_image_only_reads_each_parts_source_length(parts: list[tuple[int, bool]]) -> None:
    v = views(_pm(html="<img src=x>", html_part_images=parts, images=1))
    for args in RANGES:
        lo, hi = evals._num(args, 0, 0), evals._num(args, 1, 400)
        want = int(any(img and lo < n <= hi for n, img in parts))
        assert evals.sa_html_image_only(v, args) == want, args
    assert evals.sa_html_image_only(v, ("0400", "0800")) == int(
        any(img and 400 < n <= 800 for n, img in parts)
    )


SUBJECTS = [
    "HELLO WORLD AGAIN",
    "Re: HELLO WORLD AGAIN",
    "RE:Fwd: HELLO WORLD AGAIN",
    "re: re: SHORT ONE",
    "HELLO wORLD AGAIN",
    "HELLOWORLDAGAIN",
    "HELLO\u2003WORLDAGAIN",  # a Unicode space
    "1234 567890 123",
    "ÄÖÜ ÄÖÜ ÄÖÜ ÄÖÜ",  # no ASCII letter
    "ÄÖÜ ÄÖÜ ÄÖÜ A",
    "ÄÖÜ äöü ÄÖÜ A",
    "  HI THERE  ",
    "HI THERE",
    "Re: ",
    "",
    "=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= HELLO THERE",
    "=?utf-8?Q?HELLO?= WORLD AGAIN",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subject_all_caps_is_the_letters_definition(subject: str) -> None:
    pm = make_message(subject=subject)
    assert evals.subject_all_caps(views(pm), ()) == _ref_subject_all_caps(pm)


def test_header_lookups_read_like_the_parsed_message() -> None:
    no_to = parse(b"From: a@example.org\nSubject: bob, hi\nApparently-To: b@x\n\nhi\n")
    none = parse(b"From: a@example.org\nSubject: x\n\nhi\n")
    rt = make_message(subject="bob, hi", headers={"Reply-To": "Bob <bob@other.example>"})
    same = make_message(headers={"REPLY-TO": "alice@mail.example.org"})
    for pm in (no_to, none, rt, same, make_message(subject="")):
        v = views(pm)
        assert evals.missing_to(v, ()) == int(
            not pm.has_header("To") and not pm.has_header("Apparently-To")
        )
        assert evals._header(v, "subject") == pm.subject
        assert address_of(evals._header(v, "reply-to")) == pm.reply_to
    assert evals.missing_to(views(none), ()) == 1
    assert evals.missing_to(views(no_to), ()) == 0
    assert evals.replyto_mismatch(views(rt), ()) == 1
    assert evals.replyto_mismatch(views(same), ()) == 0


MULTIPART = b"""From: a@example.org
To: b@example.net
Subject: parts
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"
Content-Type: text/plain

--XX
Content-Type: TEXT/PLAIN; charset=us-ascii
Content-Transfer-Encoding: BASE64
Content-Transfer-Encoding: 7bit

aGVsbG8gdGhlcmUK
--XX
Content-Type: text/html
Content-Transfer-Encoding: quoted-printable

<p>hi=20there</p>
--XX
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64
Content-Disposition: ATTACHMENT; filename="a.bin"

AAAA
--XX
Content-Transfer-Encoding:  Quoted-Printable

plain part
--XX--
"""


def test_mime_tests_read_the_first_header_of_each_part() -> None:
    pm = parse(MULTIPART)
    parts = _ref_mime_parts(pm)
    assert evals._mime_parts(views(pm)) == parts
    v = views(pm)
    b64 = sum(1 for _, cte, _ in parts if cte.startswith("base64"))
    qp = sum(1 for _, cte, _ in parts if cte.startswith("quoted-printable"))
    text64 = any(ct.startswith("text/") and cte.startswith("base64") for ct, cte, _ in parts)
    assert (b64, qp, text64) == (2, 2, True)
    assert evals.check_for_mime(v, ("mime_base64_count",)) == b64
    assert evals.check_for_mime(v, ("mime_qp_count",)) == qp
    # mime_base64_encoded_text reads each part's last header, as SpamAssassin does: the
    # text part's last Content-Transfer-Encoding is 7bit
    assert evals.check_for_mime(v, ("mime_base64_encoded_text",)) == 0
    last64 = parse(
        MULTIPART.replace(
            b"BASE64\nContent-Transfer-Encoding: 7bit", b"7bit\nContent-Transfer-Encoding: base64"
        )
    )
    assert evals.check_for_mime(views(last64), ("mime_base64_encoded_text",)) == 1
    assert evals.check_for_mime(v, ("mime_attachment",)) == 1
    assert evals.check_for_mime(v, ("mime_faraway_charset",)) == 0


def test_charset_mismatch_looks_at_the_body_bytes() -> None:
    head = b"From: a@example.org\nSubject: x\nContent-Type: text/plain; charset=us-ascii\n"
    eight_bit_body = parse(head + b"\ncaf\xc3\xa9\n")
    eight_bit_head = parse(head.replace(b"Subject: x", b"Subject: caf\xc3\xa9") + b"\nplain\n")
    ascii_only = parse(head + b"\nplain\n")
    assert evals.charset_mismatch(views(eight_bit_body), ()) == 1
    assert evals.charset_mismatch(views(eight_bit_head), ()) == 0
    assert evals.charset_mismatch(views(ascii_only), ()) == 0
