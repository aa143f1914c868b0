"""Golden tests: envelope + message in, symbols and action out (tests/checks/golden/cases.json).

Each case runs every check from ``build_checks`` stage by stage through the SMTP filter's
``CheckRunner`` (as the server does), against unbound (data/zones/), clamd and the store.
"""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.base import CheckAction, SmtpContext, Stage
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.smtpd.runner import CheckRunner
from mailsift.store.greylist import SqliteGreylistStore
from mailsift.store.lists import StoreListPolicy
from tests.checks.helpers import make_settings
from tests.fixtures.clamd import eicar
from tests.fixtures.dns import DkimKey

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]


def load_message(case: dict[str, Any], dkim_key: DkimKey) -> bytes:
    raw = (GOLDEN / case["message"]).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if case.get("attach_eicar"):
        msg = message_from_bytes(raw, policy=policy.SMTP)
        assert isinstance(msg, EmailMessage)
        msg.make_mixed()
        msg.add_attachment(eicar(), maintype="application", subtype="octet-stream",
                           filename="invoice.com")  # fmt: skip
        raw = msg.as_bytes()
    if case.get("sign_dkim"):
        raw = dkim_key.sign(raw)
    return raw


async def run_session(runner: CheckRunner, ctx: SmtpContext, rcpts: list[str], raw: bytes):  # type: ignore[no-untyped-def]
    """The stages as the filter runs them; (stopped stage or None, action, reply)."""
    for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
        out = await runner.run(stage, ctx)
        if out.action is not CheckAction.ACCEPT:
            return stage.name, out.action, out.reply
    for rcpt in rcpts:
        ctx.current_rcpt = rcpt
        out = await runner.run(Stage.RCPT, ctx)
        if out.action is not CheckAction.ACCEPT:
            return "RCPT", out.action, out.reply
        ctx.rcpt_to.append(rcpt)
    ctx.current_rcpt = None
    ctx.raw_message = raw
    out = await runner.run(Stage.DATA, ctx)
    if out.action is not CheckAction.ACCEPT:
        return "DATA", out.action, out.reply
    return None, CheckAction.WHITELIST if ctx.whitelisted else CheckAction.ACCEPT, None


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_golden(case, dns_settings, clamd_server, sqlite_store, dkim_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocks = {
        "antivirus": {"clamd_socket": clamd_server.unix_address},
        "greylist": {"enabled": False},
    }
    for k, v in case.get("settings", {}).items():
        blocks[k] = {**blocks.get(k, {}), **v}
    settings = make_settings(dns_settings, tmp_path, **blocks)
    lists = StoreListPolicy(sqlite_store, ttl=0.0)
    for kind, pattern, owner in case.get("lists", []):
        lists.add(kind, pattern, owner=owner)
    checks = build_checks(
        settings,
        resolver=make_resolver(settings.dns),
        lists=lists,
        greylist_store=SqliteGreylistStore(tmp_path / "greylist.db"),
    )
    env = case["envelope"]
    ctx = SmtpContext(
        client_ip=env["client_ip"],
        helo=env.get("helo"),
        mail_from=env.get("mail_from"),
        auth_user=env.get("auth_user"),
    )
    stage, action, reply = await run_session(
        CheckRunner(checks, timeout=60), ctx, env["rcpt_to"], load_message(case, dkim_key)
    )
    symbols = [s.name for r in ctx.results.values() for s in r.symbols]
    exp = case["expect"]
    assert sorted(symbols) == sorted(exp["symbols"])
    assert (stage, action.value) == (exp["stage"], exp["action"])
    if "reply" in exp:
        assert reply == exp["reply"]
    if "reply_prefix" in exp:
        assert reply is not None and reply.startswith(exp["reply_prefix"])
