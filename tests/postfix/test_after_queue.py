"""Postfix's after-queue content filter (``content_filter``) through ``mailsift serve smtp``
with ``smtp.after_queue`` and back into a re-injection smtpd, configured from docs/integrations.md."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailsift.quarantine import Quarantine
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
    tmp = tmp_path_factory.mktemp("postfix-after-queue")
    ports = {"10024": free_port(), "10025": free_port()}
    block = "postfix-after-queue mailsift.toml"
    settings = mailsift_settings(test_settings, tmp / "var", block, ports)
    assert settings.smtp.after_queue
    checks = [antivirus(clamd_server)]
    quarantine = Quarantine(settings, scoring_service.store, service=scoring_service)

    def start_filter() -> FilterServer:
        return FilterServer(settings, scoring_service, checks=checks, quarantine=quarantine).start()

    sink = Sink(dir=tmp / "sink", port=free_port()).start()
    state = {
        "ham": pick_ham(scoring_service, corpus_messages, small_split),
        "filter": start_filter(),
        "start": start_filter,
        "quarantine": quarantine,
    }
    main = render(doc_block("postfix-after-queue main.cf"), ports)
    master = render(doc_block("postfix-after-queue master.cf"), ports)
    pf = start_postfix(main, master, sink.port)
    try:
        yield pf, sink, state
    finally:
        pf.stop()
        state["filter"].stop()
        sink.stop()
        pf.remove()


def test_ham_delivered_gtube_and_eicar_held(setup: tuple[Postfix, Sink, Any]) -> None:
    pf, sink, state = setup
    # Postfix accepts all three (the queue comes first) ...
    for raw in (tagged(state["ham"], "1"), gtube(), eicar_mail()):
        assert send(pf.port, raw) == (250, "ok")
    (msg,) = wait_tags(sink, ["1"])
    pf.wait_queue_empty()  # ... and nothing bounced or stayed behind
    assert msg["X-Test-Tag"] == "1"
    status = headers_of(msg, "X-Spam-Status")
    assert len(status) == 1 and status[0].startswith("No, score=")
    assert any(v.startswith("mx.mailsift.test;") for v in headers_of(msg, "Authentication-Results"))
    # the spam and the virus are in mailsift's quarantine, not bounced to the sender
    wait_tags(sink, ["1"])
    assert "status=bounced" not in pf.log()
    entries, total = state["quarantine"].list()
    assert total == 2
    assert sorted(e.subject for e in entries) == ["test", "the report"]
    virus = next(e for e in entries if e.subject == "the report")
    assert "Eicar-Test" in virus.reasons["reason"]
    assert [r["name"] for r in virus.reasons["rules"]] == ["AV_VIRUS"]
    assert all(e.recipients == ["bob@mailsift.test"] for e in entries)


def test_filter_down_defers_in_postfix_and_loses_nothing(
    setup: tuple[Postfix, Sink, Any],
) -> None:
    pf, sink, state = setup
    state["filter"].stop()
    assert send(pf.port, tagged(state["ham"], "2")) == (250, "ok")  # Postfix has it in its queue
    deadline = time.monotonic() + 30
    while "status=deferred" not in pf.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "status=deferred" in pf.log()
    assert len(pf.queue_ids()) == 1
    state["filter"] = state["start"]()
    pf.flush()
    wait_tags(sink, ["1", "2"])
    pf.wait_queue_empty()
