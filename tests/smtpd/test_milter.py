"""The milter (``mailsift.smtpd.milter``) over a real socket, driven the way an MTA drives it.

``Mta`` below speaks the MTA side of milter protocol 6 with ``kilter.protocol``'s codecs, as
Postfix does (negotiate, macros before each event, one answer per event, modifications then
a final answer at end of message). The real Postfix paths are in tests/postfix/.
"""

from __future__ import annotations

import socket
import struct
import threading
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from kilter.protocol.messages import (
    Abort,
    ActionFlags,
    Body,
    ChangeHeader,
    Connect,
    Continue,
    EndOfHeaders,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    Header,
    Helo,
    InsertHeader,
    Macro,
    Message,
    Negotiate,
    ProtocolFlags,
    Quarantine,
    ReplyCode,
)
from prometheus_client import REGISTRY

from mailsift.classifier.scorer import GTUBE
from mailsift.config import load_settings
from mailsift.smtpd.checks.base import CheckAction, Stage
from mailsift.smtpd.milter import MilterServer, decode, encode, reply_code
from mailsift.verdict import Action, Symbol
from tests.api import test_reload
from tests.smtpd.test_runner_scoring import FixedService, make_check

second_model_dir = test_reload.second_model_dir  # a module fixture: another model version

FINAL = {b"c", b"a", b"r", b"t", b"y", b"d"}
ALL_PROTOCOL = ProtocolFlags(0x1FFFFF)  # what Postfix 3.7 offers


class Mta:
    """The MTA side of one milter connection."""

    def __init__(self, address: str | tuple[str, int], leading_space: bool = True) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(address)
        offer = ALL_PROTOCOL if leading_space else ALL_PROTOCOL & ~ProtocolFlags.HDR_LEADSPC
        (self.negotiated,) = self.ask(Negotiate(6, ActionFlags.ALL, offer))
        self.leading_space = leading_space

    def frame(self) -> Message:
        head = self._read(4)
        (size,) = struct.unpack("!L", head)
        return decode(head + self._read(size))

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("milter closed the connection")
            data += chunk
        return data

    def ask(self, msg: Message, macros: dict[str, str] | None = None) -> list[Message]:
        """Send (macros and) an event; read answers up to and including the final one."""
        if macros:
            self.sock.sendall(encode(Macro(ord(encode(msg)[4:5]), macros)))
        self.sock.sendall(encode(msg))
        out = [self.frame()]
        if isinstance(msg, Negotiate):
            return out
        while bytes([out[-1].ident]) not in FINAL:
            out.append(self.frame())
        return out

    def message(
        self,
        raw: bytes,
        *,
        sender: str = "sender@example.org",
        rcpts: tuple[str, ...] = ("bob@mailsift.test",),
        helo: str = "client.example",
        ip: str = "192.0.2.10",
        auth: str = "",
    ) -> list[list[Message]]:
        """One SMTP session's events; the answers per event (stops at the first refusal)."""
        steps: list[tuple[Message, dict[str, str] | None]] = [
            (Connect("client.example", IPv4Address(ip), 40000), {"j": "mx.test"}),
            (Helo(helo), None),
            (EnvelopeFrom(f"<{sender}>".encode()), {"{auth_authen}": auth} if auth else None),
        ]
        steps += [(EnvelopeRecipient(f"<{r}>".encode()), None) for r in rcpts]
        head, _, body = raw.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            v = value if self.leading_space else value.lstrip(b" ")
            steps.append((Header(name.decode(), v), None))
        steps += [(EndOfHeaders(), None), (Body(body), None), (EndOfMessage(b""), {"i": "QID"})]
        answers = []
        for msg, macros in steps:
            got = self.ask(msg, macros)
            answers.append(got)
            if not isinstance(got[-1], Continue):
                break
        return answers

    def close(self) -> None:
        self.sock.close()


HAM = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: bob@mailsift.test\r\n"
    b"Subject: lunch on thursday\r\n"
    b"X-Spam-Status: No, score=-100 (forged by the sender)\r\n"
    b"Authentication-Results: mx.mailsift.test; dkim=pass (forged)\r\n"
    b"Authentication-Results: other.example; spf=pass\r\n"
    b"X-Spam-Flag: NO\r\n"
    b"\r\n"
    b"Hi Bob,\r\nshall we meet for lunch on thursday at noon?\r\nSee you, Sam\r\n"
)


