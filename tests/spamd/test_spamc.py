"""The real ``spamc`` against a real ``mailsift serve spamd`` subprocess: the reply shapes of
SpamAssassin 4.0's spamd (``spamd401``), per-user lists through ``User:``, and TELL
(``spamc -L``) teaching the live model through the feedback learner."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.model import campaign_copy
from tests.fixtures.store import user_feedback
from tests.spamd import spamd401
from tests.spamd.conftest import (
    GTUBE,
    PLAIN_HAM,
    SpamdProcess,
    request,
    spamc,
    spamc_request,
)

SCORE_RE = re.compile(rb"^(-?\d+\.\d)/(\d+\.\d)\n$")


def shape(reply: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(status line, header names, Spam line with the numbers masked) of a spamd reply."""
    head, _, _ = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    names = [ln.split(b":", 1)[0] for ln in lines[1:]]
    spam = next((ln for ln in lines[1:] if ln.startswith(b"Spam:")), b"")
    return lines[0], names, re.sub(rb"-?\d+\.\d", b"N", spam)


def body_of(reply: bytes) -> bytes:
    return reply.partition(b"\r\n\r\n")[2]


def spamc_score(port: int, raw: bytes, user: str) -> float:
    res = spamc(port, "-c", "-u", user, input=raw)
    m = SCORE_RE.match(res.stdout)
    assert m, (res.returncode, res.stdout, res.stderr)
    return float(m.group(1))


def test_spamc_check_gtube_prints_what_spamd_prints(spamd_proc: SpamdProcess) -> None:
    res = spamc(spamd_proc.port, "-c", input=GTUBE)
    assert res.stdout == b"1000.0/5.0\n"  # spamc -c against SpamAssassin's spamd: the same
    assert res.returncode == 1
    ham = spamc(spamd_proc.port, "-c", input=PLAIN_HAM)
    assert ham.returncode == 0, ham.stdout
    m = SCORE_RE.match(ham.stdout)
    assert m and float(m.group(1)) < 5.0 and m.group(2) == b"5.0"
    # on the wire: byte for byte the reply spamd 4.0 gave for GTUBE
    reply = request(spamd_proc.port, spamc_request("CHECK", GTUBE, ("User", "nobody")))
    assert reply == spamd401.CHECK_GTUBE


@pytest.mark.parametrize(
    ("method", "raw", "reference"),
    [
        ("SYMBOLS", GTUBE, spamd401.SYMBOLS_GTUBE),
        ("REPORT", GTUBE, spamd401.REPORT_GTUBE_HEAD),
        ("REPORT_IFSPAM", GTUBE, spamd401.REPORT_GTUBE_HEAD.replace(b"True", b"Yes")),
        ("REPORT_IFSPAM", PLAIN_HAM, spamd401.REPORT_IFSPAM_HAM),
        ("PROCESS", PLAIN_HAM, spamd401.PROCESS_HAM_HEAD),
        ("HEADERS", PLAIN_HAM, spamd401.PROCESS_HAM_HEAD),
    ],
)
def test_reply_shapes_match_spamd(
    spamd_proc: SpamdProcess, method: str, raw: bytes, reference: bytes
) -> None:
    reply = request(spamd_proc.port, spamc_request(method, raw, ("User", "nobody")))
    assert shape(reply) == shape(reference)
    clen = int(re.search(rb"Content-length: (\d+)", reply).group(1))  # type: ignore[union-attr]
    assert clen == len(body_of(reply))
    if method == "REPORT_IFSPAM" and raw is PLAIN_HAM:
        assert reply.endswith(b"\r\n\r\n") and clen == 0
    if method in ("PROCESS", "HEADERS"):
        out = body_of(reply)
        assert b"X-Spam-Status: No, score=" in out
        assert b"Subject: lunch tomorrow\n" in out
        assert (b"Hi Alice" in out) == (method == "PROCESS")


