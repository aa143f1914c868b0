"""Learning from the Junk folder with a real Dovecot: the IMAPSieve recipe of
``data/dovecot/`` (conf fragment, sieve scripts and the ``mailsift-learn`` wrapper, with
their paths pointed at this test's directories) in a ``dovecot -c FILE`` of the test's own
(own base_dir, loopback port, a passwd-file user, Maildir under a temp dir), a real
``mailsift serve api`` to report to, and imaplib as the mail client: moving a message into
Junk teaches spam as that user's verdict, moving it out again teaches ham."""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailsift.config import PROJECT_ROOT, Settings
from tests.fixtures.api import ApiServer, api_test_settings, start_api_server
from tests.fixtures.model import campaign_copy
from tests.fixtures.ports import free_port
from tests.fixtures.process import MAILSIFT
from tests.fixtures.store import user_feedback

RECIPE = PROJECT_ROOT / "data" / "dovecot"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "alice@example.org", "correct horse battery"
MAIL_ACCOUNT = "nobody"  # Dovecot refuses mail access as root: the Maildir is this user's


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[ApiServer]:
    settings = api_test_settings(
        test_settings, tmp_path_factory.mktemp("junk-api"), small_model_dir
    )
    with start_api_server(settings, workers=1) as server:
        yield server


