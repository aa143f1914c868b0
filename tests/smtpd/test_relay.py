"""Relay control: forward-path resolution and the open-relay battery.

The battery follows nmap's smtp-open-relay script and the Nessus relay tests: null and
spoofed local senders, and the ``%``, ``@@``, ``"..."``, ``@host:`` and ``!`` forms against the
server's name and its IP literal. From an outside client (bound to 127.0.0.2, outside
``relay_networks = 127.0.0.1/32``) every form must be refused; from an authenticated client
plain remote addresses are relayed and the hidden-path forms are still refused.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from mailsift.config import load_settings
from mailsift.smtpd.accounts import Accounts
from mailsift.smtpd.addresses import PathSyntaxError, parse_path, split_path
from mailsift.smtpd.relay import RcptDecision, RecipientPolicy
from mailsift.store import open_store
from tests.fixtures.smtp import INSIDE_IP, OUTSIDE_IP, TEST_HASHER, swaks
from tests.smtpd.test_cli import _cli

REMOTE = "relay-target.example"
SERVER_NAME = "mx.mailsift.test"
LOCAL = "mailsift.test"


def battery(ip_literal: str) -> list[str]:
    """Recipient forms of the classic open-relay tests (without angle brackets)."""
    forms = []
    for host in (SERVER_NAME, LOCAL, f"[{ip_literal}]"):
        forms += [
            f"relaytest%{REMOTE}@{host}",
            f'"relaytest@{REMOTE}"@{host}',
            f'"relaytest%{REMOTE}"@{host}',
            f"relaytest@{REMOTE}@{host}",
            f"@{host}:relaytest@{REMOTE}",
            f"{REMOTE}!relaytest@{host}",
        ]
    forms += [
        f"relaytest@{REMOTE}",
        f'"relaytest@{REMOTE}"',
        f'"relaytest%{REMOTE}"',
        f"{REMOTE}!relaytest",
        f"relaytest@@{REMOTE}",
        f"relaytest%{REMOTE}",
        f"@{SERVER_NAME},@{LOCAL}:relaytest@{REMOTE}",
    ]
    return forms


SENDERS = ["<>", f"<postmaster@{LOCAL}>", f"<bob@{LOCAL}>", f"<antispam@[{INSIDE_IP}]>",
           f"<spoof@{REMOTE}>"]  # fmt: skip


def _rcpt(client: smtplib.SMTP, form: str) -> tuple[int, bytes]:
    code, msg = client.docmd(f"RCPT TO:<{form}>")
    return code, msg


def _client(port: int, source: str) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=10)
    c.ehlo(SERVER_NAME)  # claiming to be us never helps
    return c


# ---- unit: the resolver ------------------------------------------------------------------
def _policy(**smtp: object) -> RecipientPolicy:
    s = load_settings(smtp={"local_domains": [LOCAL], "relay_networks": ["10.0.0.0/8"], **smtp})
    return RecipientPolicy(s.smtp)


@pytest.mark.parametrize(
    ("form", "reply"),
    [
        (f"@{LOCAL}:user@{REMOTE}", f"550 5.7.1 cannot relay for {REMOTE}"),
        (f"user%{REMOTE}@{LOCAL}", "550 5.7.1 forwarding percent hack is not permitted"),
        (f"{REMOTE}!user", "550 5.7.1 UUCP bang paths are not permitted"),
        (f"{REMOTE}!user@{LOCAL}", "550 5.7.1 UUCP bang paths are not permitted"),
        (f'"user@{REMOTE}"@{LOCAL}', "550 5.7.1 quoted forward paths are not permitted"),
        (f"user@{REMOTE}", "550 5.7.1 relaying denied"),
    ],
)
def test_forward_path_resolution_texts(form: str, reply: str) -> None:
    d = _policy().decide(form, client_ip="192.0.2.9", authenticated=False)
    assert not d.accepted
    assert d.reply == reply


def test_source_route_to_local_domain_is_stripped() -> None:
    d = _policy().decide(f"@{REMOTE}:bob@{LOCAL}", client_ip="192.0.2.9", authenticated=False)
    assert d.accepted and d.local and d.deliver_to == f"bob@{LOCAL}"


def test_ip_literal_is_local_only_when_it_is_ours() -> None:
    p = _policy()
    ours = p.decide("bob@[192.0.2.1]", client_ip="198.51.100.7", authenticated=False,
                    our_ips=["192.0.2.1"])  # fmt: skip
    assert ours.accepted and ours.deliver_to == f"bob@{LOCAL}"
    other = p.decide("bob@[192.0.2.2]", client_ip="198.51.100.7", authenticated=False,
                     our_ips=["192.0.2.1"])  # fmt: skip
    assert not other.accepted and "relaying denied" in other.reply


def test_relay_network_and_allowed_recipients() -> None:
    p = _policy(relay_allowed_recipients=["*@backup.example", "~secret@backup.example"])
    assert p.decide(f"x@{REMOTE}", client_ip="10.1.2.3", authenticated=False).accepted
    assert p.decide(f"x@{REMOTE}", client_ip="::ffff:10.1.2.3", authenticated=False).accepted
    assert not p.decide(f"x@{REMOTE}", client_ip="11.1.2.3", authenticated=False).accepted
    assert p.decide("x@backup.example", client_ip="11.1.2.3", authenticated=False).accepted
    assert not p.decide("secret@backup.example", client_ip="11.1.2.3",
                        authenticated=False).accepted  # fmt: skip


def test_postmaster_always_accepted() -> None:
    p = _policy()
    d = p.decide("postmaster", client_ip="192.0.2.9", authenticated=False)
    assert d.accepted and d.deliver_to == f"postmaster@{LOCAL}"


def test_accounts_are_counted_once_per_interval_and_a_new_account_takes_effect(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No mailboxes file: with no account every local address is a mailbox; once an account
    exists (here the first, added by ``mailsift accounts add`` in another process) only the
    known ones are. Whether accounts exist is asked of the store once per refresh interval,
    not at every RCPT; an account added through the policy's own ``Accounts`` counts at once."""
    store = open_store(store_url)
    counted: list[int] = []
    count = store.accounts.count
    monkeypatch.setattr(store.accounts, "count", lambda: counted.append(1) or count())
    try:
        accounts = Accounts(store, TEST_HASHER, exist_refresh=3600)
        policy = RecipientPolicy(_policy().smtp, accounts)

        def rcpt(user: str) -> RcptDecision:
            return policy.decide(f"{user}@{LOCAL}", client_ip="192.0.2.9", authenticated=False)

        assert all(rcpt(f"user{i}").accepted for i in range(50))
        assert len(counted) == 1  # one count for 50 RCPTs
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
        env.update(MAILSIFT_PATHS__VAR_DIR=str(tmp_path / "var"), MAILSIFT_STORE__URL=store_url)
        r = _cli("accounts", "add", f"alice@{LOCAL}", "--password-stdin", stdin="pw\n", env=env)
        assert r.returncode == 0, r.stderr
        assert rcpt("alice").accepted  # the account itself at once: it is looked up
        assert rcpt("nobody").accepted and len(counted) == 1  # the others: not asked yet
        accounts.exist_refresh = 0.2
        deadline = time.monotonic() + 10
        while (d := rcpt("nobody")).accepted:  # once asked again, only the known ones
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert d.reply.startswith("550 5.1.1"), d.reply
        assert rcpt("alice").accepted
    finally:
        store.close()
    # an account added through the same Accounts counts at once
    own = open_store(f"sqlite:///{tmp_path / 'own.db'}")
    try:
        policy = RecipientPolicy(_policy().smtp, Accounts(own, TEST_HASHER, exist_refresh=3600))
        assert policy.decide(f"nobody@{LOCAL}", client_ip="192.0.2.9", authenticated=False).accepted
        assert policy.accounts is not None
        policy.accounts.add(f"bob@{LOCAL}", "pw")
        assert not policy.decide(f"nobody@{LOCAL}", client_ip="192.0.2.9",
                                 authenticated=False).accepted  # fmt: skip
        assert policy.decide(f"bob@{LOCAL}", client_ip="192.0.2.9", authenticated=False).accepted
    finally:
        own.close()


