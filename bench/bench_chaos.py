"""Chaos bench: mixed SMTP + HTTP load while the dependencies are killed in turn.

    .venv/bin/python -m bench.bench_chaos [--model DIR] [--steady 7] [--down 10] [--after 7]

Everything runs on loopback, each dependency an instance of the bench's own: PostgreSQL
(the machine's server, a fresh database reached through a killable TCP proxy), a
``redis-server`` on a port of its own (greylisting), ``clamd`` (antivirus), ``unbound``
(every DNS check) and Postfix's ``smtp-sink`` (the next hop). ``mailsift serve api`` (one
worker, API keys checked against the store on every request) and ``mailsift serve smtp``
(spool mode, every check on) run as real processes on them.

Load (closed loop, bounded): two SMTP clients inside the relay network (antivirus, lists,
scoring, spool), one outside it (greylisted first, then retried as an MTA would, plus the
DNS checks), two HTTP clients scoring messages and reporting feedback. While it runs, each
dependency in turn is killed (the proxy cut, or the process SIGKILLed), left down for
``--down`` seconds, and started again; the time until the services use it again is
measured by a probe (the first request that needs it and succeeds; for DNS, the filter's own
"dependency dns is back" log line). With the defaults the whole run lasts about 2 minutes.

Printed: HTTP requests and SMTP replies by status, the 5xx answers other than 503 (must be
0; 503 without Retry-After counted too), messages acknowledged (250) and lost (must be 0),
duplicates delivered, feedback acknowledged (200) and lost (must be 0), and the recovery time
after each dependency returned (target < 2 s). The exit status is 1 when a "must" fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from base64 import b64encode
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from mailsift.config import PROJECT_ROOT, Settings
from mailsift.process import settings_env
from tests.checks.helpers import make_settings
from tests.fixtures.clamd import ClamdServer, start_clamd
from tests.fixtures.dns import UnboundServer, make_dkim_key, start_unbound, stop_process
from tests.fixtures.dns import _wait_until_answers as wait_until_answers
from tests.fixtures.ports import free_port
from tests.fixtures.process import ApiProcess, create_key
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.smtp import SMTP_SINK, wait_port

PG_ADMIN = os.environ.get("MAILSIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MAILSIFT = str(Path(sys.executable).with_name("mailsift"))
INSIDE, OUTSIDE = "127.0.0.1", "127.0.0.2"
BODY = (
    "Hi Bob,\n\nare we still on for lunch on Friday? I booked a table at the Italian place\n"
    "near the office for half past twelve.\n\nCheers,\nAl\n"
)


def message(mid: str) -> bytes:
    return (
        f"From: Al Smith <al@loop.test>\r\nTo: Bob Jones <bob@mailsift.test>\r\n"
        f"Subject: lunch on friday?\r\nMessage-ID: {mid}\r\n\r\n{BODY}"
    ).encode()


# ---- the dependencies ------------------------------------------------------------------------


def kill_hard(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL (no clean shutdown: a dependency crashing) and wait for the process to go."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


class PortDaemon:
    """A dependency run as a process of ours on a free loopback port: ``_spawn`` starts it
    and waits for the port; ``kill`` kills it hard; a later ``start`` uses the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

    def kill(self) -> None:
        kill_hard(self.proc)


class Redis(PortDaemon):
    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)]
        )  # fmt: skip


class Unbound:
    """unbound with the test zones; restarted on the same port and configuration."""

    def __init__(self, workdir: Path) -> None:
        self.server: UnboundServer = start_unbound(workdir, make_dkim_key())
        self.conf = workdir / "unbound.conf"

    def kill(self) -> None:
        kill_hard(self.server.process)

    def start(self) -> None:
        with open(self.conf.with_name("unbound.log"), "ab") as log:
            self.server.process = subprocess.Popen(
                ["/usr/sbin/unbound", "-d", "-c", str(self.conf)], stdout=log, stderr=log
            )
        wait_until_answers(self.server, time.monotonic() + 15)


class Clamd:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: ClamdServer = start_clamd(workdir)

    def kill(self) -> None:
        kill_hard(self.server.process)
        self.server.unix_socket.unlink(missing_ok=True)

    def start(self) -> None:
        self.server = start_clamd(self.workdir)


