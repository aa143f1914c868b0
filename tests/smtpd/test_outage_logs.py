"""Outages are not silent: the SMTP filter logs and counts a dependency going down and back,
and every temporary failure it answers, by reason.

Real clamd and the machine's Redis, each reached through a killable proxy (tests.fixtures.
proxy) so that the test can take them away and bring them back without touching the
servers themselves; DNS through a server that never answers. (PostgreSQL down is in
tests/store/test_outage.py.)
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from mailsift import outages
from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.dns import SessionDns, make_resolver
from mailsift.store.greylist import RedisGreylistStore
from mailsift.store.lists import StoreListPolicy
from tests.checks.helpers import make_settings
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.smtp import INSIDE_IP, OUTSIDE_IP

REDIS_PORT = 6379


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _message(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = "alice@loop.test"
    m["To"] = "bob@mailsift.test"
    m["Subject"] = subject
    m["Message-ID"] = f"<{uuid.uuid4().hex}@loop.test>"
    m.set_content("Hello Bob, see you at noon.\n")
    return m.as_bytes()


def _send(port: int, source: str, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("outside.loop.test")
        code, msg = c.mail("alice@loop.test")
        if code != 250:
            return code, msg
        code, msg = c.rcpt("bob@mailsift.test")
        if code != 250:
            return code, msg
        return c.data(_message(subject))


@pytest.fixture
def proxies(clamd_server: Any) -> Iterator[dict[str, TcpProxy]]:
    made = {"clamd": TcpProxy(clamd_server.tcp_port).start(), "redis": TcpProxy(REDIS_PORT).start()}
    yield made
    for p in made.values():
        p.kill()


@pytest.fixture
def outage_filter(
    filter_factory: Any,
    smtp_sink: Any,
    dns_settings: Any,
    sqlite_store: Any,
    proxies: dict[str, TcpProxy],
    tmp_path: Path,
) -> Any:
    """A filter with clamd and a Redis greylist store, each behind its proxy."""
    settings = make_settings(
        dns_settings,
        tmp_path,
        antivirus={"clamd_socket": f"tcp://127.0.0.1:{proxies['clamd'].port}"},
        greylist={"enabled": True, "delay": 300.0},
        dnsbl={"enabled": False},
        rdns={"enabled": False},
        auth={"spf": False, "dkim": False, "arc": False, "dmarc": False},
    )
    prefix = f"mailsift:test:{uuid.uuid4().hex}:"
    greylist = RedisGreylistStore(
        f"redis://127.0.0.1:{proxies['redis'].port}/0", prefix=prefix, timeout=2.0
    )
    checks = build_checks(
        settings,
        resolver=make_resolver(settings.dns),
        lists=StoreListPolicy(sqlite_store, ttl=0.0),
        greylist_store=greylist,
    )
    return filter_factory(smtp_sink, checks=checks, base=settings, metrics_port=0)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_clamd_down_and_back_is_logged_and_counted(
    outage_filter: Any, proxies: dict[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    outages.reset()
    caplog.set_level(logging.INFO)
    port = outage_filter.port
    # from the relay network: no greylisting, but the antivirus scan still runs
    assert _send(port, INSIDE_IP, "scanned")[0] == 250
    outages_before = _metric("mailsift_dependency_outages_total", dependency="clamd")
    errors_before = _metric("mailsift_dependency_errors_total", dependency="clamd")
    tempfails_before = _metric(
        "mailsift_tempfails_total", service="smtp", reason="antivirus_temperror"
    )

    proxies["clamd"].kill()
    for i in range(3):
        code, msg = _send(port, INSIDE_IP, f"unscanned {i}")
        assert code == 451 and msg.startswith(b"4.7.1"), (code, msg)
    assert _metric("mailsift_dependency_outages_total", dependency="clamd") == outages_before + 1
    assert _metric("mailsift_dependency_errors_total", dependency="clamd") == errors_before + 3
    assert (
        _metric("mailsift_tempfails_total", service="smtp", reason="antivirus_temperror")
        == tempfails_before + 3
    )
    warnings = _warnings(caplog)
    assert sum("dependency clamd is down" in m for m in warnings) == 1, warnings
    assert any("smtp answered a temporary failure (antivirus_temperror)" in m for m in warnings), (
        warnings
    )

    proxies["clamd"].restore()
    assert _send(port, INSIDE_IP, "scanned again")[0] == 250
    assert any("dependency clamd is back" in m for m in _warnings(caplog))
    # the filter serves its counters to Prometheus (smtp.metrics_port)
    text = httpx.get(f"http://127.0.0.1:{outage_filter.metrics_port}/metrics", timeout=10).text
    assert 'mailsift_dependency_outages_total{dependency="clamd"}' in text
    assert 'mailsift_tempfails_total{reason="antivirus_temperror",service="smtp"}' in text


def test_redis_down_and_back_is_logged_and_counted(
    outage_filter: Any, proxies: dict[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    outages.reset()
    caplog.set_level(logging.INFO)
    port = outage_filter.port
    # an outside client is greylisted: a policy tempfail, counted and logged at INFO only
    greylisted_before = _metric("mailsift_tempfails_total", service="smtp", reason="greylist")
    code, msg = _send(port, OUTSIDE_IP, "first try")
    assert code == 451, (code, msg)
    assert (
        _metric("mailsift_tempfails_total", service="smtp", reason="greylist")
        == greylisted_before + 1
    )
    assert not any("temporary failure (greylist)" in m for m in _warnings(caplog))
    assert any("temporary failure (greylist)" in r.getMessage() for r in caplog.records)

    outages_before = _metric("mailsift_dependency_outages_total", dependency="redis")
    proxies["redis"].kill()
    code, msg = _send(port, OUTSIDE_IP, "redis away")
    assert code == 451, (code, msg)
    assert _metric("mailsift_dependency_outages_total", dependency="redis") == outages_before + 1
    warnings = _warnings(caplog)
    assert any("dependency redis is down" in m for m in warnings), warnings
    assert any("smtp answered a temporary failure (greylist_temperror)" in m for m in warnings)

    proxies["redis"].restore()
    assert _send(port, OUTSIDE_IP, "redis back")[0] == 451  # greylisted again, not an error
    assert any("dependency redis is back" in m for m in _warnings(caplog))


def test_dns_down_and_back_is_logged_and_counted(
    blackhole_dns: Any, unbound_dns: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The resolver's health is judged query by query: a timeout is an outage, any answer
    (NXDOMAIN included) ends it."""

    def lookup(settings: Any, name: str) -> Any:
        # on a loop of its own, in a thread: the test runs whatever loop the thread has
        session = SessionDns(make_resolver(settings), timeout=settings.timeout, budget=5.0)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, session.lookup(name, "A")).result(30)

    outages.reset()
    caplog.set_level(logging.INFO)
    before = _metric("mailsift_dependency_outages_total", dependency="dns")
    assert lookup(blackhole_dns.settings(timeout=0.3), "outside.loop.test").failed
    assert _metric("mailsift_dependency_outages_total", dependency="dns") == before + 1
    assert any("dependency dns is down" in m for m in _warnings(caplog))
    assert not lookup(unbound_dns.settings(timeout=2.0), "no-such-name.loop.test").failed
    assert any("dependency dns is back" in m for m in _warnings(caplog))
