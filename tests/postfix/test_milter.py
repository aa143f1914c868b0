"""Postfix + ``mailsift serve milter`` (``smtpd_milters``), configured from docs/integrations.md."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailsift.smtpd.milter import MilterServer
from mailsift.verdict import Action
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import POSTSUPER, Postfix, doc_block, render, start_postfix
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
    tags,
    wait_tags,
)
from tests.smtpd.test_runner_scoring import FixedService


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    test_settings: Any,
    scoring_service: Any,
    clamd_server: Any,
    corpus_messages: Any,
    small_split: Any,
) -> Iterator[tuple[Postfix, Sink, Any]]:
    tmp = tmp_path_factory.mktemp("postfix-milter")
    ports = {"11332": free_port()}
    settings = mailsift_settings(test_settings, tmp / "var", "postfix-milter mailsift.toml", ports)
    checks = [antivirus(clamd_server)]

    def start_milter() -> MilterServer:
        return MilterServer(settings, scoring_service, checks=checks).start()

    sink = Sink(dir=tmp / "sink", port=free_port()).start()
    milter = start_milter()
    main = render(doc_block("postfix-milter main.cf"), ports)
    pf = start_postfix(main, "", sink.port)
    state = {
        "ham": pick_ham(scoring_service, corpus_messages, small_split),
        "milter": milter,
        "start": start_milter,
        "settings": settings,
    }
    try:
        yield pf, sink, state
    finally:
        pf.stop()
        state["milter"].stop()
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
    assert len(status) == 1 and status[0].startswith("No, score=")  # the forged one is gone
    ar = headers_of(msg, "Authentication-Results")
    assert any(v.startswith("mx.mailsift.test;") for v in ar)
    assert "AV_CLEAN" in status[0].replace("\n", "").replace("\t", "")
    pf.wait_queue_empty()
    assert "milter-reject" in pf.log()


def test_milter_down_is_a_tempfail_and_nothing_is_lost(
    setup: tuple[Postfix, Sink, Any],
) -> None:
    pf, sink, state = setup
    state["milter"].stop()
    code, text = send(pf.port, tagged(state["ham"], "2"))
    assert code == 451 and text.startswith("4.7.1")  # milter_default_action = tempfail
    state["milter"] = state["start"]()
    assert send(pf.port, tagged(state["ham"], "3")) == (250, "ok")
    wait_tags(sink, ["1", "3"])
    pf.wait_queue_empty()


def test_hold_verdict_lands_in_postfix_hold_queue(setup: tuple[Postfix, Sink, Any]) -> None:
    """A HOLD verdict is a milter quarantine: Postfix keeps the message on hold (``!`` in
    ``postqueue -p``), delivers nothing, and ``postsuper -H`` releases it tagged."""
    pf, sink, state = setup
    delivered = tags(sink.messages())
    state["milter"].stop()
    holding = MilterServer(state["settings"], FixedService(Action.HOLD, score=9.0)).start()
    try:
        assert send(pf.port, tagged(state["ham"], "4")) == (250, "ok")
        deadline = time.monotonic() + 30
        while not any(i.endswith("!") for i in pf.queue_ids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        (held,) = pf.queue_ids()
        assert held.endswith("!"), pf.queue()
        assert "4" not in tags(sink.messages())
        subprocess.run([POSTSUPER, "-c", str(pf.conf), "-H", held[:-1]], check=True, timeout=30)
        pf.flush()
        msgs = wait_tags(sink, [*delivered, "4"])
        (m4,) = [m for m in msgs if m["X-Test-Tag"] == "4"]
        assert m4["X-Spam-Flag"] == "YES" and m4["X-Spam-Status"].startswith("Yes, score=9.0")
        pf.wait_queue_empty()
    finally:
        holding.stop()
        state["milter"] = state["start"]()
