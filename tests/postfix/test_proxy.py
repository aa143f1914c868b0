"""Postfix's before-queue proxy (``smtpd_proxy_filter``) through ``mailsift serve smtp`` and
back into a re-injection smtpd, configured from docs/integrations.md."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.smtp import OUTSIDE_IP
from tests.postfix.common import (
    Rig,
    delivered_ham,
    ham_passes_spam_and_virus_refused,
    headers_of,
    send_while_down,
)


@pytest.fixture(scope="module")
def rig(start_rig: Callable[..., Rig]) -> Rig:
    return start_rig("proxy")


def test_ham_gtube_eicar_through_postfix(rig: Rig) -> None:
    ham_passes_spam_and_virus_refused(rig)
    msg, _ = delivered_ham(rig, "1")
    # Postfix's public smtpd, mailsift and the re-injection smtpd each left a Received;
    # Postfix named the real client with XFORWARD, so mailsift's names it too
    received = headers_of(msg, "Received")
    ours = [r for r in received if "(mailsift)" in r]
    assert len(ours) == 1 and len(received) >= 3
    assert ours[0].startswith("from client.example (") and f"[{OUTSIDE_IP}])" in ours[0], ours
    rig.pf.wait_queue_empty()


def test_filter_down_is_a_tempfail_and_nothing_is_lost(rig: Rig) -> None:
    code, _ = send_while_down(rig)
    assert 400 <= code < 500