def test_old_protocol_versions(spamd_proc: SpamdProcess) -> None:
    v12 = request(spamd_proc.port, spamc_request("SYMBOLS", GTUBE, version="1.2"))
    assert shape(v12) == shape(spamd401.SYMBOLS_GTUBE_V12) and v12.endswith(b"\r\n")
    assert b"GTUBE" in body_of(v12)
    v10 = request(spamd_proc.port, b"CHECK SPAMC/1.0\r\n" + GTUBE)  # no headers before 1.1
    assert v10 == spamd401.CHECK_GTUBE_V10
    v11 = request(spamd_proc.port, b"PROCESS SPAMC/1.1\r\n\r\n" + PLAIN_HAM)
    assert v11.startswith(spamd401.PROCESS_V11_HEAD) and v11.endswith(b"Bob\n")
    assert request(spamd_proc.port, b"PING SPAMC/1.5\r\n\r\n") == spamd401.PONG
    assert request(spamd_proc.port, b"PING SPAMC/1.2\r\n") == spamd401.PONG


def test_spamc_report_shows_rules_and_tokens(spamd_proc: SpamdProcess) -> None:
    res = spamc(spamd_proc.port, "-R", input=GTUBE)
    out = res.stdout.decode()
    assert out.startswith("1000.0/5.0\n"), out
    assert spamd401.REPORT_GTUBE_TABLE.decode() in out
    gtube_line = next(ln for ln in out.splitlines() if " GTUBE " in ln)
    assert re.match(r"^[ -]?[\d.]{3,4} GTUBE {18}\S", gtube_line), gtube_line
    assert "Model " in out and "spam probability 1.0000" in out
    tokens = re.findall(r"^ *([+-]\d+\.\d{3}) (\S+)$", out, re.MULTILINE)
    assert tokens, out  # the model's explanation: signed weights and their tokens
    assert re.search(r"^Verdict id: [0-9a-f]{32}$", out, re.MULTILINE)
    sym = spamc(spamd_proc.port, "-y", input=GTUBE)
    assert b"GTUBE" in sym.stdout.split(b",")


def test_spamc_process_stamps_headers(spamd_proc: SpamdProcess) -> None:
    forged = b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + GTUBE
    res = spamc(spamd_proc.port, input=forged)
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.partition(b"\n\n")
    assert b"X-Spam-Flag: YES\n" in head and b"X-Spam-Score: 1000.0\n" in head
    assert b"X-Spam-Flag: NO" not in head and b"score=-100" not in head  # forged: dropped
    assert b"\r\n" not in res.stdout  # the message's own line ends kept
    assert body == GTUBE.partition(b"\n\n")[2]
    exit_code = spamc(spamd_proc.port, "-E", input=GTUBE)
    assert exit_code.returncode == 1


def test_user_header_selects_the_users_lists(spamd_proc: SpamdProcess) -> None:
    spamd_proc.cli(
        "lists", "add", "example.com", "--kind", "trusted", "--user", "carol@example.org"
    )
    # the server sees another process's list change within its list cache's ttl (2 s)
    for _ in range(40):
        res = spamc(spamd_proc.port, "-c", "-u", "carol@example.org", input=GTUBE)
        if res.returncode == 0:
            break
        time.sleep(0.2)
    assert res.returncode == 0 and res.stdout == b"4.9/5.0\n", res.stdout  # spamd's clamp
    assert spamc(spamd_proc.port, "-c", "-u", "dave@example.org", input=GTUBE).returncode == 1


def test_spamc_learn_spam_is_acknowledged_and_learned(
    spamd_proc: SpamdProcess, borderline: bytes
) -> None:
    user = "erin@example.org"
    before = spamc_score(spamd_proc.port, campaign_copy(borderline), user)
    learn = spamc(spamd_proc.port, "-L", "spam", "-u", user, input=borderline)
    assert learn.returncode == 0, learn.stderr
    assert learn.stdout == b"Message successfully un/learned\n"
    again = spamc(spamd_proc.port, "-L", "spam", "-u", user, input=borderline)
    assert again.stdout == b"Message was already un/learned\n"
    # the worker that learnt it scores with the lesson at once; another worker replays it
    # from the store's learn-event log within feedback.sync_interval (1 s)
    deadline = time.monotonic() + 10
    after = spamc_score(spamd_proc.port, campaign_copy(borderline), user)
    while after <= before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = spamc_score(spamd_proc.port, campaign_copy(borderline), user)
    assert after > before, (before, after)
    # the reports are in the store as this user's, made through the spamd protocol
    recs = user_feedback(spamd_proc.settings.store_url, user)
    assert sorted((r.label, r.source, r.status) for r in recs) == [
        ("spam", "user", "duplicate"),
        ("spam", "user", "personal"),
    ]


