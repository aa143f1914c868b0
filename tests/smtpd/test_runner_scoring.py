"""The check runner, the reply mapping and scoring, through the real server.

Checks here are tiny classes defined in this file (helper K's real checks have their own
end-to-end tests); scoring uses the small test model, the real HTTP API, or, to pin an exact
verdict action (REJECT, HOLD), a service that returns a fixed verdict.
"""

from __future__ import annotations

import dataclasses
import smtplib
from typing import Any, ClassVar

import pytest

from mailsift.quarantine import Quarantine
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.store import open_store
from mailsift.verdict import Action, Envelope, Symbol, Verdict
from tests.fixtures.ports import free_port
from tests.fixtures.smtp import filter_settings
from tests.smtpd.util import client, tls_client

MESSAGE = b"From: sender@example.org\r\nSubject: pipeline\r\n\r\nhello there\r\n"


def make_check(
    name: str,
    stage: Stage,
    action: CheckAction = CheckAction.ACCEPT,
    *,
    reason: str = "",
    symbols: tuple[Symbol, ...] = (),
    auth_results: tuple[str, ...] = (),
    when: Any = None,
    enhanced: str | None = None,
    details: dict[str, Any] | None = None,
    raises: bool = False,
    **attrs: Any,
) -> Any:
    """A check that answers ``action`` (when ``when(ctx)`` holds) and counts its runs."""

    class Tiny:
        runs: ClassVar[list[SmtpContext]] = []

        async def run(self, ctx: SmtpContext) -> CheckResult:
            type(self).runs.append(dataclasses.replace(ctx))  # a snapshot
            if raises:
                raise RuntimeError("boom")
            act = action if when is None or when(ctx) else CheckAction.ACCEPT
            return CheckResult(
                name,
                act,
                symbols=list(symbols),
                reason=reason,
                enhanced_code=enhanced,
                auth_results=list(auth_results),
                details=details or {},
            )

    Tiny.name = name  # type: ignore[attr-defined]
    Tiny.stage = stage  # type: ignore[attr-defined]
    for k, v in attrs.items():
        setattr(Tiny, k, v)
    return Tiny()


class FixedService:
    """Returns one verdict and remembers what it was asked."""

    def __init__(self, action: Action = Action.HAM, score: float = 1.0, fail: bool = False):
        self.action, self.score_value, self.fail = action, score, fail
        self.calls: list[tuple[bytes, Envelope, list[Symbol]]] = []

    def score(self, raw: bytes, envelope: Envelope, symbols: Any) -> Verdict:
        self.calls.append((raw, envelope, list(symbols)))
        if self.fail:
            raise ConnectionError("store down")
        return Verdict(
            verdict_id="fixed",
            probability=0.5,
            score=self.score_value,
            required_score=5.0,
            action=self.action,
            rules=[Symbol("FIXED_RULE", 0.5)],
        )


def _send(port: int, rcpts: list[str], data: bytes = MESSAGE) -> tuple[int, bytes]:
    c = client(port)
    try:
        assert c.docmd("MAIL FROM:<sender@example.org>")[0] == 250
        for r in rcpts:
            assert c.docmd(f"RCPT TO:<{r}>")[0] == 250
        return c.data(data)
    finally:
        c.quit()


def test_connect_stage_reject_is_delayed_and_spared_for_auth_users(filter_factory, smtp_sink):
    listed = make_check("dnsbl", Stage.CONNECT, CheckAction.REJECT, reason="client listed")
    srv = filter_factory(smtp_sink, checks=[listed])
    c = client(srv.port)
    try:
        assert c.ehlo_resp is not None  # EHLO answered normally
        assert c.docmd("MAIL FROM:<a@example.org>") == (550, b"5.7.1 client listed")
    finally:
        c.quit()
    c = tls_client(srv.port)  # the same client, authenticated: a user on a listed dynamic IP
    try:
        c.login("alice@mailsift.test", "alice-pw")
        assert c.sendmail("alice@mailsift.test", ["friend@remote.example"], MESSAGE) == {}
    finally:
        c.quit()
    assert len(smtp_sink.wait_for(1)) == 1
    assert len(type(listed).runs) == 2  # once per connection, not again after STARTTLS


