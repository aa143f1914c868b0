"""The feedback, lists and retrain commands, run through Typer against a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mailsift.commands import feedback as feedback_cmds
from mailsift.commands import lists as lists_cmds
from mailsift.config import get_settings
from mailsift.store import VerdictRecord, open_store


@pytest.fixture
def cli(sqlite_store_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAILSIFT_STORE__URL", sqlite_store_url)
    get_settings.cache_clear()
    app = typer.Typer()
    feedback_cmds.register(app)
    lists_cmds.register(app)
    runner = CliRunner()
    yield lambda *args, **kw: runner.invoke(app, list(args), **kw)
    get_settings.cache_clear()


def test_lists_commands(cli, sqlite_store_url: str) -> None:
    r = cli("lists", "add", "--user", "Alice@x.test", "*@friends.test")
    assert r.exit_code == 0, r.output
    assert "added: trusted *@friends.test for alice@x.test" in r.output.lower()
    assert cli("lists", "add", "--kind", "block", "198.51.100.0/24").exit_code == 0
    again = cli("lists", "add", "--kind", "block", "198.51.100.0/24")
    assert again.exit_code == 0 and "already there" in again.output
    shown = json.loads(cli("lists", "show", "--json").output)
    assert {(e["kind"], e["pattern"], e["owner"]) for e in shown} == {
        ("trusted", "*@friends.test", "alice@x.test"),
        ("block", "198.51.100.0/24", ""),
    }
    text = cli("lists", "show", "--kind", "block").output
    assert "198.51.100.0/24" in text and "friends" not in text
    bad = cli("lists", "add", "--kind", "block", "not a pattern")
    assert bad.exit_code == 2 and "bad list pattern" in bad.output
    assert cli("lists", "add", "x@y.test").exit_code != 0  # global list needs --kind
    assert cli("lists", "remove", "--kind", "block", "198.51.100.0/24").exit_code == 0
    assert cli("lists", "remove", "--kind", "block", "198.51.100.0/24").exit_code == 1
    store = open_store(sqlite_store_url)
    try:
        actions = [(e.actor, e.action) for e in store.audit.recent()]
        assert ("admin", "lists.remove") in actions and ("admin", "lists.add") in actions
    finally:
        store.close()


def test_feedback_command(cli, sqlite_store_url: str, tmp_path: Path) -> None:
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@b.test\r\nSubject: cheap pills\r\n\r\nbuy now\r\n")
    r = cli("feedback", "spam", str(msg), "--user", "alice@x.test", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["status"] == "learned" and res["learned"] and res["user"] == "alice@x.test"
    dup = cli("feedback", "spam", str(msg), "--user", "bob@x.test")
    assert dup.exit_code == 0 and dup.output.startswith("duplicate")
    # by verdict id: the kept sample is what is learned
    store = open_store(sqlite_store_url)
    try:
        raw = b"Subject: hello\r\n\r\nmeeting at noon\r\n"
        store.verdicts.add(VerdictRecord("v42", "ab" * 32, 9.0, 0.97, "hold"), sample=raw)
    finally:
        store.close()
    r = cli("feedback", "ham", "--verdict", "v42", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["status"] == "learned" and res["digest"] == "ab" * 32 and res["verdict_id"] == "v42"
    assert cli("feedback", "ham", "--verdict", "nope").exit_code == 2
    assert cli("feedback", "maybe", str(msg)).exit_code == 2
    assert cli("feedback", "spam").exit_code != 0  # neither FILE nor --verdict
    store = open_store(sqlite_store_url)
    try:
        assert store.feedback.last_event_id() == 2
        assert sorted(lb for _, lb, _ in store.feedback.training_set()) == ["ham", "spam"]
    finally:
        store.close()
