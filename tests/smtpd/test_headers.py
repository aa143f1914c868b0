"""Header hygiene and stamping: incoming X-Spam-* and our-id Authentication-Results removed,
Received / Authentication-Results / SpamAssassin-compatible X-Spam-* added."""

from __future__ import annotations

from mailsift.smtpd import headers as hdr
from mailsift.verdict import Action, Symbol, Verdict
from tests.smtpd.util import client

INCOMING = (
    b"Received: from elsewhere by somewhere; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"X-Spam-Flag: NO\r\n"
    b"x-spam-status: No, score=-100.0 required=5.0\r\n"
    b"X-Spam-Report: folded\r\n"
    b"\tcontinuation line that must go too\r\n"
    b"Authentication-Results: mx.mailsift.test; spf=pass smtp.mailfrom=forged.example\r\n"
    b"Authentication-Results: MX.MAILSIFT.TEST 1; dkim=pass (forged, version form)\r\n"
    b"Authentication-Results: (comment) mx.mailsift.test; dmarc=pass\r\n"
    b"Authentication-Results: mx.upstream.example; spf=fail smtp.mailfrom=x.example\r\n"
    b"From: sender@example.org\r\n"
    b"Subject: headers\r\n"
    b"\r\n"
    b"X-Spam-Flag: YES in the body stays\r\n"
)


def _verdict(action: Action, score: float) -> Verdict:
    return Verdict(
        verdict_id="v1",
        probability=0.9,
        score=score,
        required_score=5.0,
        action=action,
        rules=[Symbol("RULE_B", 2.0), Symbol("RULE_A", 1.0)],
    )


def test_remove_untrusted() -> None:
    out, removed = hdr.remove_untrusted(INCOMING, "mx.mailsift.test")
    assert removed.count("authentication-results") == 3
    assert {"x-spam-flag", "x-spam-status", "x-spam-report"} <= set(removed)
    assert b"X-Spam-Flag: NO" not in out and b"continuation line" not in out
    assert b"mx.upstream.example; spf=fail" in out  # someone else's results are kept
    assert out.endswith(b"\r\n\r\nX-Spam-Flag: YES in the body stays\r\n")  # body untouched
    assert out.startswith(b"Received: from elsewhere")


def test_spam_headers_are_spamassassin_compatible() -> None:
    fields = dict(hdr.spam_headers(_verdict(Action.SPAM, 7.31), ["CHECK_X"], version="mailsift-x"))
    assert fields == {
        "X-Spam-Flag": "YES",
        "X-Spam-Score": "7.3",
        "X-Spam-Level": "*******",
        "X-Spam-Status": (
            "Yes, score=7.3 required=5.0 tests=CHECK_X,RULE_A,RULE_B autolearn=no "
            "version=mailsift-x"
        ),
    }
    ham = dict(hdr.spam_headers(_verdict(Action.HAM, -1.2)))
    assert "X-Spam-Flag" not in ham
    assert ham["X-Spam-Status"].startswith("No, score=-1.2 required=5.0")
    assert ham["X-Spam-Level"] == ""


def test_fold_and_prepend() -> None:
    name, value = hdr.authentication_results(
        "mx.mailsift.test",
        [
            "spf=pass smtp.mailfrom=example.org",
            "dkim=pass header.d=example.org header.s=s1",
            "dmarc=pass header.from=example.org",
        ],
        auth_user="alice@mailsift.test",
    )
    folded = hdr.fold(name, value)
    assert all(len(line) <= 78 for line in folded.split(b"\r\n"))
    assert folded.startswith(b"Authentication-Results: mx.mailsift.test; auth=pass")
    out = hdr.prepend(b"Subject: x\r\n\r\nbody", [(name, value)])
    assert out.endswith(b"Subject: x\r\n\r\nbody")
    assert hdr.authentication_results("mx.mailsift.test", [])[1] == "mx.mailsift.test; none"


def test_received_header_cannot_be_injected() -> None:
    _, value = hdr.received(
        helo="evil\r\nX-Injected: 1", client_ip="2001:db8::1", client_name=None,
        by="mx.mailsift.test", queue_id="Q1", esmtp=True, tls=None, auth_user=None,
    )  # fmt: skip
    assert "\r" not in value and "\n" not in value
    assert "[IPv6:2001:db8::1]" in value and "with ESMTP id Q1" in value


def test_headers_through_the_filter(smtp_filter, smtp_sink) -> None:
    c = client(smtp_filter.port)
    try:
        c.sendmail("sender@example.org", ["bob@mailsift.test"], INCOMING)
    finally:
        c.quit()
    (m,) = smtp_sink.wait_for(1)
    ars = m.get_all("Authentication-Results")
    assert ars == [
        "mx.mailsift.test; none",
        "mx.upstream.example; spf=fail smtp.mailfrom=x.example",
    ]
    assert m.get_all("X-Spam-Flag") is None and m.get_all("X-Spam-Report") is None
    received = m.get_all("Received")
    assert len(received) == 3  # smtp-sink's, ours, the original
    assert received[1].startswith("from client.example (unknown [127.0.0.2]) by mx.mailsift.test")