def test_path_parser_keeps_what_aiosmtpd_would_hide() -> None:
    assert split_path(f"<@a.example,@b.example:u@{REMOTE}> SIZE=10") == (
        f"@a.example,@b.example:u@{REMOTE}",
        "SIZE=10",
    )
    assert split_path('<"a>b"@x.example>') == ('"a>b"@x.example', "")
    assert split_path("<>") == ("<>", "")
    assert split_path("<unbalanced") is None
    p = parse_path(f"@a.example,@b.example:u@{REMOTE}")
    assert p.route == ("a.example", "b.example") and p.domain == REMOTE
    q = parse_path(f'"u@{REMOTE}"@{LOCAL}')
    assert q.quoted and q.unquoted_local == f"u@{REMOTE}" and q.domain == LOCAL
    for bad in ("u@@x.example", "u@x@y.example", "a..b@x.example", "u@-x.example", "x" * 300):
        with pytest.raises(PathSyntaxError):
            parse_path(bad)


# ---- integration: the battery over SMTP ---------------------------------------------------
def test_open_relay_battery_from_outside_is_refused(smtp_filter, smtp_sink) -> None:
    forms = battery(INSIDE_IP)
    assert len(forms) >= 20
    c = _client(smtp_filter.port, OUTSIDE_IP)
    try:
        for sender in SENDERS:
            code, msg = c.docmd(f"MAIL FROM:{sender}")
            assert code == 250, (sender, msg)
            for form in forms:
                code, msg = _rcpt(c, form)
                assert 500 <= code < 600, (sender, form, code, msg)
            # nothing was accepted, so DATA has no recipients
            assert c.docmd("DATA")[0] == 503
            c.rset()
    finally:
        c.quit()
    assert smtp_sink.files() == []


