"""Next-hop delivery with Postfix's smtp-sink: the before-queue proxy and the durable spool."""

from __future__ import annotations

import json
import smtplib
import threading
import time
import uuid

import pytest

from mailsift.smtpd.delivery import DeliveryError, deliver, to_wire
from mailsift.smtpd.spool import Spool
from tests.fixtures.ports import free_port
from tests.smtpd.util import client


def _message(tag: str) -> bytes:
    return f"Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\nbody {tag}\r\n".encode()


def _bodies(sink) -> list[str]:
    return [str(m.get_payload()).strip() for m in sink.messages()]


def test_proxy_answers_after_next_hop_accepted(smtp_filter, smtp_sink) -> None:
    c = client(smtp_filter.port)
    try:
        c.docmd("MAIL FROM:<a@example.org>")
        c.docmd("RCPT TO:<bob@mailsift.test>")
        code, msg = c.data(_message("proxy"))
    finally:
        c.quit()
    assert code == 250 and msg.startswith(b"2.0.0 OK: delivered as ")
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Mail-Args"] == "<a@example.org>"
    assert m["Subject"] == "proxy"
    assert m.get_all("Received")[1].startswith("from client.example (unknown [127.0.0.2])")


@pytest.mark.parametrize(
    ("sink_args", "code"),
    [(("-f", "RCPT"), 500), (("-r", "RCPT"), 450), (("-f", "."), 500), (("-r", "DATA"), 450)],
    ids=["5xx-rcpt", "4xx-rcpt", "5xx-dot", "4xx-data"],
)
def test_proxy_relays_next_hop_refusals(filter_factory, sink_factory, sink_args, code) -> None:
    sink = sink_factory(args=sink_args)
    srv = filter_factory(sink)
    c = client(srv.port)
    try:
        c.docmd("MAIL FROM:<a@example.org>")
        c.docmd("RCPT TO:<bob@mailsift.test>")
        got, msg = c.data(_message("refused"))
    finally:
        c.quit()
    assert got == code, msg
    assert msg[:1] == str(code)[0].encode()  # enhanced code class matches


def test_next_hop_down_is_a_tempfail(filter_factory) -> None:
    srv = filter_factory(None, next_hop_port=free_port())
    c = client(srv.port)
    try:
        c.docmd("MAIL FROM:<a@example.org>")
        c.docmd("RCPT TO:<bob@mailsift.test>")
        code, msg = c.data(_message("down"))
    finally:
        c.quit()
    assert code == 451 and b"4.4.1" in msg


def test_next_hop_killed_mid_transaction(filter_factory, sink_factory) -> None:
    """smtp-sink is killed while it holds our DATA; the client gets 4xx; on retry the
    message arrives exactly once and the dead sink kept no complete copy."""
    port = free_port()
    slow = sink_factory(args=("-w", "30"), port=port, name="slow")  # sits on DATA for 30 s
    srv = filter_factory(slow)
    tag = f"killed-{uuid.uuid4().hex[:8]}"
    result: dict[str, tuple[int, bytes]] = {}

    def send() -> None:
        c = client(srv.port)
        try:
            c.docmd("MAIL FROM:<a@example.org>")
            c.docmd("RCPT TO:<bob@mailsift.test>")
            result["reply"] = c.data(_message(tag))
        finally:
            c.close()

    t = threading.Thread(target=send)
    t.start()
    deadline = time.monotonic() + 20
    while not slow.files() and time.monotonic() < deadline:  # the sink opens its dump at RCPT
        time.sleep(0.02)
    assert slow.files(), "the filter never reached the next hop"
    slow.stop()  # SIGKILL mid-transaction
    t.join(30)
    code, msg = result["reply"]
    assert 400 <= code < 500, msg
    assert all(tag.encode() not in raw for raw in slow.raw_messages())  # nothing half-done
    # the client retries later (as every MTA does after a 4xx); the next hop is back
    fresh = sink_factory(port=port, name="fresh")
    c = client(srv.port)
    try:
        c.sendmail("a@example.org", ["bob@mailsift.test"], _message(tag))
    finally:
        c.quit()
    fresh.wait_for(1)
    time.sleep(0.3)
    assert _bodies(fresh) == [f"body {tag}"]