def test_rcpt_stage_per_recipient(filter_factory, smtp_sink):
    grey = make_check("greylist", Stage.RCPT, CheckAction.TEMPFAIL, reason="greylisted",
                      when=lambda ctx: ctx.current_rcpt == "carol@mailsift.test")  # fmt: skip
    srv = filter_factory(smtp_sink, checks=[grey])
    c = client(srv.port)
    try:
        c.docmd("MAIL FROM:<a@example.org>")
        assert c.docmd("RCPT TO:<bob@mailsift.test>")[0] == 250
        assert c.docmd("RCPT TO:<carol@mailsift.test>") == (451, b"4.7.1 greylisted")
        assert c.data(MESSAGE)[0] == 250
    finally:
        c.quit()
    (m,) = smtp_sink.wait_for(1)
    assert m.get_all("X-Rcpt-Args") == ["<bob@mailsift.test>"]


def test_data_stage_reject_with_own_code(filter_factory, smtp_sink):
    av = make_check("antivirus", Stage.DATA, CheckAction.REJECT, reason="Eicar-Test FOUND",
                    details={"code": 554}, skip_whitelisted=False)  # fmt: skip
    srv = filter_factory(smtp_sink, checks=[av])
    assert _send(srv.port, ["bob@mailsift.test"]) == (554, b"5.7.1 Eicar-Test FOUND")
    assert smtp_sink.files() == []  # rejected in the dialogue; nobody gets a bounce
    assert type(av).runs[0].raw_message.endswith(b"hello there\r\n")


def test_whitelist_skips_spam_checks_and_the_verdict(filter_factory, smtp_sink):
    wl = make_check("lists", Stage.MAIL, CheckAction.WHITELIST, reason="white list")
    spam_check = make_check("content", Stage.DATA, CheckAction.REJECT, reason="spammy")
    av = make_check("antivirus", Stage.DATA, skip_whitelisted=False)
    service = FixedService(Action.REJECT)
    srv = filter_factory(smtp_sink, checks=[wl, spam_check, av], service=service)
    code, _ = _send(srv.port, ["bob@mailsift.test"])
    assert code == 250
    assert type(spam_check).runs == [] and len(type(av).runs) == 1
    assert service.calls == []
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Spam-Status"].startswith("No, score=0.0 tests=WHITELISTED")


def test_a_failing_check_is_a_tempfail(filter_factory, smtp_sink):
    broken = make_check("broken", Stage.MAIL, raises=True)
    srv = filter_factory(smtp_sink, checks=[broken])
    c = client(srv.port)
    try:
        code, msg = c.docmd("MAIL FROM:<a@example.org>")
    finally:
        c.quit()
    assert code == 451 and msg.startswith(b"4.3.0")


def test_symbols_and_auth_results_reach_scorer_and_headers(filter_factory, smtp_sink):
    spf = make_check("spf", Stage.MAIL, symbols=(Symbol("SPF_PASS", -0.5, source="check"),),
                     auth_results=("spf=pass smtp.mailfrom=example.org",))  # fmt: skip
    dkim = make_check("dkim", Stage.DATA, symbols=(Symbol("DKIM_NONE", 0.1, source="check"),),
                      auth_results=("dkim=none",))  # fmt: skip
    service = FixedService(Action.SPAM, score=6.2)
    srv = filter_factory(smtp_sink, checks=[spf, dkim], service=service)
    assert _send(srv.port, ["bob@mailsift.test", "carol@mailsift.test"])[0] == 250
    ((raw, env, symbols),) = service.calls
    assert {s.name for s in symbols} == {"SPF_PASS", "DKIM_NONE"}
    assert env.client_ip == "127.0.0.2" and env.helo == "client.example"
    assert env.mail_from == "sender@example.org"
    assert env.rcpt_to == ("bob@mailsift.test", "carol@mailsift.test")
    assert raw.startswith(b"From: sender@example.org")  # scored before our headers
    (m,) = smtp_sink.wait_for(1)
    assert " ".join(m["Authentication-Results"].split()) == (
        "mx.mailsift.test; spf=pass smtp.mailfrom=example.org; dkim=none"
    )
    assert m["X-Spam-Flag"] == "YES" and m["X-Spam-Score"] == "6.2"
    assert "tests=DKIM_NONE,FIXED_RULE,SPF_PASS" in m["X-Spam-Status"]


