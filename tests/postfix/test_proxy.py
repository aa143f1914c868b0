"""Postfix's before-queue proxy (``smtpd_proxy_filter``) through ``mailsift serve smtp`` and
back into a re-injection smtpd, configured from docs/integrations.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailsift.smtpd.server import FilterServer
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import Postfix, doc_block, render, start_postfix
from tests.fixtures.smtp import Sink
from tests.postfix.common import (
    antivirus,
    eicar_mail,
    gtube,
    headers_of,
    mailsift_settings,
    pick_ham,
    send,
    tagged,
    wait_tags,
)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    test_settings: Any,
    scoring_service: Any,
    clamd_server: Any,
    corpus_messages: Any,
    small_split: Any,
) -> Iterator[tuple[Postfix, Sink, Any]]:
    tmp = tmp_path_factory.mktemp("postfix-proxy")
    ports = {"10024": free_port(), "10025": free_port()}
    settings = mailsift_settings(test_settings, tmp / "var", "postfix-proxy mailsift.toml", ports)
    checks = [antivirus(clamd_server)]

    def start_filter() -> FilterServer:
        return FilterServer(settings, scoring_service, checks=checks).start()

    sink = Sink(dir=tmp / "sink", port=free_port()).start()
    state = {
        "ham": pick_ham(scoring_service, corpus_messages, small_split),
        "filter": start_filter(),
        "start": start_filter,
    }
    master = render(doc_block("postfix-proxy master.cf"), ports)
    pf = start_postfix("", master, sink.port)
    try:
        yield pf, sink, state
    finally:
        pf.stop()
        state["filter"].stop()
        sink.stop()
        pf.remove()


def test_ham_gtube_eicar_through_postfix(setup: tuple[Postfix, Sink, Any]) -> None:
    pf, sink, state = setup
    assert send(pf.port, tagged(state["ham"], "1")) == (250, "ok")
    code, text = send(pf.port, gtube())
    assert code == 550 and "5.7.1 Message rejected as spam" in text
    code, text = send(pf.port, eicar_mail())
    assert code == 554 and "Eicar-Test" in text
    (msg,) = wait_tags(sink, ["1"])
    assert msg["X-Test-Tag"] == "1"
    status = headers_of(msg, "X-Spam-Status")
    assert len(status) == 1 and status[0].startswith("No, score=")
    assert any(v.startswith("mx.mailsift.test;") for v in headers_of(msg, "Authentication-Results"))
    # Postfix's public smtpd, mailsift and the re-injection smtpd each left a Received
    received = headers_of(msg, "Received")
    assert any("(mailsift)" in r for r in received) and len(received) >= 3
    pf.wait_queue_empty()


def test_filter_down_is_a_tempfail_and_nothing_is_lost(
    setup: tuple[Postfix, Sink, Any],
) -> None:
    pf, sink, state = setup
    state["filter"].stop()
    code, _ = send(pf.port, tagged(state["ham"], "2"))
    assert 400 <= code < 500
    state["filter"] = state["start"]()
    assert send(pf.port, tagged(state["ham"], "3")) == (250, "ok")
    wait_tags(sink, ["1", "3"])
    pf.wait_queue_empty()
