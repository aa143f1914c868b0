"""What the three real-Postfix test modules share: the rig (Postfix, the documented mailsift
server, a sink; the ``start_rig`` fixture of conftest.py starts it), the messages (ham, GTUBE,
EICAR), an outside client, and the checks every path makes of what it delivers."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from mailsift.classifier.scorer import GTUBE
from mailsift.config import Settings
from mailsift.quarantine import Quarantine
from mailsift.verdict import Action, Envelope
from tests.fixtures.clamd import eicar
from tests.fixtures.postfix import Postfix
from tests.fixtures.smtp import OUTSIDE_IP, Sink

SENDER = "sender@example.org"
RCPT = "bob@mailsift.test"


@dataclass
class Rig:
    """A real Postfix (``pf``) plugged into mailsift one documented way, the mailsift server
    (``server``: the milter or the SMTP filter; ``serve()`` makes a new one, not started), a
    sink behind both, and a held-out corpus ham to send."""

    sink: Sink
    ham: bytes
    settings: Settings
    serve: Callable[[], Any]
    quarantine: Quarantine | None = None  # where the after-queue filter holds
    server: Any = field(init=False)
    pf: Postfix = field(init=False)

    def start_server(self) -> None:
        self.server = self.serve().start()


def message(subject: str, body: str, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Sender <{SENDER}>"
    msg["To"] = RCPT
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["X-Spam-Status"] = "No, score=-50.0 (forged: must not survive)"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="eicar.com"
        )
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def pick_ham(service: Any, corpus_messages: Any, small_split: Any) -> bytes:
    """A held-out corpus ham the small model scores clearly as ham (score < 2)."""
    _, raws, y = corpus_messages
    _, held_out = small_split
    for i in held_out:
        if y[i] != 0:
            continue
        raw = raws[i].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        v = service.score(raw, Envelope(client_ip="127.0.0.1", rcpt_to=(RCPT,)), [])
        if v.action is Action.HAM and v.score < 2.0:
            return raw
    raise AssertionError("no clear ham in the held-out corpus")


def tagged(raw: bytes, tag: str) -> bytes:
    """``raw`` with an ``X-Test-Tag`` field on top (to tell deliveries apart)."""
    return f"X-Test-Tag: {tag}\r\nX-Spam-Status: No, score=-50 (forged)\r\n".encode() + raw


def tags(msgs: list[Any]) -> list[str]:
    """The test tags delivered (Postfix's own notices to the postmaster have none)."""
    return sorted(str(m["X-Test-Tag"]) for m in msgs if m["X-Test-Tag"])


def wait_tags(sink: Sink, want: list[str], timeout: float = 30.0) -> list[Any]:
    """Wait until exactly the tagged messages ``want`` are in the sink; those messages."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = [m for m in sink.messages() if m["X-Test-Tag"] and m["X-Client-Addr"]]
        if tags(msgs) == sorted(want) or time.monotonic() > deadline:
            assert tags(msgs) == sorted(want)
            return msgs
        time.sleep(0.1)


def gtube() -> bytes:
    return message("test", f"This is the GTUBE.\n{GTUBE}\n")


def eicar_mail() -> bytes:
    return message("the report", "Here is the file.\n", eicar())


def send(port: int, raw: bytes) -> tuple[int, str]:
    """Send from an outside address; (code, text) of the final answer (DATA or a refusal)."""
    c = smtplib.SMTP("127.0.0.1", port, source_address=(OUTSIDE_IP, 0), timeout=60)
    try:
        c.ehlo("client.example")
        try:
            c.sendmail(SENDER, [RCPT], raw)
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode(errors="replace")
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[RCPT]
            return code, text.decode(errors="replace")
        return 250, "ok"
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass


def headers_of(msg: Any, name: str) -> list[str]:
    return [str(v) for v in (msg.get_all(name) or [])]


def delivered_ham(rig: Rig, tag: str) -> tuple[Any, list[str]]:
    """The one delivered message tagged ``tag``, checked: exactly one X-Spam-Status, ours
    saying ham (the forged one is gone), and our Authentication-Results; with that status."""
    (msg,) = wait_tags(rig.sink, [tag])
    assert msg["X-Test-Tag"] == tag
    status = headers_of(msg, "X-Spam-Status")
    assert len(status) == 1 and status[0].startswith("No, score=")
    assert any(v.startswith("mx.mailsift.test;") for v in headers_of(msg, "Authentication-Results"))
    return msg, status


def ham_passes_spam_and_virus_refused(rig: Rig) -> None:
    """Before the queue: the ham (tag 1) is accepted, GTUBE and EICAR are refused."""
    assert send(rig.pf.port, tagged(rig.ham, "1")) == (250, "ok")
    code, text = send(rig.pf.port, gtube())
    assert code == 550 and "5.7.1 Message rejected as spam" in text
    code, text = send(rig.pf.port, eicar_mail())
    assert code == 554 and "Eicar-Test" in text


def send_while_down(rig: Rig) -> tuple[int, str]:
    """Stop the mailsift server, send the ham (tag 2), start the server again, send it once
    more (tag 3, accepted): only tags 1 and 3 arrive and the queue empties. The answer to
    tag 2 (Postfix's, without mailsift)."""
    rig.server.stop()
    answer = send(rig.pf.port, tagged(rig.ham, "2"))
    rig.start_server()
    assert send(rig.pf.port, tagged(rig.ham, "3")) == (250, "ok")
    wait_tags(rig.sink, ["1", "3"])
    rig.pf.wait_queue_empty()
    return answer
