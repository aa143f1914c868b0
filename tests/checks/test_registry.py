"""The registry of checks: order and enablement from ``[checks]``, scores from the table with
``[scores]`` overrides, the check blocks read from TOML tables and environment variables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from mailsift.config import DEFAULT_CHECK_ORDER, RdnsSettings, Settings, load_settings
from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.base import Stage
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.smtpd.checks.registry import CHECKS, load_registry
from mailsift.smtpd.checks.scores import SCORES
from mailsift.smtpd.runner import CheckRunner
from tests.checks.helpers import ctx, make_settings


def test_every_builtin_check_is_registered_in_the_default_order() -> None:
    specs = load_registry()
    assert set(DEFAULT_CHECK_ORDER) <= set(specs)
    for name in DEFAULT_CHECK_ORDER:
        spec = specs[name]
        assert spec.cls.name == name and spec.stage == spec.cls.stage
        assert spec.symbols and all(s in SCORES for s in spec.symbols)
    assert specs["greylist"].skip_flags == {
        "skip_authenticated": True,
        "skip_relay_clients": True,
        "skip_whitelisted": True,
    }
    assert specs["antivirus"].skip_flags["skip_whitelisted"] is False


def test_default_scores_are_the_table() -> None:
    # the former [rdns] score keys had these defaults: the table keeps them
    assert SCORES["RDNS_NONE"][0] == 1.0 and SCORES["RDNS_NOT_FCRDNS"][0] == 1.0
    assert {SCORES[s][0] for s in ("HELO_MISSING", "HELO_BAD_SYNTAX", "HELO_BARE_IP")} == {1.5}
    assert load_settings().scores.overrides() == {}


async def test_scores_override_by_symbol_name(dns_settings, sqlite_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        dns_settings, tmp_path, scores={"RDNS_NONE": 2.0}, checks={"order": ["rdns"]}
    )
    (rdns,) = build_checks(settings, store=sqlite_store)
    runner = CheckRunner([rdns])
    c = ctx("192.0.2.30")  # no PTR in the test zones
    out = await runner.run(Stage.CONNECT, c)
    assert [(s.name, s.score) for s in out.results[0].symbols] == [("RDNS_NONE", 2.0)]
    # without the override: the table's score
    (plain,) = build_checks(make_settings(dns_settings, tmp_path, checks={"order": ["rdns"]}))
    out = await CheckRunner([plain]).run(Stage.CONNECT, ctx("192.0.2.30"))
    assert [(s.name, s.score) for s in out.results[0].symbols] == [("RDNS_NONE", 1.0)]


def test_former_rdns_score_keys_set_the_scores() -> None:
    s = load_settings(rdns={"score_no_ptr": 3.0, "score_bad_helo": 2.0, "reject_no_ptr": True})
    assert s.rdns == RdnsSettings(reject_no_ptr=True)
    assert s.scores.overrides() == {
        "RDNS_NONE": 3.0,
        "HELO_MISSING": 2.0,
        "HELO_BAD_SYNTAX": 2.0,
        "HELO_BARE_IP": 2.0,
    }
    # an explicit [scores] entry wins over the former key
    both = load_settings(rdns={"score_no_ptr": 3.0}, scores={"RDNS_NONE": 0.5})
    assert both.scores.overrides() == {"RDNS_NONE": 0.5}


def test_unknown_symbols_and_checks_are_config_errors() -> None:
    with pytest.raises(ValidationError, match=r"scores: unknown symbols \['NO_SUCH_SYMBOL'\]"):
        load_settings(scores={"NO_SUCH_SYMBOL": 1.0})
    with pytest.raises(ValidationError, match="a number is needed"):
        load_settings(scores={"RDNS_NONE": "lots"})
    with pytest.raises(ValidationError, match=r"checks.order: unknown checks \['nope'\]"):
        load_settings(checks={"order": ["lists_client", "nope"]})


def test_order_and_enablement_come_from_config(dns_settings, sqlite_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = ["greylist", "lists_recipient", "spf", "lists_sender", "lists_client"]
    settings = make_settings(dns_settings, tmp_path, checks={"order": order})
    names = [c.name for c in build_checks(settings, resolver=make_resolver(settings.dns),
                                          store=sqlite_store)]  # fmt: skip
    # by stage, and within a stage in the configured order
    assert names == ["lists_client", "spf", "lists_sender", "greylist", "lists_recipient"]
    # a listed check its own block disables does not run
    off = make_settings(
        dns_settings, tmp_path, checks={"order": order}, greylist={"enabled": False}
    )
    assert "greylist" not in [c.name for c in build_checks(off, store=sqlite_store)]


def test_check_blocks_from_toml_and_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(
        '[dnsbl]\nreject_threshold = 6.0\n[[dnsbl.zones]]\nzone = "zen.example"\n'
        "[rdns]\nreject_no_ptr = true\n"
        '[checks]\norder = ["lists_client", "dnsbl"]\n'
        "[scores]\nRDNS_NONE = 2.0\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MAILSIFT_CONFIG", str(cfg))
    monkeypatch.setenv("MAILSIFT_RDNS__REJECT_NO_PTR", "false")
    monkeypatch.setenv("MAILSIFT_GREYLIST__DELAY", "60")
    monkeypatch.setenv("MAILSIFT_AUTH", '{"spf": false}')
    s = load_settings()
    assert s.dnsbl.reject_threshold == 6.0 and [z.zone for z in s.dnsbl.zones] == ["zen.example"]
    assert s.rdns.reject_no_ptr is False  # the variable beats the file
    assert s.greylist.delay == 60.0 and s.auth.spf is False and s.auth.dkim is True
    assert s.checks.order == ["lists_client", "dnsbl"]
    assert s.scores.overrides() == {"RDNS_NONE": 2.0}
    assert set(CHECKS) >= set(s.checks.order)


def test_reading_the_settings_leaves_the_check_modules_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the built-in blocks are known without importing DNS, the store and every check module
    code = (
        "import sys; from mailsift.config import load_settings; "
        "s = load_settings(dnsbl={'enabled': False}, scores={'RDNS_NONE': 2.0}); "
        "assert s.dnsbl.enabled is False; "
        "print(sorted(m for m in sys.modules if m.startswith('mailsift.smtpd.checks.')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.split() == [
        "['mailsift.smtpd.checks.base',",
        "'mailsift.smtpd.checks.registry',",
        "'mailsift.smtpd.checks.scores']",
    ]


def test_a_dump_keeps_the_check_blocks_at_the_top() -> None:
    s = load_settings(greylist={"delay": 3.0}, scores={"RDNS_NONE": 2.0})
    data = s.model_dump()
    assert "check_blocks" not in data and data["greylist"]["delay"] == 3.0
    data["auth"]["spf"] = False  # as tests and benches edit a dump
    again = Settings(**data)
    assert again.greylist.delay == 3.0 and again.auth.spf is False
    assert again.scores.overrides() == {"RDNS_NONE": 2.0}
    assert again.check_blocks == Settings(**again.model_dump()).check_blocks