def test_battery_texts_over_smtp(smtp_filter) -> None:
    c = _client(smtp_filter.port, OUTSIDE_IP)
    try:
        c.docmd("MAIL FROM:<>")
        code, msg = _rcpt(c, f"@{SERVER_NAME}:relaytest@{REMOTE}")
        assert (code, msg) == (550, f"5.7.1 cannot relay for {REMOTE}".encode())
        code, msg = _rcpt(c, f"relaytest%{REMOTE}@{LOCAL}")
        assert (code, msg) == (550, b"5.7.1 forwarding percent hack is not permitted")
        code, msg = _rcpt(c, f"relaytest@{REMOTE}")
        assert (code, msg) == (550, b"5.7.1 relaying denied")
        # the local recipient is fine from outside
        assert _rcpt(c, f"bob@{LOCAL}")[0] == 250
        assert _rcpt(c, f"bob@[{INSIDE_IP}]")[0] == 250  # our own IP literal
    finally:
        c.quit()


def test_authenticated_client_relays_plain_addresses_only(smtp_filter, smtp_sink) -> None:
    c = _client(smtp_filter.port, OUTSIDE_IP)
    try:
        c.starttls(context=ssl._create_unverified_context())
        c.ehlo("client.example")
        c.login("alice@mailsift.test", "alice-pw")
        c.docmd("MAIL FROM:<alice@mailsift.test>")
        assert _rcpt(c, f"friend@{REMOTE}")[0] == 250
        refused = [f for f in battery(INSIDE_IP) if f != f"relaytest@{REMOTE}"]
        for form in refused:
            if form.endswith(f"@{REMOTE}") and not form.startswith("@"):
                continue  # ``"x%y"@remote`` etc. are the remote's business for a relay user
            code, msg = _rcpt(c, form)
            assert 500 <= code < 600, (form, code, msg)
        code, msg = c.data(b"Subject: relayed\r\n\r\nhello\r\n")
        assert code == 250, msg
    finally:
        c.quit()
    msgs = smtp_sink.wait_for(1)
    assert len(msgs) == 1 and msgs[0]["X-Rcpt-Args"] == f"<friend@{REMOTE}>"


def test_relay_network_client_relays(smtp_filter, smtp_sink) -> None:
    c = _client(smtp_filter.port, INSIDE_IP)
    try:
        c.docmd("MAIL FROM:<bob@mailsift.test>")
        assert _rcpt(c, f"friend@{REMOTE}")[0] == 250
        # hidden forward paths via us stay refused even for the relay network
        assert _rcpt(c, f"relaytest%{REMOTE}@{LOCAL}")[0] == 550
        assert _rcpt(c, f"@{LOCAL}:relaytest@{REMOTE}")[0] == 550
    finally:
        c.quit()


def test_unknown_and_disabled_users_get_550_5_1_1(smtp_filter) -> None:
    c = _client(smtp_filter.port, OUTSIDE_IP)
    try:
        c.docmd("MAIL FROM:<someone@example.org>")
        for user in ("nobody", "dave", "erin"):  # unknown, disabled, expired account
            code, msg = _rcpt(c, f"{user}@{LOCAL}")
            assert code == 550 and msg.startswith(b"5.1.1"), (user, msg)
        assert _rcpt(c, f"alice@{LOCAL}")[0] == 250  # an active account is a mailbox
        assert _rcpt(c, f"carol@{LOCAL}")[0] == 250  # from the mailboxes file
    finally:
        c.quit()


def test_sender_path_is_cleaned_never_trusted(smtp_filter, smtp_sink) -> None:
    c = _client(smtp_filter.port, OUTSIDE_IP)
    try:
        assert c.docmd("MAIL FROM:<a@@example.org>")[0] == 553
        assert c.docmd(f"MAIL FROM:<@{SERVER_NAME}:a@example.org>")[0] == 250
        assert _rcpt(c, f"bob@{LOCAL}")[0] == 250
        assert c.data(b"Subject: route\r\n\r\nx\r\n")[0] == 250
    finally:
        c.quit()
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Mail-Args"] == "<a@example.org>"  # the route is gone


def test_swaks_relay_attempts_from_outside(smtp_filter, smtp_sink) -> None:
    for to in (
        f"relaytest@{REMOTE}",
        f"relaytest%{REMOTE}@{LOCAL}",
        f"@{LOCAL}:relaytest@{REMOTE}",
    ):
        r = swaks("--server", f"127.0.0.1:{smtp_filter.port}", "--local-interface", OUTSIDE_IP,
                  "--from", f"postmaster@{LOCAL}", "--to", to, "--ehlo", SERVER_NAME)  # fmt: skip
        assert r.returncode != 0
        assert "<** 550 5.7.1" in r.stdout, r.stdout
    assert smtp_sink.files() == []
