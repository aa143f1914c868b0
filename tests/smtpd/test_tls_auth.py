"""STARTTLS, the implicit-TLS port, AUTH PLAIN/LOGIN only after TLS, throttling (the accounts
themselves: tests/store/test_accounts.py)."""

from __future__ import annotations

import base64
import smtplib

import pytest

from tests.fixtures.smtp import OUTSIDE_IP, swaks
from tests.smtpd.util import client, tls_client, tls_ctx


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_no_auth_before_tls(smtp_filter) -> None:
    c = client(smtp_filter.port)
    try:
        assert c.has_extn("starttls")
        assert not c.has_extn("auth")
        code, msg = c.docmd("AUTH", "PLAIN " + _b64("\0alice@mailsift.test\0alice-pw"))
        assert code == 538 and b"Encryption required" in msg
    finally:
        c.quit()


def test_starttls_then_auth_plain_and_login(smtp_filter) -> None:
    c = tls_client(smtp_filter.port)
    try:
        assert not c.has_extn("starttls")
        assert set(c.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        c.user, c.password = "alice@mailsift.test", "alice-pw"
        code, _ = c.auth("PLAIN", c.auth_plain)
        assert code == 235
    finally:
        c.quit()
    c = tls_client(smtp_filter.port)
    try:
        c.user, c.password = "Alice@Mailsift.Test", "alice-pw"  # logins ignore case
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235
        assert c.docmd("AUTH", "PLAIN x")[0] == 503  # already authenticated
    finally:
        c.quit()


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice@mailsift.test", "wrong"),
        ("nobody@mailsift.test", "whatever"),
        ("dave@mailsift.test", "dave-pw"),  # disabled
        ("erin@mailsift.test", "erin-pw"),  # expired ("old")
    ],
)
def test_bad_credentials_refused(filter_factory, smtp_sink, user: str, password: str) -> None:
    srv = filter_factory(smtp_sink)
    c = tls_client(srv.port)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.login(user, password)
        assert err.value.smtp_code == 535
        # and the session stays unauthenticated: no relaying
        c.docmd("MAIL FROM:<x@mailsift.test>")
        assert c.docmd("RCPT TO:<friend@remote.example>")[0] == 550
    finally:
        c.quit()


def test_failed_auth_is_throttled_per_ip(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, auth_failures_before_throttle=3)
    c = tls_client(srv.port)
    try:
        for _ in range(3):
            code, _ = c.docmd("AUTH", "PLAIN " + _b64("\0alice@mailsift.test\0bad"))
            assert code == 535
        # now even the right password is refused for a while (454: try later)
        code, msg = c.docmd("AUTH", "PLAIN " + _b64("\0alice@mailsift.test\0alice-pw"))
        assert code == 454, msg
    finally:
        c.quit()
    # a new connection from the same IP is throttled too; another IP is not
    c = tls_client(srv.port)
    try:
        code, _ = c.docmd("AUTH", "PLAIN " + _b64("\0alice@mailsift.test\0alice-pw"))
        assert code == 454
    finally:
        c.quit()
    c = tls_client(srv.port, source="127.0.0.3")
    try:
        code, _ = c.docmd("AUTH", "PLAIN " + _b64("\0alice@mailsift.test\0alice-pw"))
        assert code == 235
    finally:
        c.quit()


def test_auth_plain_rejects_foreign_authzid(smtp_filter) -> None:
    c = tls_client(smtp_filter.port)
    try:
        code, _ = c.docmd(
            "AUTH", "PLAIN " + _b64("admin@mailsift.test\0alice@mailsift.test\0alice-pw")
        )
        assert code == 535
        assert c.docmd("AUTH", "PLAIN !!notbase64")[0] == 501
    finally:
        c.quit()


def test_implicit_tls_submission_port(smtp_filter, smtp_sink) -> None:
    assert smtp_filter.submission_port
    c = smtplib.SMTP_SSL("127.0.0.1", smtp_filter.submission_port, context=tls_ctx(),
                         source_address=(OUTSIDE_IP, 0), timeout=15)  # fmt: skip
    try:
        c.ehlo("laptop.example")
        assert c.has_extn("auth") and not c.has_extn("starttls")
        c.login("alice@mailsift.test", "alice-pw")
        c.sendmail("alice@mailsift.test", ["friend@remote.example"], b"Subject: s\r\n\r\nhi\r\n")
    finally:
        c.quit()
    (msg,) = smtp_sink.wait_for(1)
    received = msg.get_all("Received")[1]  # [0] is smtp-sink's own
    assert "with ESMTPSA" in received and "TLSv1." in received


def test_swaks_starttls_auth_and_tls_on_connect(smtp_filter, smtp_sink) -> None:
    common = ["--from", "alice@mailsift.test", "--to", "friend@remote.example",
              "--local-interface", OUTSIDE_IP, "--auth-user", "alice@mailsift.test",
              "--auth-password", "alice-pw", "--ehlo", "swaks.example"]  # fmt: skip
    r = swaks("--server", f"127.0.0.1:{smtp_filter.port}", "--tls", "--auth", "PLAIN", *common)
    assert r.returncode == 0, r.stdout + r.stderr
    r = swaks("--server", f"127.0.0.1:{smtp_filter.submission_port}", "--tls-on-connect",
              "--auth", "LOGIN", *common)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # swaks refuses to AUTH in clear when asked without --tls: the server never offers it
    r = swaks("--server", f"127.0.0.1:{smtp_filter.port}", "--auth", "PLAIN", *common)
    assert r.returncode != 0
    assert "did not advertise authentication" in r.stderr
    assert len(smtp_sink.wait_for(2)) == 2
