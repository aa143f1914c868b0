"""Adding a check takes one module: tests/checks/example_check.py, unknown to mailsift until
the configuration names it (``[checks] modules``), enabled by ``[checks] order``, set up by
its own block and scored by ``[scores]``, then run in a real SMTP session of the filter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsift.config import DEFAULT_CHECK_ORDER
from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.base import Stage
from mailsift.smtpd.checks.registry import BLOCKS, CHECKS
from mailsift.smtpd.checks.scores import SCORES
from mailsift.store.lists import StoreListPolicy
from tests.checks.helpers import make_settings
from tests.smtpd.test_runner_scoring import FixedService
from tests.smtpd.util import client

MODULE = "tests.checks.example_check"
CONFIG = f"""
[checks]
modules = ["{MODULE}"]
order = [{", ".join(f'"{n}"' for n in (*DEFAULT_CHECK_ORDER, "sender_domains"))}]

[sender_domains]
deny = ["spam.example"]

[scores]
SENDER_DOMAIN_DENIED = 6.5
"""


@pytest.fixture
def example_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The configuration file naming the example module; the module and its registration
    are gone again afterwards (other tests' settings must not carry its block)."""
    assert MODULE not in sys.modules and "sender_domains" not in CHECKS
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("MAILSIFT_CONFIG", str(cfg))
    yield cfg
    CHECKS.pop("sender_domains", None)
    BLOCKS.pop("sender_domains", None)
    SCORES.pop("SENDER_DOMAIN_DENIED", None)
    sys.modules.pop(MODULE, None)


def session(port: int, sender: str) -> list[tuple[int, bytes]]:
    c = client(port)
    try:
        out = [c.docmd(f"MAIL FROM:<{sender}>")]
        if out[-1][0] == 250:
            out.append(c.docmd("RCPT TO:<bob@mailsift.test>"))
            out.append(c.data(b"From: <" + sender.encode() + b">\r\nSubject: hi\r\n\r\nhello\r\n"))
        return out
    finally:
        c.quit()


def the_filter(filter_factory, smtp_sink, dns_settings, sqlite_store, tmp_path, service, **blocks):  # type: ignore[no-untyped-def]
    off: dict[str, Any] = {
        "greylist": {"enabled": False},
        "antivirus": {"enabled": False},
        "rdns": {"enabled": False},
        **blocks,
    }
    settings = make_settings(dns_settings, tmp_path, **off)
    checks = build_checks(settings, lists=StoreListPolicy(sqlite_store, ttl=0.0))
    assert [c.name for c in checks if c.stage is Stage.MAIL] == [
        "lists_sender",
        "spf",
        "sender_domains",
    ]
    return filter_factory(smtp_sink, checks=checks, service=service, base=settings)


def test_a_new_check_runs_in_the_smtp_session(  # type: ignore[no-untyped-def]
    example_config, filter_factory, smtp_sink, dns_settings, sqlite_store, tmp_path
) -> None:
    service = FixedService()
    srv = the_filter(filter_factory, smtp_sink, dns_settings, sqlite_store, tmp_path, service)
    assert session(srv.port, "alice@mail.spam.example")[-1][0] == 250
    assert session(srv.port, "alice@loop.test")[-1][0] == 250
    denied, clean = [symbols for _raw, _env, symbols in service.calls]
    (hit,) = [s for s in denied if s.name == "SENDER_DOMAIN_DENIED"]
    assert hit.score == 6.5 and hit.source == "check"  # [scores] over the module's 4.0
    assert hit.description == "mail.spam.example (deny list: spam.example)"
    assert "SENDER_DOMAIN_DENIED" not in {s.name for s in clean}
    assert len(smtp_sink.wait_for(2)) == 2


def test_its_settings_block_and_variables(  # type: ignore[no-untyped-def]
    example_config, filter_factory, smtp_sink, dns_settings, sqlite_store, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MAILSIFT_SENDER_DOMAINS__REJECT", "true")
    service = FixedService()
    srv = the_filter(filter_factory, smtp_sink, dns_settings, sqlite_store, tmp_path, service)
    (refused,) = session(srv.port, "bob@spam.example")
    assert refused == (550, b"5.7.1 Sender domain spam.example refused by local policy")
    assert session(srv.port, "alice@loop.test")[-1][0] == 250
    assert len(service.calls) == 1