class SmtpSink(PortDaemon):
    """smtp-sink on a fixed port; every message one file under ``root`` (kept across kills)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        d = self.root / f"run{self.runs}"
        d.mkdir(parents=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        self._spawn([SMTP_SINK, "-u", user, "-d", f"{d}/%M.", f"127.0.0.1:{self.port}", "256"])

    def count(self) -> int:
        return sum(1 for p in self.root.rglob("*") if p.is_file())

    def message_ids(self) -> Counter[str]:
        ids: Counter[str] = Counter()
        for p in self.root.rglob("*"):
            if not p.is_file():
                continue
            for line in p.read_bytes().split(b"\n"):
                if line.lower().startswith(b"message-id:"):
                    ids[line.split(b":", 1)[1].strip().decode()] += 1
                    break
        return ids


# ---- load ------------------------------------------------------------------------------------


@dataclass
class Tally:
    http: Counter[int] = field(default_factory=Counter)
    smtp: Counter[int] = field(default_factory=Counter)
    http_5xx: list[str] = field(default_factory=list)  # other than 503
    no_retry_after: int = 0
    smtp_5xx: list[str] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    feedback_acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def smtp_client(port: int, source: str, stop: threading.Event, t: Tally, tag: str) -> None:
    """Sends one message after another; a 4xx is retried (as an MTA would) after a pause."""
    n = 0
    retry: str | None = None
    while not stop.is_set():
        mid = retry or f"<{tag}-{n}-{uuid.uuid4().hex[:8]}@loop.test>"
        n += 0 if retry else 1
        try:
            with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
                c.ehlo("outside.loop.test" if source == OUTSIDE else "inside.loop.test")
                code, text = c.mail("al@loop.test")
                if code == 250:
                    code, text = c.rcpt("bob@mailsift.test")
                if code == 250:
                    code, text = c.data(message(mid))
        except (OSError, smtplib.SMTPException) as exc:
            code, text = 0, str(exc).encode()
        with t.lock:
            t.smtp[code] += 1
            if code == 250:
                t.acked.add(mid)
            elif code >= 500:
                t.smtp_5xx.append(f"{code} {text.decode(errors='replace')[:120]}")
        retry = mid if 400 <= code < 500 or code == 0 else None
        stop.wait(0.6 if retry else 0.05)


def http_client(base: str, keys: dict[str, str], stop: threading.Event, t: Tally, tag: str) -> None:
    n = 0
    with httpx.Client(base_url=base, timeout=60) as c:
        while not stop.is_set():
            n += 1
            raw = message(f"<{tag}-{n}@loop.test>")
            try:
                if n % 4 == 0:
                    r = c.post(
                        "/v1/feedback",
                        json={"label": "ham", "user": f"{tag}@mailsift.test",
                              "message": b64encode(raw).decode()},
                        headers={"Authorization": f"Bearer {keys['feedback']}"},
                    )  # fmt: skip
                else:
                    r = c.post(
                        "/v1/score",
                        content=raw,
                        headers={"Authorization": f"Bearer {keys['score']}",
                                 "Content-Type": "message/rfc822"},
                    )  # fmt: skip
            except httpx.HTTPError as exc:
                with t.lock:
                    t.http[0] += 1
                    t.http_5xx.append(f"transport error {exc!r}"[:160])
                stop.wait(0.2)
                continue
            with t.lock:
                t.http[r.status_code] += 1
                if r.status_code >= 500 and r.status_code != 503:
                    t.http_5xx.append(f"{r.status_code} {r.text[:120]}")
                if r.status_code == 503 and "retry-after" not in r.headers:
                    t.no_retry_after += 1
                if r.status_code == 200 and n % 4 == 0:
                    t.feedback_acked += 1
            stop.wait(0.02)


# ---- recovery probes -------------------------------------------------------------------------


def until(probe: Callable[[], bool], limit: float = 60.0) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if probe():
                return time.monotonic() - start
        except Exception:  # a probe that fails: not recovered yet
            pass
        time.sleep(0.05)
    return None


def smtp_probe(port: int, source: str, full: bool) -> bool:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=10) as c:
        c.ehlo("probe.loop.test")
        if c.mail("al@loop.test")[0] != 250:
            return False
        code, text = c.rcpt("bob@mailsift.test")
        if not full:  # the greylist answered (deferred or passed): Redis is back
            return code == 250 or b"Greylisted" in text
        return code == 250 and c.data(message(f"<probe-{uuid.uuid4().hex}@loop.test>"))[0] == 250


def log_recovery(
    log: Path, what: str, started: float, answering: float, limit: float = 60.0
) -> float | None:
    """Seconds from ``answering`` (the dependency answers again; it was restarted at
    ``started``) to the filter's "dependency <what> is back" line (0 when the filter was
    using it before the bench saw it answer)."""
    pat = re.compile(rf"^(\S+ \S+) WARNING mailsift.outages: dependency {what} is back")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            m = pat.match(line)
            if m:
                when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if when >= started - 0.001:
                    return max(0.0, when - answering)
        time.sleep(0.1)
    return None


# ---- the run ---------------------------------------------------------------------------------


def small_model(tmp: Path, settings: Settings) -> Path:
    """A model trained on a stratified sample of the corpus (as the tests' small model)."""
    import numpy as np

    from mailsift.classifier.model import train_model
    from mailsift.classifier.scorer import load_rules
    from mailsift.pipeline.corpus import load_messages
    from mailsift.pipeline.extract import samples_of

    if settings.paths.corpus is None:
        sys.exit("no corpus: set MAILSIFT_CORPUS, or pass --model")
    _, raws, y = load_messages(Path(settings.paths.corpus))
    rng = np.random.default_rng(20030228)
    idx = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y == 0))[:300],
            rng.permutation(np.flatnonzero(y == 1))[:200],
        ]
    )
    samples = samples_of([raws[i] for i in idx], settings, load_rules(settings))
    out = tmp / "model"
    train_model(samples, y[idx], None, settings).save(
        out, {"training_data": {"messages": len(idx)}}
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: train one)")
    ap.add_argument("--steady", type=float, default=7.0, help="seconds of load before a kill")
    ap.add_argument("--down", type=float, default=10.0, help="seconds a dependency stays down")
    ap.add_argument("--after", type=float, default=7.0, help="seconds of load after recovery")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="mailsift-chaos-"))
    db = f"mailsift_chaos_{os.getpid()}"
    procs: list[Any] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        pg = TcpProxy(5432).start()
        procs.append(pg)
        redis = Redis(tmp / "redis")
        redis.start()
        procs.append(redis)
        clamd = Clamd(tmp / "clamd")
        procs.append(clamd)
        dns = Unbound(tmp / "unbound")
        procs.append(dns)
        sink = SmtpSink(tmp / "sink")
        sink.start()
        procs.append(sink)

        smtp_port, metrics_port = free_port(), free_port()
        base = PG_ADMIN.rsplit("/", 1)[0]
        settings = make_settings(
            dns.server.settings(timeout=1.0, session_budget=4.0),
            tmp / "var",
            store={"url": f"{base.replace(':5432', f':{pg.port}')}/{db}"},
            rules={"use_stock": False, "cache_dir": str(PROJECT_ROOT / "var" / "test-cache" / "rules")},
            antivirus={"clamd_socket": clamd.server.unix_address, "timeout": 5.0},
            greylist={"enabled": True, "delay": 1.0, "backend": f"redis://127.0.0.1:{redis.port}/0"},
            feedback={"per_user_per_hour": 1_000_000, "per_source_per_hour": 1_000_000},
            api={"key_cache_seconds": 0.0, "require_keys": True},
            smtp={
                "port": smtp_port, "submission_port": None, "mode": "spool",
                "next_hop_port": sink.port, "relay_networks": ["127.0.0.1/32"],
                "spool_retry_initial": 0.2, "spool_retry_max": 1.0, "delivery_timeout": 10.0,
                "check_timeout": 10.0, "metrics_port": metrics_port, "hostname": "mx.mailsift.test",
                "local_domains": ["mailsift.test"],
            },
        )  # fmt: skip
        model = args.model or small_model(tmp, settings)
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"path": model.resolve()})},
            deep=True,
        )
        settings.paths.var_dir.mkdir(parents=True, exist_ok=True)
        api = ApiProcess(settings, workers=1)
        keys = {s: create_key(api.env, f"chaos-{s}", s) for s in ("score", "feedback")}
        api.start()
        procs.append(api)
        flog = tmp / "filter.log"
        with open(flog, "wb") as out:
            filt = subprocess.Popen(
                [MAILSIFT, "serve", "smtp"], env=settings_env(settings), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(filt)
        wait_port("127.0.0.1", smtp_port, timeout=300)
        print(
            f"services up (var {tmp}); load for about {5 * (args.steady + args.down + args.after):.0f} s"
        )

        tally = Tally()
        loaders = [
            threading.Thread(target=smtp_client, args=(smtp_port, INSIDE, stop, tally, "in1")),
            threading.Thread(target=smtp_client, args=(smtp_port, INSIDE, stop, tally, "in2")),
            threading.Thread(target=smtp_client, args=(smtp_port, OUTSIDE, stop, tally, "out")),
            threading.Thread(target=http_client, args=(api.base_url, keys, stop, tally, "h1")),
            threading.Thread(target=http_client, args=(api.base_url, keys, stop, tally, "h2")),
        ]
        threads.extend(loaders)
        for th in loaders:
            th.start()

        def api_probe() -> bool:
            r = httpx.post(
                api.base_url + "/v1/score",
                content=message("<probe@loop.test>"),
                headers={"Authorization": f"Bearer {keys['score']}",
                         "Content-Type": "message/rfc822"},
                timeout=10,
            )  # fmt: skip
            return r.status_code == 200

        def delivered_after(count: int) -> Callable[[], bool]:
            return lambda: sink.count() > count

        recovery: dict[str, float | None] = {}
        chaos: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            ("postgresql", pg.kill, pg.restore),
            ("redis", redis.kill, redis.start),
            ("clamd", clamd.kill, clamd.start),
            ("dns", dns.kill, dns.start),
            ("next_hop", sink.kill, sink.start),
        ]
        for name, kill, restore in chaos:
            time.sleep(args.steady)
            kill()
            print(f"  {name} killed")
            time.sleep(args.down)
            before = sink.count()
            started = time.time()
            restore()  # returns once the dependency answers again
            wall = time.time()
            if name == "postgresql":
                took = until(api_probe)
            elif name == "redis":
                took = until(lambda: smtp_probe(smtp_port, OUTSIDE, full=False))
            elif name == "clamd":
                took = until(lambda: smtp_probe(smtp_port, INSIDE, full=True))
            elif name == "dns":
                took = log_recovery(flog, "dns", started, wall)
            else:
                took = until(delivered_after(before))
            recovery[name] = took
            print(f"  {name} back: recovered in {took if took is None else round(took, 2)} s")
            time.sleep(args.after)
        stop.set()
        for th in threads:
            th.join(60)
        # the spool delivers what it accepted; then count
        until(lambda: not any((settings.spool_dir / "queue").glob("*.msg")), 60)
        time.sleep(0.5)
        got = sink.message_ids()
        lost = sorted(tally.acked - set(got))
        duplicates = sum(n - 1 for mid, n in got.items() if mid in tally.acked)
        with psycopg.connect(f"{base}/{db}", autocommit=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM feedback WHERE user_name IN (%s, %s)",
                ["h1@mailsift.test", "h2@mailsift.test"],
            ).fetchone()
        feedback_rows = int(row[0]) if row else 0
        feedback_lost = max(0, tally.feedback_acked - feedback_rows)

        print("\nHTTP requests by status:", dict(sorted(tally.http.items())))
        print("SMTP replies by code (0: connection failed):", dict(sorted(tally.smtp.items())))
        print(f"HTTP 5xx other than 503: {len(tally.http_5xx)} (must be 0)"
              + (f" e.g. {tally.http_5xx[:3]}" if tally.http_5xx else ""))  # fmt: skip
        print(f"HTTP 503 without Retry-After: {tally.no_retry_after} (must be 0)")
        print(f"SMTP 5xx to good mail: {len(tally.smtp_5xx)} (must be 0)"
              + (f" e.g. {tally.smtp_5xx[:3]}" if tally.smtp_5xx else ""))  # fmt: skip
        print(f"messages acknowledged (250): {len(tally.acked)}, lost: {len(lost)} (must be 0)")
        print(f"duplicates delivered: {duplicates}")
        print(f"feedback acknowledged (200): {tally.feedback_acked}, lost: {feedback_lost}"
              " (must be 0)")  # fmt: skip
        print("recovery after the dependency returned (target < 2 s):")
        for name, took in recovery.items():
            print(f"  {name:<11} {'not recovered' if took is None else f'{took:.2f} s'}")
        ok = (
            not tally.http_5xx
            and not tally.no_retry_after
            and not tally.smtp_5xx
            and not lost
            and not feedback_lost
            and all(v is not None and v < 2.0 for v in recovery.values())
        )
        print("result:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        stop.set()
        for th in threads:
            th.join(5)
        for p in reversed(procs):
            with contextlib.suppress(Exception):
                if isinstance(p, subprocess.Popen):
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGTERM)
                        p.wait(30)
                elif isinstance(p, ApiProcess):
                    p.stop()
                elif isinstance(p, Unbound):
                    stop_process(p.server.process)
                elif isinstance(p, Clamd):
                    p.server.stop()
                else:
                    p.kill()
        with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if os.environ.get("CHAOS_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
