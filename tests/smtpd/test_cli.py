"""``mailsift tls selfsigned``, ``mailsift accounts ...`` and ``mailsift serve smtp`` (a real
subprocess, talked to with swaks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mailsift.smtpd.accounts import Account, Accounts
from mailsift.store import open_store
from tests.fixtures.ports import free_port
from tests.fixtures.smtp import (
    CHECKS_OFF_ENV,
    OUTSIDE_IP,
    TEST_HASHER,
    swaks,
    wait_port,
    write_accounts_file,
)

MAILSIFT = str(Path(sys.executable).with_name("mailsift"))


def _cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run([MAILSIFT, *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip


def test_tls_selfsigned(tmp_path: Path) -> None:
    r = _cli("tls", "selfsigned", "--out", str(tmp_path / "tls"), "--hostname", "mx.example")
    assert r.returncode == 0, r.stderr
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "CN = mx.example" in text and "DNS:mx.example" in text
    again = _cli("tls", "selfsigned", "--out", str(tmp_path / "tls"))
    assert again.returncode == 1 and "exists" in again.stderr


def test_accounts_commands(tmp_path: Path) -> None:
    """The commands work on the store (``store.url``, here ``<var_dir>/mailsift.db``); the
    accounts file given with ``--file`` is imported into it by the first command, once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    env["MAILSIFT_PATHS__VAR_DIR"] = str(tmp_path / "var")
    f = tmp_path / "acc.json"
    old_hash = TEST_HASHER.hash("0ld")
    write_accounts_file(f, [Account("old@example.org", old_hash, created=1.0)])
    assert _cli("accounts", "add", "Carl@Example.org", "--admin", "--password-stdin", "--file",
                str(f), stdin="s3cret\n", env=env).returncode == 0  # fmt: skip
    dup = _cli("accounts", "add", "carl@example.org", "--password-stdin", stdin="x\n", env=env)
    assert dup.returncode == 1 and "exists" in dup.stderr
    store = open_store(f"sqlite:///{tmp_path / 'var' / 'mailsift.db'}")
    try:
        assert Accounts(store).verify("carl@example.org", "s3cret")
        assert Accounts(store).verify("old@example.org", "0ld")  # imported from the file
        assert _cli("accounts", "passwd", "carl@example.org", "--password-stdin",
                    stdin="n3w\n", env=env).returncode == 0  # fmt: skip
        assert _cli("accounts", "disable", "carl@example.org", env=env).returncode == 0
        out = _cli("accounts", "list", env=env).stdout
        assert out.startswith("carl@example.org\tdisabled\tadmin")
        assert "old@example.org\tactive\tuser" in out
        acc = Accounts(store)
        assert not acc.verify("carl@example.org", "n3w")
        _cli("accounts", "enable", "carl@example.org", env=env)
        assert acc.verify("carl@example.org", "n3w")
        missing = _cli("accounts", "disable", "nobody@example.org", env=env)
        assert missing.returncode == 1
        # the file is not read again: an account added to it later is not imported
        write_accounts_file(f, [Account("new@example.org", old_hash, created=2.0)])
        out = _cli("accounts", "list", "--file", str(f), env=env).stdout
        assert "new@example.org" not in out
    finally:
        store.close()


def _serve_env(tmp_path: Path, port: int, sub: int, sink_port: int, tls: tuple[Path, Path],
               **extra: str) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    env.update({
        "MAILSIFT_PATHS__VAR_DIR": str(tmp_path / "var"),
        "MAILSIFT_SMTP__PORT": str(port),
        "MAILSIFT_SMTP__SUBMISSION_PORT": str(sub),
        "MAILSIFT_SMTP__NEXT_HOP_PORT": str(sink_port),
        "MAILSIFT_SMTP__RELAY_NETWORKS": '["127.0.0.1/32"]',
        "MAILSIFT_SMTP__TLS_CERT": str(tls[0]),
        "MAILSIFT_SMTP__TLS_KEY": str(tls[1]),
        **CHECKS_OFF_ENV,
        "MAILSIFT_DNS__NAMESERVERS": '["127.0.0.1"]',
        "MAILSIFT_DNS__PORT": str(free_port()),
        **extra,
    })  # fmt: skip
    return env


