"""SMTP smuggling (CVE-2023-51764 family) over a raw socket.

Only ``<CR><LF>.<CR><LF>`` ends DATA. A message carrying ``<LF>.<CR><LF>``, ``<CR><LF>.<LF>``
(or a "." line with any other bare CR/LF) is refused as a whole, so the "second message"
hidden inside it is neither executed here nor forwarded to a more lenient next hop. Other
bare line endings are normalised to CRLF (or refused when configured).
"""

from __future__ import annotations

import pytest

from mailsift.smtpd.limits import LineEndings, inspect_line_endings, normalise_line_endings
from tests.smtpd.util import Raw

SMUGGLED = (
    b"MAIL FROM:<admin@mailsift.test>\r\n"
    b"RCPT TO:<carol@mailsift.test>\r\n"
    b"DATA\r\n"
    b"From: admin@mailsift.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
)


def _open_transaction(r: Raw) -> None:
    assert r.cmd("EHLO smuggler.example")[0] == 250
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@mailsift.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354


@pytest.mark.parametrize(
    "end_of_first",
    [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["LF.CRLF", "CRLF.LF", "LF.LF", "CR.CRLF", "CRLF.CR"],
)
def test_smuggled_end_of_data_is_refused(smtp_filter, smtp_sink, end_of_first: bytes) -> None:
    r = Raw(smtp_filter.port)
    _open_transaction(r)
    r.send(b"Subject: first\r\n\r\nfirst body" + end_of_first + SMUGGLED + b".\r\n")
    code, text = r.reply()
    # exactly one reply for the whole thing: the smuggled MAIL/RCPT/DATA were never commands
    assert code == 550 and "5.5.2" in text and "smuggling" in text
    # the connection is in a clean state: a real transaction works and is the only delivery
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@mailsift.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: honest\r\n\r\nhonest body\r\n.\r\n")
    assert r.reply()[0] == 250
    r.cmd("QUIT")
    (msg,) = smtp_sink.wait_for(1)
    assert msg["Subject"] == "honest"
    assert msg.get_all("X-Rcpt-Args") == ["<bob@mailsift.test>"]


def test_dot_line_with_proper_crlf_ends_data_and_dot_stuffing_survives(
    smtp_filter, smtp_sink
) -> None:
    r = Raw(smtp_filter.port)
    _open_transaction(r)
    r.send(b"Subject: dots\r\n\r\n..leading dot\r\n...\r\nend\r\n.\r\n")
    assert r.reply()[0] == 250
    r.cmd("QUIT")
    raw = smtp_sink.wait_for(1) and smtp_sink.raw_messages()[0]
    # un-stuffed by us, re-stuffed on the way to the next hop, un-stuffed by smtp-sink
    assert b"\n.leading dot\n..\nend\n" in raw


def test_bare_lf_is_normalised(smtp_filter, smtp_sink) -> None:
    r = Raw(smtp_filter.port)
    _open_transaction(r)
    r.send(b"Subject: bare\nX-Test: 1\n\nline one\nline two\r\n.\r\n")
    assert r.reply()[0] == 250
    r.cmd("QUIT")
    (msg,) = smtp_sink.wait_for(1)
    assert msg["Subject"] == "bare" and msg["X-Test"] == "1"
    assert msg.get_payload().splitlines()[:2] == ["line one", "line two"]


def test_bare_lf_message_over_the_line_limit_is_normalised_and_delivered(
    smtp_filter, smtp_sink
) -> None:
    """50 KB of bare-LF lines (5x smtp.max_line_length): each line is within the limit once
    normalised, so the message is accepted and delivered intact, not refused as one line."""
    assert smtp_filter.settings.smtp.max_line_length == 10_000
    body_lines = [f"line {i:05d} " + "x" * 60 for i in range(700)]
    body = "\n".join(body_lines).encode()
    assert len(body) > 50_000
    r = Raw(smtp_filter.port)
    _open_transaction(r)
    r.send(b"Subject: bare and long\nX-Test: 50k\n\n" + body + b"\r\n.\r\n")
    code, text = r.reply()
    assert code == 250, text
    r.cmd("QUIT")
    (msg,) = smtp_sink.wait_for(1)
    assert msg["Subject"] == "bare and long" and msg["X-Test"] == "50k"
    got = msg.get_payload().splitlines()
    assert got[: len(body_lines)] == body_lines
    assert not "".join(got[len(body_lines) :])  # smtp-sink's dump may end with a blank line


def test_bare_lf_reaches_the_next_hop_as_crlf(filter_factory, tmp_path) -> None:
    """What the next hop receives on the wire: CRLF line ends only."""
    from aiosmtpd.controller import Controller

    from tests.fixtures.ports import free_port

    received: list[bytes] = []

    class Capture:
        async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
            received.append(envelope.original_content)
            return "250 OK"

    hop = Controller(Capture(), hostname="127.0.0.1", port=free_port())
    hop.start()
    try:
        srv = filter_factory(None, next_hop_host="127.0.0.1", next_hop_port=hop.port)
        r = Raw(srv.port)
        _open_transaction(r)
        body = b"\n".join(b"bare %05d " % i + b"y" * 70 for i in range(700))
        r.send(b"Subject: wire\n\n" + body + b"\r\n.\r\n")
        assert r.reply()[0] == 250
        r.cmd("QUIT")
    finally:
        hop.stop()
    (raw,) = received
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"Subject: wire\r\n\r\n" + body.replace(b"\n", b"\r\n") + b"\r\n")


def test_bare_lf_rejected_when_configured(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, bare_newlines="reject")
    r = Raw(srv.port)
    _open_transaction(r)
    r.send(b"Subject: bare\n\nline one\r\n.\r\n")
    code, text = r.reply()
    assert code == 550 and "bare" in text
    r.cmd("QUIT")
    assert smtp_sink.files() == []


def test_dot_after_bare_cr_inside_a_line_is_refused(smtp_filter, smtp_sink) -> None:
    """``..<CR>`` un-stuffs to ``.<CR>``: a "." line a lenient next hop might end DATA on."""
    r = Raw(smtp_filter.port)
    _open_transaction(r)
    r.send(b"Subject: cr\r\n\r\nA\rB\r\n..\rC\r\n.\r\n")
    assert r.reply()[0] == 550
    r.cmd("QUIT")
    assert smtp_sink.files() == []


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"a\r\nb\r\n", LineEndings.CLEAN),
        (b"a\nb\n", LineEndings.BARE),
        (b"a\r\n.\r\nb\nc", LineEndings.BARE),  # an un-stuffed "." line is fine
        (b"a\n.\r\nMAIL", LineEndings.SMUGGLING),
        (b"a\r\n.\nMAIL", LineEndings.SMUGGLING),
        (b"a\r\n\nMAIL", LineEndings.SMUGGLING),  # what "<CRLF>.<LF>" becomes un-stuffed
        (b"a\r.\r\n", LineEndings.SMUGGLING),
    ],
)
def test_inspect_line_endings(data: bytes, kind: LineEndings) -> None:
    assert inspect_line_endings(data) is kind
    if kind is not LineEndings.CLEAN:
        assert b"\n" not in normalise_line_endings(data).replace(b"\r\n", b"")
