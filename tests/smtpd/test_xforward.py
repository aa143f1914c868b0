"""XFORWARD (Postfix's XFORWARD_README): the Postfix in front names the client it passes on,
and the filter's checks, Received field and relay decisions treat it as they should.

A real FilterServer on loopback with real smtplib clients; the CONNECT- and HELO-stage
checks are small recording checks (``make_check``), so each test can say exactly which
client address and HELO name they saw. The Postfix in front is 127.0.0.1 (in
``smtp.xforward_hosts`` and ``smtp.relay_networks``); everything else is outside."""

from __future__ import annotations

from typing import Any

from mailsift.smtpd.checks.base import CheckAction, Stage
from tests.fixtures.smtp import OUTSIDE_IP
from tests.smtpd.test_runner_scoring import make_check
from tests.smtpd.util import client

LISTED = "192.0.2.66"  # what the blocking check refuses
MSG = b"From: a@example.org\r\nTo: bob@mailsift.test\r\nSubject: hi\r\n\r\nhello\r\n"


def _filter(filter_factory: Any, smtp_sink: Any) -> tuple[Any, Any, Any]:
    listed = make_check(
        "dnsbl", Stage.CONNECT, CheckAction.REJECT, reason="client listed",
        when=lambda ctx: ctx.client_ip == LISTED,
    )  # fmt: skip
    helo = make_check("helo_seen", Stage.HELO)
    helo.runs.clear()
    srv = filter_factory(smtp_sink, checks=[listed, helo], xforward_hosts=["127.0.0.1/32"])
    return srv, listed, helo


def test_xforward_names_the_client_the_checks_see(filter_factory: Any, smtp_sink: Any) -> None:
    srv, _, helo = _filter(filter_factory, smtp_sink)
    c = client(srv.port, source="127.0.0.1", helo="postfix.mailsift.test")
    try:
        assert "NAME ADDR PORT PROTO HELO IDENT SOURCE" in c.esmtp_features["xforward"].upper()
        code, _ = c.docmd(
            "XFORWARD", f"NAME=bad.example ADDR={LISTED} PORT=40000 HELO=bad+2Eexample"
        )
        assert code == 250
        assert helo.runs[-1].client_ip == LISTED and helo.runs[-1].helo == "bad.example"
        # the listed client's refusal is delayed to MAIL, as for a direct connection
        code, msg = c.docmd("MAIL FROM:<a@example.org>")
        assert code == 550 and b"client listed" in msg
        # another XFORWARD replaces it: an unlisted client gets through, and the Received
        # field names it, with Postfix's HELO-less [UNAVAILABLE] ignored
        assert (
            c.docmd("XFORWARD", "ADDR=198.51.100.7 NAME=[UNAVAILABLE] HELO=good.example")[0] == 250
        )
        c.sendmail("a@example.org", ["bob@mailsift.test"], MSG)
    finally:
        c.quit()
    (delivered,) = smtp_sink.wait_for(1)
    ours = [str(v) for v in delivered.get_all("Received") or [] if "(mailsift)" in str(v)]
    assert len(ours) == 1 and ours[0].startswith("from good.example (unknown [198.51.100.7])")


def test_relaying_is_still_the_peers_and_ehlo_ends_the_forwarding(
    filter_factory: Any, smtp_sink: Any
) -> None:
    srv, _, helo = _filter(filter_factory, smtp_sink)
    c = client(srv.port, source="127.0.0.1", helo="postfix.mailsift.test")
    try:
        assert c.docmd("XFORWARD", "ADDR=198.51.100.7 HELO=outside.example")[0] == 250
        # Postfix applied its relay restrictions: the relay decision is the peer's
        c.docmd("MAIL FROM:<a@example.org>")
        assert c.docmd("RCPT TO:<friend@remote.example>")[0] == 250
        assert c.docmd("RSET")[0] == 250
        c.ehlo("postfix.mailsift.test")  # a new EHLO: the peer is the client again
        assert helo.runs[-1].client_ip == "127.0.0.1"
        assert helo.runs[-1].helo == "postfix.mailsift.test"
    finally:
        c.quit()


def test_xforward_only_from_the_configured_hosts(filter_factory: Any, smtp_sink: Any) -> None:
    srv, _, helo = _filter(filter_factory, smtp_sink)
    c = client(srv.port, source=OUTSIDE_IP)
    try:
        assert "xforward" not in c.esmtp_features
        code, _ = c.docmd("XFORWARD", "ADDR=198.51.100.7")
        assert code == 550
        assert helo.runs[-1].client_ip == OUTSIDE_IP  # nothing changed
    finally:
        c.quit()


def test_bad_xforward_commands(filter_factory: Any, smtp_sink: Any) -> None:
    srv, _, _ = _filter(filter_factory, smtp_sink)
    c = client(srv.port, source="127.0.0.1")
    try:
        assert c.docmd("XFORWARD", "COLOUR=blue")[0] == 501
        assert c.docmd("XFORWARD", "ADDR=not-an-address")[0] == 501
        assert c.docmd("XFORWARD", "PORT=eighty")[0] == 501
        assert c.docmd("XFORWARD", "")[0] == 501
        assert c.docmd("XFORWARD", "ADDR=IPV6:2001:db8::1")[0] == 250
        c.docmd("MAIL FROM:<a@example.org>")
        assert c.docmd("XFORWARD", "ADDR=198.51.100.7")[0] == 503  # inside a transaction
    finally:
        c.quit()
