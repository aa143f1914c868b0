"""Postfix + ``mailsift serve milter`` (``smtpd_milters``), configured from docs/integrations.md."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from mailsift.smtpd.milter import MilterServer
from mailsift.verdict import Action
from tests.fixtures.postfix import POSTSUPER
from tests.postfix.common import (
    Rig,
    delivered_ham,
    ham_passes_spam_and_virus_refused,
    send,
    send_while_down,
    tagged,
    tags,
    wait_tags,
)
from tests.smtpd.test_runner_scoring import FixedService


@pytest.fixture(scope="module")
def rig(start_rig: Callable[..., Rig]) -> Rig:
    return start_rig("milter")


def test_ham_gtube_eicar_through_postfix(rig: Rig) -> None:
    ham_passes_spam_and_virus_refused(rig)
    _, status = delivered_ham(rig, "1")
    assert "AV_CLEAN" in status[0].replace("\n", "").replace("\t", "")
    rig.pf.wait_queue_empty()
    assert "milter-reject" in rig.pf.log()


def test_milter_down_is_a_tempfail_and_nothing_is_lost(rig: Rig) -> None:
    code, text = send_while_down(rig)
    assert code == 451 and text.startswith("4.7.1")  # milter_default_action = tempfail


def test_hold_verdict_lands_in_postfix_hold_queue(rig: Rig) -> None:
    """A HOLD verdict is a milter quarantine: Postfix keeps the message on hold (``!`` in
    ``postqueue -p``), delivers nothing, and ``postsuper -H`` releases it tagged."""
    pf, sink = rig.pf, rig.sink
    delivered = tags(sink.messages())
    rig.server.stop()
    holding = MilterServer(rig.settings, FixedService(Action.HOLD, score=9.0)).start()
    try:
        assert send(pf.port, tagged(rig.ham, "4")) == (250, "ok")
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
        rig.start_server()