def _base_config(root: Path, port: int, uid: int, gid: int) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
first_valid_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
!include {root}/mailsift/mailsift-junk.conf
"""


def _mailsift_command() -> str:
    """The ``mailsift`` the wrapper runs. Dovecot starts pipe programs with a clean
    environment: a PYTHONPATH this test runs under (a source tree in front of the installed
    package) is handed on explicitly."""
    if os.environ.get("PYTHONPATH"):
        return f"/usr/bin/env PYTHONPATH={os.environ['PYTHONPATH']} {MAILSIFT}"
    return MAILSIFT


@contextlib.contextmanager
def dovecot(api: ApiServer) -> Iterator[int]:
    """A Dovecot with the Junk recipe on a free loopback port; yields the port."""
    account = pwd.getpwnam(MAIL_ACCOUNT)
    # a directory of its own the mail account can reach (pytest's tmp dirs are root's 0700)
    root = Path(tempfile.mkdtemp(prefix="mailsift-dovecot-"))
    try:
        root.chmod(0o755)
        recipe = root / "mailsift"
        recipe.mkdir()
        for f in RECIPE.iterdir():  # the recipe as shipped, its paths pointed at this test's
            text = f.read_text()
            text = text.replace("/etc/dovecot/mailsift", str(recipe))
            text = text.replace("/usr/local/bin/mailsift", _mailsift_command())
            text = text.replace("http://127.0.0.1:8080", api.base_url)
            text = text.replace("/var/spool/mailsift-learn", str(root / "learn-queue"))
            (recipe / f.name).write_text(text)
            (recipe / f.name).chmod(0o755 if os.access(f, os.X_OK) else 0o644)
        key = recipe / "feedback.key"
        key.write_text(api.create_key("dovecot-junk", "delegate") + "\n")
        os.chown(key, 0, account.pw_gid)
        key.chmod(0o640)  # readable by the mail account, not by everyone
        home = root / "home" / "alice"
        home.mkdir(parents=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        os.chown(recipe, account.pw_uid, account.pw_gid)  # sieve binaries are saved here
        queue = root / "learn-queue"  # the reports waiting while the API is away
        queue.mkdir(mode=0o700)
        os.chown(queue, account.pw_uid, account.pw_gid)
        (root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{account.pw_uid}:{account.pw_gid}::{home}::\n"
        )
        port = free_port()
        conf = root / "dovecot.conf"
        conf.write_text(_base_config(root, port, account.pw_uid, account.pw_gid))
        # the master daemonizes: its output must not be a pipe we wait on
        with open(root / "start.err", "wb") as err:
            start = subprocess.run(
                [DOVECOT, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
        assert start.returncode == 0, (root / "start.err").read_text()
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    imaplib.IMAP4("127.0.0.1", port, timeout=5).logout()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            yield port
        finally:
            subprocess.run(
                [DOVECOT, "-c", str(conf), "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
            pid_file = root / "run" / "master.pid"
            for _ in range(100):  # wait for the master to go (it removes its pid file)
                if not pid_file.exists():
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(Exception):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            log = root / "dovecot.log"
            if log.exists():
                print(log.read_text()[-4000:])  # shown when the test fails
    finally:
        shutil.rmtree(root, ignore_errors=True)


def score_for(api: ApiServer, raw: bytes, user: str) -> float:
    with api.client(api.keys["score"]) as c:
        r = c.post(
            "/v1/score",
            content=raw,
            params={"rcpt": user},
            headers={"Content-Type": "message/rfc822"},
        )
    assert r.status_code == 200, r.text
    return float(r.json()["probability"])


def _uid_of(imap: imaplib.IMAP4, message_id: str) -> bytes:
    typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
    assert typ == "OK" and data[0], data
    return data[0].split()[-1]


def test_moving_into_and_out_of_junk_teaches_that_users_verdicts(
    api: ApiServer, borderline: bytes
) -> None:
    msg = campaign_copy(borderline)
    mid = re.search(rb"^Message-ID: (<[^>]+>)", msg, re.MULTILINE | re.IGNORECASE)
    assert mid is not None
    before = score_for(api, campaign_copy(borderline), USER)
    with dovecot(api) as port:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        try:
            imap.login(USER, PASSWORD)
            typ, _ = imap.append("INBOX", None, None, msg.replace(b"\n", b"\r\n"))
            assert typ == "OK"
            imap.select("INBOX")
            uid = _uid_of(imap, mid.group(1).decode())
            assert b"MOVE" in imap.capability()[1][0]
            # the user moves the message into Junk: a spam report, made before MOVE answers
            typ, data = imap.uid("MOVE", uid, "Junk")
            assert typ == "OK", data
            after_spam = score_for(api, campaign_copy(borderline), USER)
            assert after_spam > before, (before, after_spam)
            # ... and back out of Junk into the inbox: a ham report (a relabel)
            imap.select("Junk")
            uid = _uid_of(imap, mid.group(1).decode())
            typ, data = imap.uid("MOVE", uid, "INBOX")
            assert typ == "OK", data
            after_ham = score_for(api, campaign_copy(borderline), USER)
            assert after_ham < after_spam, (after_spam, after_ham)
        finally:
            with contextlib.suppress(Exception):
                imap.logout()
    recs = user_feedback(api.settings.store_url, USER)
    # both reports are alice's own, through the API's feedback route; the message kept for
    # retraining is the one she moved
    assert sorted((r.label, r.source) for r in recs) == [("ham", "api"), ("spam", "api")]
    assert [r.status for r in recs if r.label == "spam"] == ["personal"]


def test_reports_wait_in_the_queue_while_the_api_is_away(api: ApiServer, tmp_path: Path) -> None:
    """A report the API cannot take is kept (0600 in a 0700 queue) and the move succeeds;
    queued reports are sent oldest first, before the next report and by learn-flush; one
    the API refuses for good is set aside with its reason, never retried forever."""
    key = tmp_path / "key"
    key.write_text(api.create_key("queue-test", "delegate"))
    queue, user = tmp_path / "queue", "carol@example.org"
    down = f"http://127.0.0.1:{free_port()}"
    msg = b"Subject: queued report\nMessage-ID: <q-1@example.org>\n\nwin a prize now\n"

    def run(
        *a: str, url: str = api.base_url, data: bytes = msg
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [MAILSIFT, *a, "--api-url", url, "--key-file", str(key), "--queue-dir", str(queue)],
            input=data, capture_output=True, env=api.env, timeout=120,
        )  # fmt: skip

    first = run("learn-pipe", "spam", "--user", user, url=down)
    assert first.returncode == 0 and first.stdout.startswith(b"queued: spam"), first.stderr
    assert run("learn-pipe", "ham", "--user", user, url=down).returncode == 0
    pending = sorted((queue / "new").iterdir())
    assert len(pending) == 2 and {p.stat().st_mode & 0o777 for p in pending} == {0o600}
    assert queue.stat().st_mode & 0o777 == 0o700
    assert user_feedback(api.settings.store_url, user) == []
    assert run("learn-flush", url=down).returncode == 75  # still away: kept
    assert len(list((queue / "new").iterdir())) == 2
    # one the API will refuse (no such label), queued between them by hand
    bad = queue / "new" / (pending[0].name.replace(".json", "") + "5.json")
    bad.write_text(json.dumps({"label": "eggs", "user": user, "message": "aGk="}))
    flushed = run("learn-flush")
    assert flushed.returncode == 0, flushed.stderr
    assert list((queue / "new").iterdir()) == []
    assert [p.suffix for p in sorted((queue / "failed").iterdir())] == [".json", ".reason"]
    recs = user_feedback(api.settings.store_url, user)
    assert [r.label for r in sorted(recs, key=lambda r: r.feedback_id or 0)] == ["spam", "ham"]
    # queued again while away, then sent before the next report once the API is back
    assert run("learn-pipe", "spam", "--user", user, url=down).returncode == 0
    again = run("learn-pipe", "spam", "--user", "dave@example.org")
    assert again.returncode == 0 and b"(queued)" in again.stdout, again.stderr
    assert list((queue / "new").iterdir()) == []


def test_learn_pipe_failures_are_sysexits(api: ApiServer, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(api.create_key("pipe-test", "delegate"))
    run = lambda *a, data=b"Subject: x\n\nhello\n": subprocess.run(  # noqa: E731
        [MAILSIFT, "learn-pipe", *a], input=data, capture_output=True, env=api.env, timeout=120
    )
    ok = run("ham", "--user", "bob@example.org", "--api-url", api.base_url, "--key-file", str(key))
    assert ok.returncode == 0 and ok.stdout.startswith(b"personal: ham"), ok.stderr
    assert run("eggs", "--user", "b@x.org", "--key-file", str(key)).returncode == 65
    assert (
        run(
            "spam", "--user", "b@x.org", "--api-url", api.base_url, "--key-file", str(key), data=b""
        ).returncode
        == 66
    )
    assert run("spam", "--user", "b@x.org", "--key-file", str(tmp_path / "none")).returncode == 78
    bad = tmp_path / "bad"
    bad.write_text("not-a-key")
    assert (
        run(
            "spam", "--user", "b@x.org", "--api-url", api.base_url, "--key-file", str(bad)
        ).returncode
        == 77
    )
    down = f"http://127.0.0.1:{free_port()}"
    assert (
        run("spam", "--user", "b@x.org", "--api-url", down, "--key-file", str(key)).returncode == 75
    )
    assert httpx.get(api.base_url + "/healthz", timeout=10).status_code == 200