def test_verdict_reject(filter_factory, smtp_sink):
    srv = filter_factory(smtp_sink, service=FixedService(Action.REJECT, 12.0))
    code, msg = _send(srv.port, ["bob@mailsift.test"])
    assert code == 550 and msg.startswith(b"5.7.1 Message rejected as spam")
    assert smtp_sink.files() == []


def test_hold_goes_to_the_quarantine_before_250(filter_factory, smtp_sink, tmp_path):
    var = tmp_path / "qvar"
    store = open_store(f"sqlite:///{tmp_path / 'q.db'}")
    quarantine = Quarantine(filter_settings(var, smtp_sink, None, None), store)
    srv = filter_factory(smtp_sink, service=FixedService(Action.HOLD, 8.0),
                         quarantine=quarantine, var_dir=var)  # fmt: skip
    code, msg = _send(srv.port, ["bob@mailsift.test"])
    assert code == 250 and b"held in quarantine as " in msg
    qid = msg.decode().rsplit(" ", 1)[1]
    entry = quarantine.get(qid)
    assert entry.recipients == ["bob@mailsift.test"] and entry.sender == "sender@example.org"
    assert smtp_sink.files() == []
    store.close()


class BrokenQuarantine:
    def hold(self, raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
        raise OSError("disk full")


@pytest.mark.parametrize(
    ("service", "quarantine", "code"),
    [(FixedService(fail=True), None, 451), (FixedService(Action.HOLD), BrokenQuarantine(), 451)],
    ids=["scorer-down", "quarantine-down"],
)
def test_infrastructure_failures_are_tempfails(filter_factory, smtp_sink, service, quarantine,
                                               code):  # fmt: skip
    srv = filter_factory(smtp_sink, service=service, quarantine=quarantine)
    got, msg = _send(srv.port, ["bob@mailsift.test"])
    assert got == code and msg.startswith(b"4.3.0")
    assert smtp_sink.files() == []


def test_http_scorer_down_is_a_tempfail(filter_factory, smtp_sink, test_settings):
    base = test_settings.model_copy(
        update={"api": test_settings.api.model_copy(
            update={"scorer_url": f"http://127.0.0.1:{free_port()}", "scorer_api_key": "k"})}
    )  # fmt: skip
    srv = filter_factory(smtp_sink, base=base)
    got, msg = _send(srv.port, ["bob@mailsift.test"])
    assert got == 451 and b"4.3.0" in msg


def test_scoring_with_the_small_model(filter_factory, smtp_sink, scoring_service, corpus_messages,
                                      small_split):  # fmt: skip
    """Held-out corpus messages through the filter: headers agree with the scorer."""
    _, raws, y = corpus_messages
    _, held_out = small_split
    ham = next(i for i in held_out if y[i] == 0)
    spam = next(i for i in held_out if y[i] == 1)
    srv = filter_factory(smtp_sink, service=scoring_service)
    expected = []
    for i in (ham, spam):
        direct = scoring_service.score(raws[i], Envelope(client_ip="127.0.0.2"))
        c = client(srv.port)
        try:
            c.sendmail("sender@example.org", ["bob@mailsift.test"], raws[i])
        except smtplib.SMTPDataError as exc:
            assert direct.action is Action.REJECT and exc.smtp_code == 550
            continue
        finally:
            c.quit()
        expected.append(direct)
    msgs = smtp_sink.wait_for(len(expected))
    statuses = sorted(m["X-Spam-Status"].split(",")[0] for m in msgs)
    want = sorted("No" if d.action is Action.HAM else "Yes" for d in expected)
    assert statuses == want
    for m in msgs:
        assert m.get_all("X-Spam-Status") and len(m.get_all("X-Spam-Status")) == 1
        assert (m["X-Spam-Flag"] == "YES") == m["X-Spam-Status"].startswith("Yes")


def test_scoring_over_http(filter_factory, smtp_sink, api_server, test_settings):
    base = test_settings.model_copy(
        update={"api": test_settings.api.model_copy(
            update={"scorer_url": api_server.base_url, "scorer_api_key": api_server.keys["score"]})}
    )  # fmt: skip
    srv = filter_factory(smtp_sink, base=base)
    assert _send(srv.port, ["bob@mailsift.test"])[0] == 250
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Spam-Status"].split(",")[0] in ("Yes", "No")
    assert "version=mailsift-" in m["X-Spam-Status"]
