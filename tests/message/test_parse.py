"""The message parser: decoding, structure, URLs, attachments, foreign headers, hostile input."""

from __future__ import annotations

import base64
import email.utils
import hashlib
from datetime import datetime
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsift.message import parse, registrable_domain


def _msg(headers: str, body: str) -> bytes:
    return (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode()


def test_plain_message_headers_and_body() -> None:
    raw = _msg(
        """
From: Alice Example <alice@example.org>
To: bob@mailsift.test, Carol <carol@mailsift.test>
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from =?iso-8859-1?b?Wvxya2g=?=
Date: Tue, 01 Oct 2002 10:00:00 +0000
Message-ID: <abc@example.org>
""",
        "Hello Bob,\nsee https://www.example.com/path?q=1.\nAlice\n",
    )
    pm = parse(raw)
    assert pm.subject == "Grüße from Zürkh"
    assert pm.from_addr == "alice@example.org"
    assert pm.from_name == "Alice Example"
    assert pm.to_addrs == ["bob@mailsift.test", "carol@mailsift.test"]
    assert pm.message_id == "<abc@example.org>"
    assert pm.date is not None and pm.date.year == 2002
    assert "Hello Bob" in pm.body
    assert [u.url for u in pm.urls] == ["https://www.example.com/path?q=1"]
    assert pm.urls[0].domain == "example.com"
    assert pm.digest == hashlib.sha256(raw).hexdigest()
    assert pm.defects == []
    assert not pm.truncated


def test_mbox_from_line_is_tolerated() -> None:
    raw = b"From spammer@example.net  Mon Jan  1 00:00:00 2002\n" + _msg(
        "From: x@example.net\nSubject: hi", "body\n"
    )
    pm = parse(raw)
    assert pm.envelope_from == "spammer@example.net"
    assert pm.subject == "hi"
    assert pm.from_addr == "x@example.net"


def test_html_rendering_links_and_images() -> None:
    html = (
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        "<p>Click <a href='http://198.51.100.7/login'>https://www.paypal.com/</a></p>"
        "<img src='cid:x'><img src='http://track.example.net/p.gif'>"
        "<form action='http://phish.example.net/post'></form></body></html>"
    )
    raw = _msg("From: a@b.example\nSubject: s\nContent-Type: text/html; charset=utf-8", html)
    pm = parse(raw)
    assert pm.is_html_only
    assert "alert" not in pm.html_text and "color" not in pm.html_text
    assert "Click" in pm.html_text
    assert pm.images == 2
    link = pm.urls[0]
    assert link.is_ip and link.host == "198.51.100.7"
    assert link.text == "https://www.paypal.com/"
    assert link.source == "html"
    assert any(u.domain == "example.net" and u.host == "phish.example.net" for u in pm.urls)


def test_attachments_and_multipart() -> None:
    m = EmailMessage()
    m["From"] = "a@example.org"
    m["Subject"] = "invoice"
    m.set_content("see attached")
    m.add_attachment(
        b"MZ\x90\x00" * 100,
        maintype="application",
        subtype="octet-stream",
        filename="invoice.pdf.exe",
    )
    m.add_attachment(b"\x89PNG....", maintype="image", subtype="png", filename="a.png")
    pm = parse(m.as_bytes())
    names = [(a.filename, a.content_type, a.size) for a in pm.attachments]
    assert ("invoice.pdf.exe", "application/octet-stream", 400) in names
    assert ("a.png", "image/png", 8) in names
    assert pm.images == 1
    assert "see attached" in pm.text


def test_foreign_filter_headers_are_dropped() -> None:
    raw = _msg(
        """
From: a@example.org
X-Spam-Status: Yes, score=20.0
X-Spam-Flag: YES
X-Barracuda-Spam-Score: 9
X-Virus-Scanned: clean
Authentication-Results: evil.example; spf=pass
Authentication-Results: mx.mailsift.test; dkim=pass
Subject: s
""",
        "x\n",
    )
    pm = parse(raw, trusted_authserv_ids=["mx.mailsift.test"])
    names = [k.lower() for k, _ in pm.headers]
    assert "x-spam-status" not in names and "x-spam-flag" not in names
    assert "x-barracuda-spam-score" not in names and "x-virus-scanned" not in names
    assert pm.header_all("Authentication-Results") == ["mx.mailsift.test; dkim=pass"]
    assert set(pm.dropped_headers) >= {"X-Spam-Status", "X-Spam-Flag", "X-Virus-Scanned"}
    assert "X-Spam" not in pm.header_block


def test_bad_base64_unknown_charset_nul_and_8bit_headers() -> None:
    raw = (
        b"From: \xe9l\xe8ve <x@example.org>\r\nSubject: caf\xc3\xa9 \xff\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"SGVsbG8gd29y!!!bGQ\x00=\r\n"
    )
    pm = parse(raw)
    assert "NUL bytes in message" in pm.defects
    assert any(d.startswith("8-bit header") for d in pm.defects)
    assert any("unknown charset" in d for d in pm.defects)
    assert "café" in pm.subject
    assert pm.from_addr == "x@example.org"


def test_truncated_multipart_is_reported_not_raised() -> None:
    raw = _msg(
        'From: a@example.org\nSubject: s\nContent-Type: multipart/mixed; boundary="XX"',
        "--XX\nContent-Type: text/plain\n\nfirst part\n--XX\nContent-Type: text/html\n\n<b>cut",
    )
    pm = parse(raw)
    assert "first part" in pm.text
    assert "cut" in pm.html_text
    assert "CloseBoundaryNotFoundDefect" in pm.defects


def test_huge_message_is_capped_and_says_so() -> None:
    body = base64.encodebytes(b"A" * (50 * 1024 * 1024)).decode()
    raw = _msg(
        "From: a@example.org\nSubject: big\nContent-Type: multipart/mixed; boundary=B",
        "--B\nContent-Type: text/plain\n\nsmall text\n--B\n"
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + body,
    )
    pm = parse(raw, max_parse_bytes=4 * 1024 * 1024, max_text_chars=10_000)
    assert pm.truncated
    assert any(d.startswith("truncated: message of") for d in pm.defects)
    assert pm.size == len(raw)
    assert "small text" in pm.text


def test_text_cap() -> None:
    raw = _msg("From: a@example.org\nSubject: s", "word " * 50_000)
    pm = parse(raw, max_text_chars=1000)
    assert len(pm.text) <= 1000
    assert pm.truncated


def test_registrable_domain() -> None:
    assert registrable_domain("www.bbc.co.uk") == "bbc.co.uk"
    assert registrable_domain("a.b.example.com") == "example.com"
    assert registrable_domain("10.1.2.3") == "10.1.2.3"


def test_url_forms() -> None:
    raw = _msg(
        "From: a@example.org\nSubject: s",
        "go to www.example.net/x, or http://user:pw@[2001:db8::1]:8080/p or "
        "(http://bit.ly/abc) mailto:x@y.z\n",
    )
    pm = parse(raw)
    hosts = [u.host for u in pm.urls]
    assert hosts == ["www.example.net", "2001:db8::1", "bit.ly"]
    assert pm.urls[1].is_ip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    pm = parse(data)
    assert pm.size == len(data)


_header_names = st.sampled_from(
    [
        "From",
        "To",
        "Subject",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Date",
        "Message-ID",
        "Reply-To",
        "MIME-Version",
        "Received",
        "X-Spam-Status",
    ]
)
_header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "multipart/mixed; boundary=",
            'multipart/alternative; boundary="b"',
            "text/html",
            "base64",
            "quoted-printable",
            "=?utf-8?b?!!!?=",
            "=?x-bad?q?=ZZ?=",
            "<>",
            "@@@",
            '"a@b"@c',
            "text/plain; charset=utf-7",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_header_names, _header_values), max_size=12),
    st.lists(
        st.one_of(st.text(max_size=200), st.sampled_from(["--b", "--b--", "\r\n.\r\n"])),
        max_size=12,
    ),
)
def test_hostile_mime_never_raises(headers: list[tuple[str, str]], lines: list[str]) -> None:
    head = "\r\n".join(f"{k}: {v}" for k, v in headers)
    raw = (head + "\r\n\r\n" + "\r\n".join(lines)).encode("utf-8", "surrogatepass")
    pm = parse(raw)
    assert isinstance(pm.body, str)
    assert all(k.lower() != "x-spam-status" for k, _ in pm.headers)