class Serve:
    """``mailsift serve smtp`` in a subprocess; stopped with SIGTERM, must exit 0."""

    def __init__(self, tmp_path: Path, env: dict[str, str], port: int, sub: int) -> None:
        self.log_path = tmp_path / "serve.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([MAILSIFT, "serve", "smtp"], env=env, stdout=self.log,
                                     stderr=self.log)  # fmt: skip
        try:
            wait_port("127.0.0.1", port, timeout=180)
            wait_port("127.0.0.1", sub, timeout=10)
        except TimeoutError:
            self.stop()
            raise AssertionError(self.log_path.read_text()) from None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        return self.proc.returncode


def test_serve_smtp_scorer_down_is_a_tempfail(tmp_path: Path, smtp_sink, smtp_tls_files) -> None:
    """Scoring over HTTP against nothing: every message gets 451, none is accepted unscored."""
    port, sub = free_port(), free_port()
    env = _serve_env(tmp_path, port, sub, smtp_sink.port, smtp_tls_files,
                     MAILSIFT_API__SCORER_URL=f"http://127.0.0.1:{free_port()}")  # fmt: skip
    serve = Serve(tmp_path, env, port, sub)
    try:
        r = swaks("--server", f"127.0.0.1:{port}", "--from", "a@example.org",
                  "--to", "bob@mailsift.test", "--local-interface", OUTSIDE_IP)  # fmt: skip
        assert r.returncode != 0
        assert "451 4.3.0" in r.stdout, r.stdout
        r = swaks("--server", f"127.0.0.1:{port}", "--from", "a@example.org",
                  "--to", "x@remote.example", "--local-interface", OUTSIDE_IP)  # fmt: skip
        assert "550 5.7.1 relaying denied" in r.stdout, r.stdout
    finally:
        code = serve.stop()
    assert code == 0, serve.log_path.read_text()
    assert smtp_sink.files() == []


def test_serve_smtp_scores_in_process(tmp_path: Path, smtp_sink, smtp_tls_files,
                                      small_model_dir: Path, test_settings) -> None:  # fmt: skip
    port, sub = free_port(), free_port()
    env = _serve_env(
        tmp_path,
        port,
        sub,
        smtp_sink.port,
        smtp_tls_files,
        MAILSIFT_MODEL__PATH=str(small_model_dir),
        MAILSIFT_RULES__CACHE_DIR=str(test_settings.rules_cache_dir),
        MAILSIFT_RULES__USE_STOCK="false",
    )  # fmt: skip  (project rules: fast start)
    serve = Serve(tmp_path, env, port, sub)
    try:
        # a personal note as a mail client writes one (names on the addresses, a few lines):
        # the small test model calls a one-line body from a bare address spammy
        r = swaks("--server", f"127.0.0.1:{port}", "--from", "a@example.org",
                  "--to", "bob@mailsift.test", "--local-interface", OUTSIDE_IP,
                  "--header", "Subject: lunch on friday?",
                  "--header", "From: Al Smith <a@example.org>",
                  "--header", "To: Bob Jones <bob@mailsift.test>",
                  "--body", "Hi Bob,\n\nare we still on for lunch on Friday? I booked a table at"
                            " the Italian place\nnear the office for half past twelve.\n\n"
                            "Cheers,\nAl\n")  # fmt: skip
    finally:
        code = serve.stop()
    assert code == 0, serve.log_path.read_text()
    assert "250 2.0.0 OK: delivered as" in r.stdout, r.stdout
    (m,) = smtp_sink.wait_for(1)
    assert m["X-Spam-Status"].startswith("No, score=")
    assert "version=mailsift-" in m["X-Spam-Status"]
    assert m["Authentication-Results"] == "mx.mailsift.test; none"
