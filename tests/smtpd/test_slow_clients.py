"""Slow clients over raw sockets: the record deadline (Postfix's smtpd_per_record_deadline)
cuts a client dripping a byte at a time; idle_timeout counts silence, so pauses between
lines and a long transfer that keeps flowing are not cut."""

from __future__ import annotations

import time

from tests.smtpd.util import Raw

DRIP = 2.0  # seconds between two bytes of the dripping client
DEADLINE = 3.0  # the record deadline configured for these tests


def _drip_until_cut(r: Raw, data: bytes) -> tuple[float, bytes]:
    """Send ``data`` a byte every DRIP seconds until the server answers; (seconds from the
    first byte to the answer, what it answered)."""
    start = time.monotonic()
    r.sock.settimeout(DRIP)
    for byte in data:
        r.send(bytes([byte]))
        try:
            answer = r.sock.recv(4096)
        except TimeoutError:
            continue
        return time.monotonic() - start, answer
    raise AssertionError("the whole line went through: no record deadline")


def _assert_cut(r: Raw, elapsed: float, answer: bytes) -> None:
    assert answer.startswith(b"421 4.4.2"), answer
    assert DEADLINE - 0.5 <= elapsed < DEADLINE + DRIP, elapsed
    assert r.closed(timeout=5)


def test_a_dripped_command_is_cut_at_the_record_deadline(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, record_deadline=DEADLINE, idle_timeout=60)
    r = Raw(srv.port)
    assert r.cmd("EHLO drip.example")[0] == 250
    elapsed, answer = _drip_until_cut(r, b"MAIL FROM:<a@example.org>\r\n")
    _assert_cut(r, elapsed, answer)


def test_a_dripped_message_line_is_cut_at_the_record_deadline(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, record_deadline=DEADLINE, idle_timeout=60)
    r = Raw(srv.port)
    assert r.cmd("EHLO drip.example")[0] == 250
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@mailsift.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: drip\r\n\r\n")
    elapsed, answer = _drip_until_cut(r, b"one byte at a time\r\n.\r\n")
    _assert_cut(r, elapsed, answer)
    assert smtp_sink.files() == []


def test_pauses_between_lines_are_not_cut(filter_factory, smtp_sink) -> None:
    """The deadline starts at a line's first byte: waiting between lines is idle time."""
    srv = filter_factory(smtp_sink, record_deadline=1.0, idle_timeout=60)
    r = Raw(srv.port)
    assert r.cmd("EHLO pause.example")[0] == 250
    time.sleep(1.5)
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@mailsift.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: pauses\r\n\r\nfirst line\r\n")
    time.sleep(1.5)
    r.send(b"second line\r\n.\r\n")
    assert r.reply()[0] == 250
    r.cmd("QUIT")
    (msg,) = smtp_sink.wait_for(1)
    assert msg.get_payload().splitlines()[:2] == ["first line", "second line"]


def test_a_transfer_still_flowing_outlasts_idle_timeout(filter_factory, smtp_sink) -> None:
    """idle_timeout is the client's silence: a message that takes longer than it to arrive,
    a line every half second, is received."""
    srv = filter_factory(smtp_sink, idle_timeout=1.5)
    r = Raw(srv.port)
    assert r.cmd("EHLO slow-link.example")[0] == 250
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@mailsift.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: slow link\r\n\r\n")
    for i in range(7):
        time.sleep(0.5)
        r.send(f"line {i}\r\n".encode())
    r.send(b".\r\n")
    assert r.reply()[0] == 250
    r.cmd("QUIT")
    (msg,) = smtp_sink.wait_for(1)
    assert msg.get_payload().splitlines()[:7] == [f"line {i}" for i in range(7)]
    # and silence still ends a session
    quiet = Raw(srv.port)
    assert quiet.cmd("EHLO quiet.example")[0] == 250
    assert quiet.closed(timeout=10)


def test_no_record_deadline_when_zero(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, record_deadline=0, idle_timeout=60)
    r = Raw(srv.port)
    assert r.cmd("EHLO drip.example")[0] == 250
    r.send(b"NO")
    r.sock.settimeout(1.5)
    try:
        got = r.sock.recv(4096)
    except TimeoutError:
        got = b""
    assert got == b""
    r.send(b"OP\r\n")
    assert r.reply()[0] == 250
    r.close()