def test_thousands_of_empty_mime_parameters_are_tamed() -> None:
    # A real spam trick: the stdlib's parameter parser is quadratic in their number.
    raw = _msg(
        "From: a@example.org\nSubject: s\nContent-Type: text/html" + " ;" * 7000,
        "<p>buy now</p>",
    )
    pm = parse(raw)
    assert pm.content_type == "text/html"
    assert "buy now" in pm.html_text
    assert any("empty parameters" in d for d in pm.defects)


def test_folded_content_type_parameters_survive() -> None:
    raw = _msg(
        'From: a@example.org\nSubject: s\nContent-Type: multipart/alternative;\n\tboundary="zz"',
        "--zz\nContent-Type: text/plain; charset=utf-8\n\nplain words\n--zz--\n",
    )
    pm = parse(raw)
    assert pm.content_type == "multipart/alternative"
    assert "plain words" in pm.text
    assert not any("empty parameters" in d for d in pm.defects)


ADDRESS_VALUES = [
    "a@b.c",
    "  a@b.c  ",
    "<a@b.c>",
    "John Smith <j.s@ex.org>",
    "John\t  Q  Smith<j@x.org>",
    '"Smith, John" <j@x.org>',
    '"" <j@x.org>',
    '"  spaced  " <j@x>',
    "o'brien@x.ie",
    "A-B_C <a+b@x-y.z>",
    # not simple: the stdlib parser decides
    "John Q. Public <j@x.org>",
    "a@b.c (Comment Name)",
    "a@b.c, d@e.f",
    '"Quote \\" inside" <q@x.org>',
    "=?utf-8?q?Jos=C3=A9?= <jose@x.es>",
    "undisclosed-recipients:;",
    "Group: a@b.c, d@e.f;",
    "broken <a@b.c",
    "<@route.example:a@b.c>",
    "a..b@c.d",
    "",
]


