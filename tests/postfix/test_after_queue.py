"""Postfix's after-queue content filter (``content_filter``) through ``mailsift serve smtp``
with ``smtp.after_queue`` and back into a re-injection smtpd, configured from docs/integrations.md."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.fixtures.smtp import OUTSIDE_IP
from tests.postfix.common import (
    Rig,
    delivered_ham,
    eicar_mail,
    gtube,
    headers_of,
    send,
    tagged,
    wait_tags,
)


@pytest.fixture(scope="module")
def rig(start_rig: Callable[..., Rig]) -> Rig:
    rig = start_rig("after-queue", quarantine=True)
    assert rig.settings.smtp.after_queue
    return rig


def test_ham_delivered_gtube_and_eicar_held(rig: Rig) -> None:
    pf = rig.pf
    # Postfix accepts all three (the queue comes first) ...
    for raw in (tagged(rig.ham, "1"), gtube(), eicar_mail()):
        assert send(pf.port, raw) == (250, "ok")
    msg, _ = delivered_ham(rig, "1")
    # Postfix's smtp client named the original client (XFORWARD): mailsift's Received does too
    ours = [r for r in headers_of(msg, "Received") if "(mailsift)" in r]
    assert len(ours) == 1 and f"[{OUTSIDE_IP}])" in ours[0], ours
    pf.wait_queue_empty()  # ... and nothing bounced or stayed behind
    # the spam and the virus are in mailsift's quarantine, not bounced to the sender
    wait_tags(rig.sink, ["1"])
    assert "status=bounced" not in pf.log()
    assert rig.quarantine is not None
    entries, total = rig.quarantine.list()
    assert total == 2
    assert sorted(e.subject for e in entries) == ["test", "the report"]
    virus = next(e for e in entries if e.subject == "the report")
    assert "Eicar-Test" in virus.reasons["reason"]
    assert [r["name"] for r in virus.reasons["rules"]] == ["AV_VIRUS"]
    assert all(e.recipients == ["bob@mailsift.test"] for e in entries)


def test_filter_down_defers_in_postfix_and_loses_nothing(rig: Rig) -> None:
    pf = rig.pf
    rig.server.stop()
    assert send(pf.port, tagged(rig.ham, "2")) == (250, "ok")  # Postfix has it in its queue
    deadline = time.monotonic() + 30
    while "status=deferred" not in pf.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "status=deferred" in pf.log()
    assert len(pf.queue_ids()) == 1
    rig.start_server()
    pf.flush()
    wait_tags(rig.sink, ["1", "2"])
    pf.wait_queue_empty()
