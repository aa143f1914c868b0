"""End to end: the checks inside the real SMTP filter (FilterServer), talked to with smtplib.

The filter runs in front of Postfix's smtp-sink; DNS is unbound with data/zones/ (127.0.0.2,
the "outside" client address, is outside.loop.test with SPF/DMARC for loop.test and the RFC
5782 test listing in zen.dnsbl.test), antivirus is a real clamd.
"""

from __future__ import annotations

import smtplib
import threading
import time
from email.message import EmailMessage
from typing import Any

import pytest

from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.store.greylist import SqliteGreylistStore
from mailsift.store.lists import StoreListPolicy
from tests.checks.helpers import make_settings
from tests.fixtures.clamd import eicar
from tests.fixtures.smtp import INSIDE_IP, OUTSIDE_IP


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def message(subject: str, sender: str = "alice@loop.test", virus: bool = False) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "bob@mailsift.test"
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@loop.test>"
    m.set_content("Hello Bob, see you at noon.\n")
    if virus:
        m.add_attachment(eicar(), maintype="application", subtype="octet-stream",
                         filename="invoice.com")  # fmt: skip
    return m.as_bytes()


@pytest.fixture
def make_filter(filter_factory, smtp_sink, dns_settings, clamd_server, sqlite_store, tmp_path):  # type: ignore[no-untyped-def]
    """A filter with our checks; keyword blocks override the check settings."""

    def make(*, resolver_settings: Any = None, clock: Any = None, lists: Any = (), **blocks: Any):  # type: ignore[no-untyped-def]
        base_blocks: dict[str, Any] = {
            "antivirus": {"clamd_socket": clamd_server.unix_address},
            "greylist": {"enabled": False},
        }
        for k, v in blocks.items():
            base_blocks[k] = {**base_blocks.get(k, {}), **v}
        settings = make_settings(resolver_settings or dns_settings, tmp_path, **base_blocks)
        policy = StoreListPolicy(sqlite_store, ttl=0.0)
        for kind, pattern in lists:
            policy.add(kind, pattern)
        checks = build_checks(
            settings,
            resolver=make_resolver(settings.dns),
            clock=clock,
            lists=policy,
            greylist_store=SqliteGreylistStore(tmp_path / "greylist.db"),
        )
        return filter_factory(smtp_sink, checks=checks, base=settings)

    return make


def connect(port: int, source: str = OUTSIDE_IP, helo: str = "outside.loop.test") -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
    c.ehlo(helo)
    return c


def send(
    port: int, raw: bytes, sender: str = "alice@loop.test", **kw: Any
) -> list[tuple[int, bytes]]:
    """MAIL, RCPT, DATA; the replies (stops at the first refusal)."""
    c = connect(port, **kw)
    out: list[tuple[int, bytes]] = []
    try:
        for cmd in (f"MAIL FROM:<{sender}>", "RCPT TO:<bob@mailsift.test>"):
            code, msg = c.docmd(cmd)
            out.append((code, msg))
            if code >= 400:
                return out
        out.append(c.data(raw))
    finally:
        c.quit()
    return out