def test_simple_address_fast_path_agrees_with_the_stdlib() -> None:
    from mailsift.message import _simple_addresses, parse_addresses

    fast = 0
    for value in ADDRESS_VALUES:
        for values in ((value,), (value, "x@y.z"), ("Ann <ann@x.org>", value)):
            want = tuple((n, a) for n, a in email.utils.getaddresses(values) if a or n)
            got = _simple_addresses(values)
            if got is not None:
                fast += 1
                assert got == want, values
            assert parse_addresses(values) == want, values
    assert fast >= 30  # the simple shapes do take the fast path


DATE_TEXTS = [
    "Tue, 20 Aug 2002 16:21:22 +0100",
    "Tue, 20 Aug 2002 16:21:22 +0100 (IST)",
    "20 aug 2002 16:21 -0530",
    "Sat,3 Feb 2001 01:02:03 +1345",
    "Mon, 32 Jan 2002 10:00:00 +0000",  # no such day
    "Mon, 1 Jan 2002 25:00:00 +0000",  # no such hour
    "1 Jan 2002 10:00:00 -0000",  # "no zone": a naive time, never used by the tests
    "1 Jan 2002 10:00:00 +2400",  # out of range
    "1 Jan 02 10:00:00 +0000",  # two-digit year: the stdlib's rules
    "Tue, 20 Aug 2002 16:21:22 EST",  # named zone: the stdlib
    "20 Aug 2002 16:21:22",  # no zone
    "garbage",
]


def test_fast_received_date_agrees_with_the_stdlib() -> None:
    from mailsift.classifier.rules.evals import _received_date
    from mailsift.message import _fast_date, parse_date

    def stdlib(text: str) -> datetime | None:
        try:
            return email.utils.parsedate_to_datetime(text)
        except Exception:
            return None

    fast = 0
    for text in DATE_TEXTS:
        want = stdlib(text)
        assert parse_date(text) == want
        got = _fast_date(text)
        if got is not None:
            fast += 1
            assert want is not None and got == want and got.utcoffset() == want.utcoffset()
        via_received = _received_date(f"from a by b; {text}")
        aware = want if want is not None and want.tzinfo is not None else None
        assert via_received == aware, text
    assert fast == 4


def test_parse_address_is_parseaddr() -> None:
    from mailsift.message import _simple_addresses, address_of, parse_address

    fast = 0
    for value in ADDRESS_VALUES:
        want = email.utils.parseaddr(value)
        assert parse_address(value) == want, value
        assert address_of(value) == want[1].lower(), value
        fast += _simple_addresses((value,)) is not None
    assert fast >= 10  # the simple shapes do take the fast path