def test_spool_survives_restart_and_delivers_exactly_once(filter_factory, sink_factory, tmp_path):
    port = free_port()
    var = tmp_path / "spool-var"
    srv = filter_factory(None, mode="spool", next_hop_port=port, var_dir=var)
    tags = [f"spooled-{i}" for i in range(5)]
    c = client(srv.port)
    try:
        for tag in tags:
            assert c.sendmail("a@example.org", ["bob@mailsift.test"], _message(tag)) == {}
    finally:
        c.quit()
    spool = Spool(var / "spool")
    assert len(spool) == 5  # on disk, fsynced, before the 250s
    srv.stop()  # "crash": next hop never reachable during this life
    assert len(spool) == 5
    sink = sink_factory(port=port)
    filter_factory(None, mode="spool", next_hop_port=port, var_dir=var)  # restart
    sink.wait_for(5)
    deadline = time.monotonic() + 10
    while len(spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spool) == 0
    time.sleep(1.5)  # longer than spool_retry_max: a redelivery would have happened by now
    assert sorted(_bodies(sink)) == sorted(f"body {t}" for t in tags)


def test_spool_never_redelivers_what_was_marked_done(filter_factory, sink_factory, tmp_path):
    """A crash after the next hop's 250 and the durable mark, before deletion."""
    var = tmp_path / "var"
    spool = Spool(var / "spool")
    qid = spool.put("a@example.org", ["bob@mailsift.test", "carol@mailsift.test"], _message("x"))
    entry = spool.load(qid)
    entry.done = ["bob@mailsift.test"]  # bob got it before the crash
    spool.save_state(entry)
    sink = sink_factory()
    filter_factory(sink, mode="spool", var_dir=var)
    (m,) = sink.wait_for(1)
    assert m.get_all("X-Rcpt-Args") == ["<carol@mailsift.test>"]
    deadline = time.monotonic() + 10
    while len(spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spool) == 0 and len(sink.files()) == 1


def test_spool_keeps_permanent_failures_without_bouncing(filter_factory, sink_factory, tmp_path):
    sink = sink_factory(args=("-f", "RCPT"))
    var = tmp_path / "var"
    srv = filter_factory(sink, mode="spool", var_dir=var)
    c = client(srv.port)
    try:
        assert c.sendmail("a@example.org", ["bob@mailsift.test"], _message("perm")) == {}
    finally:
        c.quit()
    failed = var / "spool" / "failed"
    deadline = time.monotonic() + 10
    while not list(failed.glob("*.msg")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(failed.glob("*.msg"))) == 1
    assert sink.files() == [] or all(b"perm" not in r for r in sink.raw_messages())


def test_spool_gives_up_after_max_age_and_keeps_the_message(filter_factory, tmp_path):
    """Next hop down for longer than spool_max_age: the message stops being retried and
    waits in failed/ with the reason; nothing is bounced and nothing is deleted."""
    var = tmp_path / "var"
    srv = filter_factory(
        None,
        mode="spool",
        next_hop_port=free_port(),  # nothing listens there
        var_dir=var,
        spool_retry_initial=0.1,
        spool_retry_max=0.2,
        spool_max_age=1.0,
    )
    c = client(srv.port)
    try:
        assert c.sendmail("a@example.org", ["bob@mailsift.test"], _message("aged")) == {}
    finally:
        c.quit()
    spool = Spool(var / "spool")
    assert len(spool) == 1  # first attempts fail and are retried, not dropped
    failed = var / "spool" / "failed"
    deadline = time.monotonic() + 15
    while not list(failed.glob("*.msg")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (kept,) = failed.glob("*.msg")
    assert kept.read_bytes().endswith(_message("aged"))
    state = json.loads(kept.with_suffix(".state").read_text())
    assert state["failed"]["bob@mailsift.test"].startswith("expired: not delivered")
    assert state["attempts"] >= 2
    assert len(spool) == 0


def test_deliver_blocking_api(smtp_sink) -> None:
    res = deliver("127.0.0.1", smtp_sink.port, "", ["x@example.org"], b"Subject: b\n\n.dot\n")
    assert res.code == 250 and res.accepted == ["x@example.org"]
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Mail-Args"] == "<>" and m.get_payload().startswith(".dot")
    with pytest.raises(DeliveryError) as err:
        deliver("127.0.0.1", free_port(), "a@b.example", ["x@example.org"], b"x", timeout=2)
    assert err.value.temporary


def test_to_wire_normalises_and_stuffs() -> None:
    assert to_wire(b"a\n.b\r.\r\n..\rend") == b"a\r\n..b\r\n..\r\n...\r\nend\r\n.\r\n"


def test_smtplib_sendmail_smoke(smtp_filter, smtp_sink) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_filter.port) as c:
        assert c.sendmail("a@example.org", ["carol@mailsift.test"], _message("smoke")) == {}
    assert len(smtp_sink.wait_for(1)) == 1


