"""What the three real-Postfix test modules share: mailsift's settings from docs/integrations.md's
TOML block, the messages (ham, GTUBE, EICAR) and an outside client."""

from __future__ import annotations

import smtplib
import time
import tomllib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from mailsift.classifier.scorer import GTUBE
from mailsift.config import AntivirusSettings, Settings, load_settings
from mailsift.smtpd.checks.antivirus import Antivirus
from mailsift.verdict import Action, Envelope
from tests.fixtures.clamd import ClamdServer, eicar
from tests.fixtures.postfix import doc_block, render
from tests.fixtures.smtp import OUTSIDE_IP, Sink

SENDER = "sender@example.org"
RCPT = "bob@mailsift.test"


def mailsift_settings(base: Settings, var_dir: Path, block: str, ports: dict[str, int]) -> Settings:
    """``base`` (the tests' settings) with the documented ``mailsift.toml`` block applied."""
    conf = tomllib.loads(render(doc_block(block), ports))
    data = base.model_dump()
    data["paths"]["var_dir"] = var_dir
    for section, values in conf.items():
        data[section] = {**data.get(section, {}), **values}
    data["smtp"]["submission_port"] = None
    return load_settings(**data)


def antivirus(clamd: ClamdServer) -> Antivirus:
    return Antivirus(AntivirusSettings(clamd_socket=clamd.unix_address, timeout=20.0))


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
