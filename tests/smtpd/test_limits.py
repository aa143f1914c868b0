"""Limits: SIZE (declared and actual), recipients, connections per IP, commands per session,
idle timeout, and garbage from a pipelining client (errors, never a crash)."""

from __future__ import annotations

import smtplib

from tests.fixtures.smtp import OUTSIDE_IP
from tests.smtpd.util import Raw, client


def _mail_ok(port: int) -> None:
    """The server still works: a normal message goes through."""
    c = client(port)
    try:
        c.sendmail("a@example.org", ["bob@mailsift.test"], b"Subject: ok\r\n\r\nstill alive\r\n")
    finally:
        c.quit()


def test_size_advertised_and_enforced(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, max_message_size=20_000)
    c = client(srv.port)
    try:
        assert c.esmtp_features["size"] == "20000"
        code, msg = c.docmd("MAIL FROM:<a@example.org> SIZE=20001")
        assert code == 552, msg
        assert c.docmd("MAIL FROM:<a@example.org> SIZE=1000")[0] == 250  # a lie...
        assert c.docmd("RCPT TO:<bob@mailsift.test>")[0] == 250
        code, msg = c.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 400)
        assert code == 552, msg  # ...caught on the actual data
    finally:
        c.quit()
    _mail_ok(srv.port)
    assert len(smtp_sink.wait_for(1)) == 1


def test_too_many_recipients(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, max_recipients=2)
    c = client(srv.port)
    try:
        c.docmd("MAIL FROM:<a@example.org>")
        assert c.docmd("RCPT TO:<bob@mailsift.test>")[0] == 250
        assert c.docmd("RCPT TO:<carol@mailsift.test>")[0] == 250
        code, msg = c.docmd("RCPT TO:<alice@mailsift.test>")
        assert (code, msg[:5]) == (452, b"4.5.3")
        code, _ = c.data(b"Subject: two\r\n\r\nfor two\r\n")
        assert code == 250
    finally:
        c.quit()
    (msg,) = smtp_sink.wait_for(1)
    assert msg.get_all("X-Rcpt-Args") == ["<bob@mailsift.test>", "<carol@mailsift.test>"]


def test_connections_per_ip(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, max_connections_per_ip=2)
    first, second = Raw(srv.port), Raw(srv.port)
    assert first.greeting[0] == second.greeting[0] == 220
    third = Raw(srv.port)
    assert third.greeting[0] == 421 and "4.7.0" in third.greeting[1]
    assert third.closed()
    other_ip = Raw(srv.port, source="127.0.0.3")
    assert other_ip.greeting[0] == 220
    first.cmd("QUIT")
    first.close()
    assert first.sock.fileno() == -1
    # once the first connection is gone, the IP may connect again
    for _ in range(50):
        again = Raw(srv.port)
        if again.greeting[0] == 220:
            break
        again.close()
    assert again.greeting[0] == 220
    for r in (second, other_ip, again):
        r.close()


def test_commands_per_session(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, max_commands_per_session=5)
    r = Raw(srv.port)
    for _ in range(5):
        assert r.cmd("NOOP")[0] == 250
    code, text = r.cmd("NOOP")
    assert code == 421 and "too many commands" in text
    assert r.closed()


def test_idle_timeout_closes_connection(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, idle_timeout=0.5)
    r = Raw(srv.port)
    assert r.cmd("EHLO idle.example")[0] == 250
    assert r.closed(timeout=20)


def test_garbage_pipelining_gets_errors_not_a_crash(smtp_filter, smtp_sink) -> None:
    r = Raw(smtp_filter.port)
    burst = [
        b"EHLO pipeline.example",
        b"MAIL FROM:<<<>>>",
        b"RCPT TO:<bob@mailsift.test>",  # no MAIL yet
        b"MAIL FROM:<a@example.org> BOGUS=1",
        b"MAIL FROM:<a@example.org>",
        b"MAIL FROM:<b@example.org>",  # nested
        b"RCPT TO:<\x01\x02@mailsift.test>",
        b"RCPT TO:<" + b"x" * 300 + b"@mailsift.test>",
        b"RCPT TO:",
        b"DATA extra",
        b"\xff\xfe\xfd binary",
        b"A" * 5000,
    ]
    r.send(b"\r\n".join(burst) + b"\r\n")
    codes = [r.reply()[0] for _ in burst]
    assert codes[0] == 250
    assert all(c >= 500 for c in codes[1:4]), codes
    assert codes[4] == 250 and codes[5] == 503
    assert all(500 <= c < 600 for c in codes[6:]), codes
    # unknown commands exhaust the bogus-command budget: 502 and the server hangs up
    for i in range(10):
        try:
            code, _ = r.cmd(f"XYZZY{i}")
        except ConnectionError:
            break
        assert code in (500, 502)
    else:
        raise AssertionError("server never hung up on a garbage client")
    r.close()
    _mail_ok(smtp_filter.port)
    assert len(smtp_sink.wait_for(1)) == 1


def test_unknown_recipient_in_a_real_send(smtp_filter, smtp_sink) -> None:
    c = smtplib.SMTP("127.0.0.1", smtp_filter.port, source_address=(OUTSIDE_IP, 0))
    try:
        refused = c.sendmail(
            "a@example.org",
            ["bob@mailsift.test", "ghost@mailsift.test"],
            b"Subject: x\r\n\r\nhello\r\n",
        )
    finally:
        c.quit()
    assert refused["ghost@mailsift.test"][0] == 550
    assert refused["ghost@mailsift.test"][1].startswith(b"5.1.1")
    (msg,) = smtp_sink.wait_for(1)
    assert msg.get_all("X-Rcpt-Args") == ["<bob@mailsift.test>"]
