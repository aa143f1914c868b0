"""``mailsift quarantine ...`` as a user runs it: a subprocess with the settings in its
environment, over the same store and spool as the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailsift.config import Settings
from mailsift.quarantine import Quarantine
from mailsift.store import open_store
from tests.quarantine.conftest import NextHop, envelope, hold_sample, sample_message, sample_verdict

MAILSIFT = str(Path(sys.executable).with_name("mailsift"))


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that rebuilds ``settings`` in a child process (one JSON per block)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    for name in type(settings).model_fields:
        block = getattr(settings, name)
        env[f"MAILSIFT_{name.upper()}"] = json.dumps(block.model_dump(mode="json"))
    return env


def run(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILSIFT, "quarantine", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def test_cli_list_show_release_delete_purge(qsettings: Settings, next_hop: NextHop) -> None:
    qsettings.paths.var_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(qsettings.store_url)
    try:
        q = Quarantine(qsettings, store)
        a = hold_sample(q, "CLI one", "s@x.example", "alice@mailsift.test", score=7.0)
        b = hold_sample(q, "CLI two", "s@x.example", "bob@mailsift.test", score=11.0)
        rows = [json.loads(x) for x in run(qsettings, "list", "--json").stdout.splitlines()]
        assert {r["id"] for r in rows} == {a, b}
        out = run(qsettings, "list", "--user", "alice@mailsift.test").stdout
        assert a in out and b not in out
        shown = run(qsettings, "show", a).stdout
        assert "CLI one" in shown and "MEDS_PITCH" in shown and "Buy now!" in shown
        raw = subprocess.run(
            [MAILSIFT, "quarantine", "show", a, "--raw"],
            env=settings_env(qsettings),
            capture_output=True,
            check=True,
        )
        assert raw.stdout == q.raw(a)
        r = run(qsettings, "release", a, "--actor", "ops@mailsift.test")
        assert f"{a}  ok  released" in r.stdout
        assert len(next_hop.messages) == 1
        r = run(qsettings, "release", a)
        assert "already released" in r.stdout and len(next_hop.messages) == 1
        r = run(qsettings, "delete", b, "0" * 32, check=False)
        assert r.returncode == 1 and f"{b}  ok  deleted" in r.stdout and "FAILED" in r.stdout
        assert q.get(b).status == "deleted"
        bad = run(qsettings, "show", "../../etc/passwd", check=False)
        assert bad.returncode == 1 and "no quarantined message" in bad.stderr
        c = q.hold(sample_message("CLI stuck"), envelope(), sample_verdict())
        assert q.repo.transition(c, ("held",), "releasing")  # as after a crash mid-release
        assert "release in progress" in run(qsettings, "release", c).stdout
        assert len(next_hop.messages) == 1
        assert f"{c}  ok  released" in run(qsettings, "release", "--force", c).stdout
        assert len(next_hop.messages) == 2
        assert run(qsettings, "purge").stdout.strip() == "purged 0"
        acts = [(e.actor, e.action) for e in store.audit.recent()]
        assert ("ops@mailsift.test", "quarantine.release") in acts
    finally:
        store.close()