def test_tell_forget_is_refused_with_a_reason(spamd_proc: SpamdProcess) -> None:
    res = spamc(spamd_proc.port, "-L", "forget", "-u", "erin@example.org", input=PLAIN_HAM)
    assert res.returncode != 0 and res.stdout == b""  # a failure, not a silent "done"
    raw = request(
        spamd_proc.port,
        spamc_request("TELL", PLAIN_HAM, ("User", "x@example.org"), ("Remove", "local")),
    )
    assert raw.startswith(b"SPAMD/1.0 69 Service Unavailable: ")


@pytest.mark.parametrize("data", list(spamd401.ERRORS))
def test_malformed_requests_get_spamds_error_replies(spamd_proc: SpamdProcess, data: bytes) -> None:
    assert request(spamd_proc.port, data) == spamd401.ERRORS[data]
    assert request(spamd_proc.port, b"PING SPAMC/1.5\r\n\r\n") == spamd401.PONG


EXIM = Path("/opt/mailsift-test/exim4/usr/sbin/exim4")  # scripts/install-test-exim.sh
# the Exim configuration of docs/integrations.md, with the test's port and dirs
EXIM_ACLS = """
spamd_address = 127.0.0.1 {port}

acl_check_data:
  warn  spam       = nobody:true
        add_header = X-Spam-Score: $spam_score
        add_header = X-Spam-Report: $spam_report
  deny  spam       = nobody
        message    = This message scored $spam_score spam points.
"""


def exim_session(port: int, tmp: Path, message: bytes) -> str:
    """One SMTP session through the real Exim (``-bh``: the ACLs run, nothing is queued)."""
    acls = EXIM_ACLS.format(port=port)
    main, _, data_acl = acls.partition("\nacl_check_data:\n")
    for d in ("spool", "log"):
        (tmp / d).mkdir(exist_ok=True)
        (tmp / d).chmod(0o777)
    conf = tmp / "exim.conf"
    conf.write_text(
        f"exim_user = nobody\nexim_group = nogroup\nspool_directory = {tmp}/spool\n"
        f"log_file_path = {tmp}/log/%slog\nprimary_hostname = mx.test\nkeep_environment =\n"
        f"acl_smtp_rcpt = acl_check_rcpt\nacl_smtp_data = acl_check_data\n{main}\n"
        f"begin acl\n\nacl_check_rcpt:\n  accept\n\nacl_check_data:\n{data_acl}  accept\n"
    )
    body = message.replace(b"\n", b"\r\n")
    smtp = (
        b"EHLO client.test\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<alice@example.org>\r\n"
        b"DATA\r\n" + body + b".\r\nQUIT\r\n"
    )
    res = subprocess.run(
        [str(EXIM), "-C", str(conf), "-bh", "192.0.2.1"],
        input=smtp,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")


@pytest.fixture
def exim_dir() -> Iterator[Path]:
    """A directory Exim can use once it has dropped root (pytest's tmp dirs are root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="mailsift-exim-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_real_exim_spamd_address(spamd_proc: SpamdProcess, exim_dir: Path) -> None:
    assert EXIM.is_file(), "no Exim: run scripts/install-test-exim.sh (make setup does)"
    out = exim_session(spamd_proc.port, exim_dir, GTUBE)
    assert "550 This message scored 1000.0 spam points." in out, out
    out = exim_session(spamd_proc.port, exim_dir, PLAIN_HAM)
    # the warn verb's headers (Exim's -bh trace shows them expanded): Exim parsed mailsift's
    # score and report, and the deny verb decided on that score against the threshold 5.0
    m = re.search(r"= X-Spam-Score: (-?\d+\.\d)$", out, re.MULTILINE)
    assert m is not None, out
    assert "= X-Spam-Report: Spam detection software, running on the system" in out
    score = float(m.group(1))
    if score >= 5.0:
        assert f"550 This message scored {m.group(1)} spam points." in out, out
    else:
        assert re.search(r"^250 OK id=", out, re.MULTILINE), out