# ---- kept connections to the next hop (proxy mode) ------------------------------------------


def _send_each(port: int, tags: list[str]) -> list[tuple[int, bytes]]:
    """One client session per message, as independent senders would."""
    out = []
    for tag in tags:
        c = client(port)
        try:
            c.docmd("MAIL FROM:<a@example.org>")
            c.docmd("RCPT TO:<bob@mailsift.test>")
            out.append(c.data(_message(tag)))
        finally:
            c.quit()
    return out


@pytest.mark.parametrize("sink_args", [(), ("-p",)], ids=["pipelining", "no-pipelining"])
def test_next_hop_connection_is_kept_for_the_next_messages(
    filter_factory, sink_factory, sink_args
) -> None:
    sink = sink_factory(args=sink_args)
    srv = filter_factory(sink)
    tags = [f"kept-{i}" for i in range(5)]
    assert [code for code, _ in _send_each(srv.port, tags)] == [250] * 5
    sink.wait_for(5)
    assert sorted(_bodies(sink)) == sorted(f"body {t}" for t in tags)
    assert srv.next_hop is not None and srv.next_hop.opened == 1


def test_no_kept_connections_when_turned_off(filter_factory, smtp_sink) -> None:
    srv = filter_factory(smtp_sink, next_hop_idle_connections=0)
    assert [code for code, _ in _send_each(srv.port, ["a", "b", "c"])] == [250] * 3
    smtp_sink.wait_for(3)
    assert srv.next_hop is not None and srv.next_hop.opened == 3


def test_a_kept_connection_the_next_hop_dropped_is_replaced(filter_factory, sink_factory) -> None:
    """The connection kept after the first message is cut (the next hop restarted); the
    second message goes over a new connection: both answered 250, each delivered once."""
    from tests.fixtures.proxy import TcpProxy

    sink = sink_factory()
    proxy = TcpProxy(sink.port).start()
    try:
        srv = filter_factory(sink, next_hop_port=proxy.port)
        assert _send_each(srv.port, ["first"])[0][0] == 250
        proxy.kill()
        proxy.restore()
        assert _send_each(srv.port, ["second"])[0][0] == 250
        sink.wait_for(2)
        time.sleep(0.3)
        assert sorted(_bodies(sink)) == ["body first", "body second"]
        assert srv.next_hop is not None and srv.next_hop.opened == 2
    finally:
        proxy.kill()


def test_a_kept_connection_the_next_hop_timed_out_is_replaced(filter_factory, sink_factory) -> None:
    """smtp-sink ends a session idle for a second (``-t 1``); the filter keeps connections
    longer, so the second message meets a closed one and is sent on a new connection."""
    sink = sink_factory(args=("-t", "1"))
    srv = filter_factory(sink, next_hop_idle_time=60.0)
    assert _send_each(srv.port, ["early"])[0][0] == 250
    sink.wait_for(1)
    time.sleep(2.0)  # the sink's idle limit passes
    assert _send_each(srv.port, ["late"])[0][0] == 250
    sink.wait_for(2)
    time.sleep(0.3)
    assert sorted(_bodies(sink)) == ["body early", "body late"]
    assert srv.next_hop is not None and srv.next_hop.opened == 2


def test_a_connection_whose_message_was_refused_is_not_kept(filter_factory, sink_factory) -> None:
    """The recipients refused (pipelined: the DATA already sent is dropped with the
    connection): each message is refused, nothing is delivered, no connection is reused."""
    sink = sink_factory(args=("-r", "RCPT"))
    srv = filter_factory(sink)
    assert [code for code, _ in _send_each(srv.port, ["r1", "r2"])] == [450, 450]
    time.sleep(0.3)
    assert sink.raw_messages() == [] or all(b"body r" not in r for r in sink.raw_messages())
    assert srv.next_hop is not None and srv.next_hop.opened == 2


def test_8bit_content_is_sent_with_body_8bitmime(smtp_filter, smtp_sink) -> None:
    body = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    ascii_body = _message("plain")
    for data in (body, ascii_body):
        c = client(smtp_filter.port)
        try:
            c.docmd("MAIL FROM:<a@example.org>")
            c.docmd("RCPT TO:<bob@mailsift.test>")
            assert c.data(data)[0] == 250
        finally:
            c.quit()
    msgs = smtp_sink.wait_for(2)
    args = sorted(m["X-Mail-Args"] for m in msgs)
    assert args == ["<a@example.org>", "<a@example.org> BODY=8BITMIME"]