@pytest.fixture
def milter(tmp_path: Path, test_settings: Any) -> Any:
    servers: list[MilterServer] = []

    def make(service: Any = None, checks: Any = (), **milter: Any) -> MilterServer:
        data = test_settings.model_dump()
        data["paths"]["var_dir"] = tmp_path / "var"
        data["milter"] = {"host": "127.0.0.1", "port": 0, **milter}
        srv = MilterServer(load_settings(**data), service, checks=list(checks)).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


def test_wire_vectors() -> None:
    """Frames as libmilter writes them: 4-byte length (command + data), command, data."""
    assert encode(Continue()) == b"\x00\x00\x00\x01c"
    assert encode(reply_code("550 5.7.1 no")) == b"\x00\x00\x00\x0ey550 5.7.1 no\x00"
    assert encode(Quarantine("spam")) == b"\x00\x00\x00\x06qspam\x00"
    assert bytes(reply_code("550 5.7.1 100% spam\r\nx").content) == b"550 5.7.1 100%% spam x\0"
    assert encode(InsertHeader(0, "X-A", b" b")) == (
        b"\x00\x00\x00\x0ci\x00\x00\x00\x00X-A\x00 b\x00"
    )
    conn = b"\x00\x00\x00\x1aChost.example\x004\x9c\x4010.0.0.1\x00"
    assert decode(conn) == Connect("host.example", IPv4Address("10.0.0.1"), 40000)
    neg = decode(b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")
    assert isinstance(neg, Negotiate) and neg.version == 6


def test_negotiation_asks_for_header_edits_and_quarantine(milter: Any) -> None:
    srv = milter(FixedService())
    mta = Mta(("127.0.0.1", srv.port))
    neg = mta.negotiated
    assert isinstance(neg, Negotiate) and neg.version == 6
    want = ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS | ActionFlags.QUARANTINE
    assert neg.action_flags == want
    assert ProtocolFlags.HDR_LEADSPC in neg.protocol_flags
    mta.close()


@pytest.mark.parametrize("leading_space", [True, False])
def test_ham_gets_our_headers_and_loses_forged_ones(
    milter: Any, scoring_service: Any, leading_space: bool
) -> None:
    srv = milter(scoring_service)
    mta = Mta(("127.0.0.1", srv.port), leading_space=leading_space)
    answers = mta.message(HAM)
    mta.close()
    *events, eom = answers
    assert all(isinstance(a[-1], Continue) for a in events)
    assert isinstance(eom[-1], Continue)
    deleted = [(m.name, m.index) for m in eom if type(m) is ChangeHeader]
    # the forged fields, highest index of a name first; other.example's A-R stays
    assert deleted == [("X-Spam-Flag", 1), ("Authentication-Results", 1), ("X-Spam-Status", 1)]
    assert all(m.value == b"" for m in eom if type(m) is ChangeHeader)
    inserted = {m.name: (m.index, bytes(m.value)) for m in eom if type(m) is InsertHeader}
    sp = " " if leading_space else ""
    assert inserted["Authentication-Results"][0] == 0
    assert inserted["Authentication-Results"][1].startswith(f"{sp}mx.mailsift.test;".encode())
    status = inserted["X-Spam-Status"][1].decode()
    assert status.startswith(f"{sp}No, score=") and "required=" in status
    assert "X-Spam-Flag" not in inserted


def test_scored_message_is_the_one_sent(milter: Any) -> None:
    service = FixedService()
    srv = milter(service)
    mta = Mta(("127.0.0.1", srv.port))
    mta.message(HAM, rcpts=("bob@mailsift.test", "carol@mailsift.test"), auth="Alice")
    mta.close()
    raw, env, _ = service.calls[0]
    assert b"X-Spam-" not in raw and b"mx.mailsift.test; dkim=pass" not in raw
    assert b"Authentication-Results: other.example; spf=pass\r\n" in raw
    assert raw.endswith(
        b"\r\n\r\nHi Bob,\r\nshall we meet for lunch on thursday at noon?\r\nSee you, Sam\r\n"
    )
    assert env.client_ip == "192.0.2.10" and env.helo == "client.example"
    assert env.mail_from == "sender@example.org"
    assert env.rcpt_to == ("bob@mailsift.test", "carol@mailsift.test")
    assert env.auth_user == "alice" and env.client_name == "client.example"


def test_gtube_is_rejected_at_end_of_message(milter: Any, scoring_service: Any) -> None:
    srv = milter(scoring_service)
    mta = Mta(("127.0.0.1", srv.port))
    gtube = HAM.replace(b"See you, Sam", GTUBE.encode())
    eom = mta.message(gtube)[-1]
    mta.close()
    assert len(eom) == 1 and isinstance(eom[0], ReplyCode)
    assert bytes(eom[0].content).startswith(b"550 5.7.1 Message rejected as spam")


def test_hold_is_an_mta_quarantine_with_the_headers(milter: Any) -> None:
    srv = milter(FixedService(Action.HOLD, score=9.0))
    mta = Mta(("127.0.0.1", srv.port))
    eom = mta.message(HAM)[-1]
    mta.close()
    kinds = [type(m) for m in eom]
    assert Quarantine in kinds and isinstance(eom[-1], Continue)
    names = [m.name for m in eom if type(m) is InsertHeader]
    assert names[:2] == ["Authentication-Results", "X-Spam-Flag"]


def test_scorer_down_is_a_tempfail(milter: Any) -> None:
    srv = milter(FixedService(fail=True))
    mta = Mta(("127.0.0.1", srv.port))
    before = _tempfails("scorer")
    eom = mta.message(HAM)[-1]
    mta.close()
    assert isinstance(eom[-1], ReplyCode)
    assert bytes(eom[-1].content).startswith(b"451 4.3.0")
    assert _tempfails("scorer") == before + 1  # counted, as the SMTP filter's are


def _tempfails(reason: str) -> float:
    labels = {"service": "milter", "reason": reason}
    return REGISTRY.get_sample_value("mailsift_tempfails_total", labels) or 0.0


def test_stop_with_drain_answers_the_message_under_way(milter: Any) -> None:
    """SIGTERM (``stop(drain=...)``): no new connections; an MTA connection in the middle of a
    message gets that message answered, then is closed; an idle one is closed at once (the
    MTA reconnects to another worker for its next message)."""
    srv = milter(FixedService())
    busy, idle = Mta(("127.0.0.1", srv.port)), Mta(("127.0.0.1", srv.port))
    busy.ask(Connect("client.example", IPv4Address("192.0.2.10"), 40000), {"j": "mx.test"})
    busy.ask(Helo("client.example"))
    assert isinstance(busy.ask(EnvelopeFrom(b"<sender@example.org>"))[-1], Continue)
    assert isinstance(busy.ask(EnvelopeRecipient(b"<bob@mailsift.test>"))[-1], Continue)
    stopping = threading.Thread(target=srv.stop, kwargs={"drain": 20.0})
    stopping.start()
    try:
        assert idle.sock.recv(1) == b""  # closed while between messages
        with pytest.raises(OSError):
            Mta(("127.0.0.1", srv.port))  # no longer listening
        assert stopping.is_alive()  # waits for the message under way
        head, _, body = HAM.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            busy.ask(Header(name.decode(), value))
        busy.ask(EndOfHeaders())
        busy.ask(Body(body))
        eom = busy.ask(EndOfMessage(b""), {"i": "QID"})
        assert isinstance(eom[-1], Continue)  # answered in full
        assert busy.sock.recv(1) == b""  # then closed
    finally:
        stopping.join(30)
        busy.close()
        idle.close()
    assert not stopping.is_alive()


def test_checks_run_per_stage_with_delayed_connect_refusal(milter: Any) -> None:
    listed = make_check(
        "dnsbl", Stage.CONNECT, CheckAction.REJECT, reason="listed",
        when=lambda ctx: ctx.client_ip == "192.0.2.66",
    )  # fmt: skip
    grey = make_check(
        "greylist", Stage.RCPT, CheckAction.TEMPFAIL, reason="greylisted",
        when=lambda ctx: ctx.current_rcpt == "carol@mailsift.test",
    )  # fmt: skip
    virus = make_check(
        "antivirus", Stage.DATA, CheckAction.REJECT, reason="virus found",
        details={"code": 554}, when=lambda ctx: b"VIRUS" in (ctx.raw_message or b""),
        symbols=(Symbol("VIRUS", 100.0),),
    )  # fmt: skip
    service = FixedService()
    srv = milter(service, checks=[listed, grey, virus])
    mta = Mta(("127.0.0.1", srv.port))
    # listed client: HELO passes, MAIL gets the delayed refusal
    answers = mta.message(HAM, ip="192.0.2.66")
    assert isinstance(answers[1][-1], Continue)
    assert bytes(answers[2][-1].content).startswith(b"550 5.7.1 listed")
    mta.close()
    # ... unless it authenticated
    mta = Mta(("127.0.0.1", srv.port))
    assert isinstance(mta.message(HAM, ip="192.0.2.66", auth="alice")[-1][-1], Continue)
    mta.close()
    mta = Mta(("127.0.0.1", srv.port))
    before = _tempfails("greylist")
    answers = mta.message(HAM, rcpts=("bob@mailsift.test", "carol@mailsift.test"))
    assert bytes(answers[4][-1].content).startswith(b"451 4.7.1 greylisted")
    assert _tempfails("greylist") == before + 1
    mta.close()
    mta = Mta(("127.0.0.1", srv.port))
    eom = mta.message(HAM.replace(b"Sam", b"VIRUS"))[-1]
    assert bytes(eom[-1].content).startswith(b"554 5.7.1 virus found")
    mta.close()


def test_unix_socket(milter: Any, tmp_path: Path) -> None:
    path = tmp_path / "run" / "milter.sock"
    srv = milter(FixedService(), socket=path)
    assert srv.address == f"unix:{path}"
    mta = Mta(str(path))
    assert isinstance(mta.message(HAM)[-1][-1], Continue)
    mta.close()


def test_protocol_errors_close_the_connection(milter: Any) -> None:
    srv = milter(FixedService())
    for junk in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x01Z", b"\x00\x00\x00\x00"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(junk)
            assert s.recv(100) == b""  # closed: the MTA applies milter_default_action
    mta = Mta(("127.0.0.1", srv.port))  # and the server still serves
    assert isinstance(mta.message(HAM)[-1][-1], Continue)
    mta.close()


def test_too_big(milter: Any) -> None:
    srv = milter(FixedService(), max_message_size=1000)
    mta = Mta(("127.0.0.1", srv.port))
    eom = mta.message(HAM + b"x" * 2000 + b"\r\n")[-1]
    mta.close()
    assert bytes(eom[-1].content).startswith(b"552 5.3.4")


def test_serve_milter_command(
    tmp_path: Path, smtp_tls_files: Any, small_model_dir: Path, test_settings: Any
) -> None:
    """``mailsift serve milter --socket PATH`` in a subprocess, over the small model."""
    import signal
    import subprocess
    import time

    from tests.fixtures.ports import free_port
    from tests.smtpd.test_cli import MAILSIFT, _serve_env

    env = _serve_env(
        tmp_path, free_port(), free_port(), free_port(), smtp_tls_files,
        MAILSIFT_MODEL__PATH=str(small_model_dir),
        MAILSIFT_RULES__CACHE_DIR=str(test_settings.rules_cache_dir),
        MAILSIFT_RULES__USE_STOCK="false",
    )  # fmt: skip
    bad = subprocess.run(
        [MAILSIFT, "serve", "milter", "--socket", "x", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "--socket excludes" in bad.stderr
    sock = tmp_path / "milter.sock"
    log = open(tmp_path / "milter.log", "wb")
    proc = subprocess.Popen(
        [MAILSIFT, "serve", "milter", "--socket", str(sock)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 180
        while not sock.is_socket() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sock.is_socket(), (tmp_path / "milter.log").read_text()
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        mta = Mta(str(sock))
        eom = mta.message(HAM.replace(b"See you, Sam", GTUBE.encode()))[-1]
        assert bytes(eom[-1].content).startswith(b"550 5.7.1 Message rejected as spam")
        mta.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "milter.log").read_text()
    assert not sock.exists()


def test_every_milter_worker_follows_a_reload(
    tmp_path: Path,
    smtp_tls_files: Any,
    small_model_dir: Path,
    second_model_dir: Path,
    test_settings: Any,
) -> None:
    """``serve milter --workers 2``: the served model re-pointed and the reload announced as
    the API announces it (the var dir's generation file): each worker loads the new model and
    logs it under its pid, and the milter keeps answering."""
    import re
    import subprocess
    import time

    from mailsift.api.reload import ModelSync, generation_file
    from mailsift.classifier.model import SpamModel
    from tests.fixtures.ports import free_port
    from tests.smtpd.test_cli import MAILSIFT, _serve_env

    served = tmp_path / "serving-model"
    served.symlink_to(small_model_dir.resolve(), target_is_directory=True)
    new_dir = second_model_dir
    new = str(SpamModel.load(new_dir).version)
    assert new != str(SpamModel.load(small_model_dir).version)
    env = _serve_env(
        tmp_path, free_port(), free_port(), free_port(), smtp_tls_files,
        MAILSIFT_MODEL__PATH=str(served),
        MAILSIFT_RULES__CACHE_DIR=str(test_settings.rules_cache_dir),
        MAILSIFT_RULES__USE_STOCK="false",
        MAILSIFT_API__RELOAD_POLL_SECONDS="0.2",
    )  # fmt: skip
    sock = tmp_path / "milter.sock"
    log_path = tmp_path / "milter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [MAILSIFT, "serve", "milter", "--socket", str(sock), "--workers", "2"],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while "2 workers" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            test_reload._point(served, new_dir)
            ModelSync(generation_file(tmp_path / "var")).bump()
            line = re.compile(r"mailsift\.service\[(\d+)\]: model reloaded: " + re.escape(new))
            deadline = time.monotonic() + 60
            pids: set[str] = set()
            while len(pids) < 2 and time.monotonic() < deadline:
                pids = set(line.findall(log_path.read_text(errors="replace")))
                time.sleep(0.2)
            assert len(pids) == 2 and str(proc.pid) not in pids, log_path.read_text()[-3000:]
            mta = Mta(str(sock))
            assert isinstance(mta.message(HAM)[-1][-1], Continue)
            mta.close()
        finally:
            proc.terminate()
            code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]


def test_two_transactions_and_an_abort_in_one_session(milter: Any) -> None:
    """One SMTP session, three transactions (the second aborted after RCPT): each message is
    judged with its own envelope; the aborted one is never scored."""
    service = FixedService()
    srv = milter(service)
    mta = Mta(("127.0.0.1", srv.port))
    assert isinstance(mta.ask(Connect("c.example", IPv4Address("192.0.2.7"), 1))[-1], Continue)
    assert isinstance(mta.ask(Helo("c.example"))[-1], Continue)
    for n, sender in enumerate(("one@example.org", "two@example.org", "three@example.org")):
        assert isinstance(mta.ask(EnvelopeFrom(f"<{sender}>".encode()))[-1], Continue)
        rcpt = f"<r{n}@mailsift.test>".encode()
        assert isinstance(mta.ask(EnvelopeRecipient(rcpt))[-1], Continue)
        if n == 1:
            mta.sock.sendall(encode(Abort()))
            continue
        for line in HAM.split(b"\r\n\r\n")[0].split(b"\r\n"):
            name, _, value = line.partition(b":")
            mta.ask(Header(name.decode(), value))
        mta.ask(EndOfHeaders())
        mta.ask(Body(f"message {n}\r\n".encode()))
        assert isinstance(mta.ask(EndOfMessage(b""))[-1], Continue)
    mta.close()
    envs = [(env.mail_from, env.rcpt_to) for _, env, _ in service.calls]
    assert envs == [
        ("one@example.org", ("r0@mailsift.test",)),
        ("three@example.org", ("r2@mailsift.test",)),
    ]
    assert service.calls[1][0].endswith(b"\r\n\r\nmessage 2\r\n")


def _recorded(service: Any) -> int:
    return sum(n for _, _, n in service.store.stats.verdicts_by_bucket(0.0, 1e12))


def test_verdict_records_are_written_off_the_answer_and_all_kept_at_stop(
    milter: Any, small_model_dir: Path, test_settings: Any, tmp_path: Path
) -> None:
    """In-process scoring queues each verdict record to the milter's writer (the answer does
    not wait for the store); stop() writes every queued record before it returns."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    data = test_settings.model_dump()
    data["paths"]["var_dir"] = tmp_path / "service-var"
    settings = load_settings(**data)
    scorer = Scorer(SpamModel.load(small_model_dir), load_rules(settings), settings)
    service = ScoringService(settings, scorer=scorer)
    srv = milter(service)
    assert srv.verdict_writer is not None
    mta = Mta(("127.0.0.1", srv.port))
    for i in range(12):
        eom = mta.message(HAM.replace(b"lunch on thursday", f"lunch number {i}".encode()))[-1]
        assert isinstance(eom[-1], Continue)
    mta.close()
    srv.stop(drain=5.0)
    assert srv.verdict_writer.written == 12 and srv.verdict_writer.dropped == 0
    assert _recorded(service) == 12