def test_clean_mail_is_delivered_with_authentication_results(make_filter, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter()
    replies = send(srv.port, message("clean one"))
    assert replies[-1][0] == 250, replies
    (m,) = smtp_sink.wait_for(1)
    ar = " ".join(" ".join(m.get_all("Authentication-Results") or []).split())  # unfolded
    assert "spf=pass smtp.mailfrom=alice@loop.test" in ar
    assert "dmarc=pass" in ar and "header.from=loop.test" in ar
    assert "dkim=none" in ar
    assert "outside.loop.test" in m.get_all("Received")[1]  # the FCrDNS-verified name


def test_dnsbl_listed_client_refused(make_filter, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter(dnsbl={"reject_threshold": 1.0})
    replies = send(srv.port, message("listed"))
    code, msg = replies[0]
    assert code == 550 and b"5.7.1" in msg and b"zen.dnsbl.test" in msg
    inside = send(srv.port, message("from inside"), source=INSIDE_IP, helo="localhost")
    assert inside[-1][0] == 250  # the relay network is not looked up
    assert len(smtp_sink.wait_for(1)) == 1


def test_greylisting_defers_then_accepts_the_retry(make_filter, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    srv = make_filter(greylist={"enabled": True}, clock=clock)
    first = send(srv.port, message("grey"))
    assert first[-1] == (451, b"4.7.1 Greylisted, please try again later")
    clock.now += 60
    assert send(srv.port, message("grey"))[-1][0] == 451  # too early
    clock.now += 300
    retry = send(srv.port, message("grey"))
    assert retry[-1][0] == 250, retry
    assert [m["Subject"] for m in smtp_sink.wait_for(1)] == ["grey"]


def test_virus_is_rejected_with_554(make_filter, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter()
    code, msg = send(srv.port, message("invoice", virus=True))[-1]
    assert code == 554 and msg.startswith(b"5.7.1 Virus found: Eicar-Test")
    assert send(srv.port, message("after the virus"))[-1][0] == 250
    assert [m["Subject"] for m in smtp_sink.wait_for(1)] == ["after the virus"]


def test_clamd_down_tempfails(make_filter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter(antivirus={"clamd_socket": str(tmp_path / "no-clamd.sock")})
    code, msg = send(srv.port, message("unscanned"))[-1]
    assert code == 451 and msg.startswith(b"4.7.1")


def test_barred_and_black_listed_senders(make_filter) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter(
        barring={"sender": ["*@netcom.com", "~myfriend@netcom.com"]},
        lists=[("block", "*@blocked.test")],
    )
    barred = send(srv.port, message("x"), sender="anyone@netcom.com")
    assert barred[0] == (550, b"5.7.1 Address barred by local policy")
    blocked = send(srv.port, message("x"), sender="spam@blocked.test")
    assert blocked[0] == (550, b"5.7.1 Sender refused by local policy")
    friend = send(srv.port, message("x"), sender="myfriend@netcom.com")
    assert friend[0][0] == 250


def test_dead_dns_costs_one_timeout_and_other_sessions_go_on(  # type: ignore[no-untyped-def]
    make_filter, smtp_sink, blackhole_dns
) -> None:
    srv = make_filter(
        resolver_settings=blackhole_dns.settings(timeout=6.0, session_budget=30.0),
        dnsbl={"reject_threshold": 1.0},
    )
    events: list[str] = []
    stuck: dict[str, Any] = {}

    def outside_session() -> None:
        stuck["replies"] = send(srv.port, message("through dead dns"))
        events.append("outside done")

    t = threading.Thread(target=outside_session)
    t.start()
    deadline = time.monotonic() + 20
    while blackhole_dns.received == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert blackhole_dns.received > 0  # the outside session is now waiting on dead DNS
    for i in range(3):  # meanwhile the filter serves other clients
        assert (
            send(srv.port, message(f"inside {i}"), source=INSIDE_IP, helo="localhost")[-1][0] == 250
        )
        events.append(f"inside {i} done")
    t.join(timeout=60)
    assert events == ["inside 0 done", "inside 1 done", "inside 2 done", "outside done"]
    # the stuck session still got its mail through: DNS failures are results, not refusals
    assert stuck["replies"][-1][0] == 250, stuck["replies"]
    # and it waited once: only the DNSBL's first question(s) ever reached the dead server
    assert blackhole_dns.received <= 2
    subjects = sorted(m["Subject"] for m in smtp_sink.wait_for(4))
    assert subjects == ["inside 0", "inside 1", "inside 2", "through dead dns"]


def test_dkim_signed_forwarded_mail_passes_dmarc_by_dkim(make_filter, smtp_sink, dkim_key) -> None:  # type: ignore[no-untyped-def]
    raw = message("signed", sender="alice@good.test")
    signed = dkim_key.sign(raw, headers=(b"from", b"to", b"subject", b"message-id"))
    # relayed by 127.0.0.2, which good.test's SPF does not allow: DKIM carries DMARC
    replies = send(make_filter().port, signed, sender="alice@good.test")
    assert replies[-1][0] == 250, replies
    (m,) = smtp_sink.wait_for(1)
    ar = " ".join(" ".join(m.get_all("Authentication-Results") or []).split())
    assert "spf=fail smtp.mailfrom=alice@good.test" in ar
    assert "dkim=pass header.d=good.test header.s=sel1" in ar
    assert "dmarc=pass" in ar and "header.from=good.test" in ar


def test_helo_claiming_to_be_us_is_refused(make_filter) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter(rdns={"reject_bad_helo": True})
    replies = send(srv.port, message("x"), helo="mx.mailsift.test")
    code, msg = replies[0]
    assert code == 550 and b"HELO_CLAIMS_US" in msg
    assert send(srv.port, message("x"))[-1][0] == 250  # an honest HELO is fine


def test_spamvertised_url_domain_refused_at_data(make_filter, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    srv = make_filter(dnsbl={"uri_reject_threshold": 3.0})
    m = EmailMessage()
    m["From"] = "alice@loop.test"
    m["To"] = "bob@mailsift.test"
    m["Subject"] = "watches"
    m.set_content("Cheap watches at http://www.spamvertised.test/buy today only\n")
    code, msg = send(srv.port, m.as_bytes())[-1]
    assert code == 550 and b"spamvertised.test" in msg and b"dbl.dnsbl.test" in msg
    assert smtp_sink.messages() == []
