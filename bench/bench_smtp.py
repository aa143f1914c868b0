"""SMTP filter throughput: Postfix's smtp-source through the filter (scoring on) to smtp-sink.

    .venv/bin/python -m bench.bench_smtp [--sessions 20] [--messages 2000] [--workers 1,2,0]

1. A message of corpus size: the SpamAssassin-corpus ham message closest to the corpus
   median size that the model scores HAM (so every copy is delivered, none held).
2. **direct**: ``smtp-source -s 20 -m 2000 -N -F msg`` straight into ``smtp-sink`` (the
   ceiling: what the load generator and the sink do alone).
3. **filter**: the same load into ``mailsift serve smtp --workers W`` (the real command, in
   before-queue proxy mode, scoring in-process, each worker with the SQLite store recording
   every verdict, no DNS checks) forwarding to a fresh ``smtp-sink``, for each W of
   ``--workers`` (0: one per core).
4. Exactly once: ``-N`` gives every message its own recipient (``<n>bob@...``); each run's
   sink must hold ``--messages`` files with as many distinct recipients.

Each path runs ``--rounds`` times, in alternating order, so a change in the machine's other
load falls on all of them. Reported: messages/s (pooled over the rounds), the filter's
fraction of direct speed, arrivals, duplicates, and the largest worker RSS. Everything
(load generator, filter, sink) shares this machine's CPUs: figures are noisy and
conservative.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mailsift.config import Settings, load_settings
from tests.fixtures.ports import free_port
from tests.fixtures.smtp import CHECKS_OFF_ENV

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
_RCPT_RE = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.MULTILINE)


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} never opened")


class Sink:
    def __init__(self, root: Path) -> None:
        self.dir = root
        self.dir.mkdir(parents=True)
        self.port = free_port()
        user = pwd.getpwuid(os.getuid()).pw_name
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", user, "-d", f"{self.dir}/%M.", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)

    def recipients(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for p in self.dir.iterdir():
            for m in _RCPT_RE.finditer(p.read_bytes()[:4096]):
                c[m.group(1).decode()] += 1
        return c


def source(port: int, msg_file: Path, sessions: int, messages: int) -> float:
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-N", "-F", str(msg_file),
           "-f", "sender@example.org", "-t", "bob@mailsift.test", "-M", "bench.example",
           f"127.0.0.1:{port}"]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        print(f"smtp-source exited {r.returncode}: {r.stderr.strip()[:500]}", file=sys.stderr)
    return elapsed


def settle(sink: Sink, expected: int, timeout: float = 30.0) -> Counter[str]:
    deadline = time.monotonic() + timeout
    rc = sink.recipients()
    while sum(rc.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        rc = sink.recipients()
    return rc


def pick_message(settings: Settings, scorer, target_rank: float = 0.5) -> bytes:  # type: ignore[no-untyped-def]
    """A ham of about median corpus size that the model scores HAM."""
    from mailsift.pipeline.corpus import load_messages
    from mailsift.verdict import Action

    _, raws, y = load_messages(Path(str(settings.paths.corpus)))
    sizes = sorted(len(r) for r in raws)
    median = sizes[int(len(sizes) * target_rank)]
    hams = sorted((abs(len(r) - median), i) for i, r in enumerate(raws) if y[i] == 0)
    for _, i in hams[:200]:
        if scorer.score(raws[i]).action is Action.HAM:
            return raws[i]
    raise SystemExit("no median-size ham scored HAM: is the model sane?")


def quick_model(settings: Settings, out: Path) -> Path:
    """Train a small model (1,500 corpus messages) when no serving model exists."""
    import numpy as np

    from mailsift.classifier.model import train_model
    from mailsift.pipeline.corpus import load_messages
    from mailsift.pipeline.extract import extract_raws

    _, raws, y = load_messages(Path(str(settings.paths.corpus)))
    rng = np.random.default_rng(7)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == 0))[:1000],
                          rng.permutation(np.flatnonzero(y == 1))[:500]])  # fmt: skip
    samples = extract_raws([raws[i] for i in idx], settings, n_jobs=2)
    model = train_model(samples, y[idx], None, settings)
    model.save(out, {"training_data": {"source": "bench quick model", "messages": len(idx)}})
    return out


def filter_env(
    settings: Settings, port: int, sink_port: int, sessions: int, workers: int
) -> dict[str, str]:
    """The environment of ``mailsift serve smtp`` for a run: proxy mode in front of the
    sink, scoring in-process with ``settings``' model and rules cache, a var dir (SQLite
    store recording every verdict) of its own, no DNS or network checks and no
    greylisting (a check that answers 4xx would turn the bench into a retry test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    env.update(
        {
            "MAILSIFT_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "MAILSIFT_STORE__URL": "",
            "MAILSIFT_MODEL__PATH": str(settings.model.path),
            "MAILSIFT_RULES__CACHE_DIR": str(settings.rules_cache_dir),
            "MAILSIFT_SMTP__PORT": str(port),
            "MAILSIFT_SMTP__SUBMISSION_PORT": str(free_port()),  # no TLS files: not served
            "MAILSIFT_SMTP__NEXT_HOP_PORT": str(sink_port),
            "MAILSIFT_SMTP__MODE": "proxy",
            "MAILSIFT_SMTP__WORKERS": str(workers),
            # headroom: a connection counts until its worker has read the client's close, and
            # smtp-source reconnects at once (a busy worker reads it late): not what is measured
            "MAILSIFT_SMTP__MAX_CONNECTIONS_PER_IP": str(4 * sessions),
            "MAILSIFT_SMTP__MAX_COMMANDS_PER_SESSION": "100000",
            "MAILSIFT_SMTP__RELAY_NETWORKS": '["127.0.0.1/32"]',
            **CHECKS_OFF_ENV,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    return env


def through_filter(
    settings: Settings, workers: int, msg_file: Path, s: int, n: int, root: Path
) -> tuple[Counter[str], float, float]:
    """The load through ``mailsift serve smtp --workers W`` (a real process, proxy mode)
    to a fresh smtp-sink; returns (recipients arrived, seconds, largest worker RSS MB)."""
    sink = Sink(root / "sink")
    port = free_port()
    log_path = root / "filter.log"
    env = filter_env(settings, port, sink.port, s, workers)
    mailsift = str(Path(sys.executable).with_name("mailsift"))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [mailsift, "serve", "smtp", "--workers", str(workers), "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 600
        while b"mailsift SMTP filter on" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the filter did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.1)
        elapsed = source(port, msg_file, s, n)
        got = settle(sink, n)
        rss = max((_rss_mb(p) for p in _workers(proc.pid, workers)), default=0.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        sink.stop()
    return got, elapsed, rss


def _workers(pid: int, n: int) -> list[int]:
    """The processes that serve: the workers (children), or the command itself (one)."""
    if n == 1:
        return [pid]
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_smtp")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument(
        "--workers",
        default="1,2,0",
        help="worker counts of the filter, comma-separated (0: one per core, the default)",
    )
    ap.add_argument("--rounds", type=int, default=2, help="runs of each path, alternating")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: serving)")
    args = ap.parse_args(argv)
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            sys.exit(f"{tool} missing: install Debian's postfix package")

    from mailsift.smtpd.workers import default_workers

    counts: list[int] = []
    for w in args.workers.split(","):
        c = int(w) or default_workers()
        if c not in counts:
            counts.append(c)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    base = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    try:
        from mailsift.pipeline.registry import resolve_serving_model_dir

        model_dir = args.model or resolve_serving_model_dir(base)
        note = "given model" if args.model else "serving model"
        if model_dir is None:
            note = "quick model (1,500 corpus messages; no serving model found)"
            model_dir = quick_model(base, tmp / "model")
        settings = base.model_copy(
            update={
                "paths": base.paths.model_copy(update={"var_dir": tmp / "var"}),
                "store": base.store.model_copy(update={"url": ""}),
                "model": base.model.model_copy(update={"path": Path(model_dir).resolve()}),
                "rules": base.rules.model_copy(
                    update={"cache_dir": base.rules_cache_dir.resolve()}
                ),
            }
        )
        (tmp / "var").mkdir()
        from mailsift.classifier.scorer import Scorer
        from mailsift.pipeline.registry import serving_model_dir

        scorer = Scorer.from_model_dir(serving_model_dir(settings), settings)
        raw = pick_message(settings, scorer)
        msg_file = tmp / "message.eml"
        msg_file.write_bytes(raw)
        n, s = args.messages, args.sessions
        print(f"message: {len(raw)} bytes (corpus median-size ham); {n} messages, {s} sessions")
        print(f"model: {note}: {model_dir}")
        t0 = time.perf_counter()
        for _ in range(20):
            scorer.score(raw)
        score_ms = (time.perf_counter() - t0) / 20 * 1000
        del scorer

        paths = ["direct", *counts]
        runs: dict[object, list[tuple[Counter[str], float, float]]] = {p: [] for p in paths}
        k = 0
        for r in range(args.rounds):
            for p in paths if r % 2 == 0 else list(reversed(paths)):
                k += 1
                root = tmp / f"run{k}"
                root.mkdir()
                if p == "direct":
                    sink = Sink(root / "sink")
                    t = source(sink.port, msg_file, s, n)
                    got = settle(sink, n)
                    sink.stop()
                    runs[p].append((got, t, 0.0))
                else:
                    runs[p].append(through_filter(settings, int(p), msg_file, s, n, root))
                got, t, _ = runs[p][-1]
                print(f"round {r + 1} {p}: {sum(got.values()) / t:.0f} msg/s", file=sys.stderr)
                shutil.rmtree(root, ignore_errors=True)

        def rate(p: object) -> float:  # pooled over the rounds
            return sum(sum(g.values()) for g, _, _ in runs[p]) / sum(t for _, t, _ in runs[p])

        rate_d = rate("direct")
        print()
        print(
            "| path | workers | arrived | distinct | duplicates | seconds (each run) "
            "| messages/s | of direct | worker RSS MB |"
        )
        print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
        ok = True
        for p in paths:
            label = "smtp-source -> smtp-sink (direct)" if p == "direct" else (
                "smtp-source -> mailsift serve smtp (scoring) -> smtp-sink")  # fmt: skip
            arrived = sum(sum(g.values()) for g, _, _ in runs[p])
            distinct = sum(len(g) for g, _, _ in runs[p])
            dups = sum(c - 1 for g, _, _ in runs[p] for c in g.values() if c > 1)
            secs = ", ".join(f"{t:.1f}" for _, t, _ in runs[p])
            rss = max(x for _, _, x in runs[p])
            print(f"| {label} | {'-' if p == 'direct' else p} | {arrived} | {distinct} | {dups} "
                  f"| {secs} | {rate(p):.0f} | {rate(p) / rate_d:.1%} "
                  f"| {'-' if p == 'direct' else f'{rss:.0f}'} |")  # fmt: skip
            for g, _, _ in runs[p]:
                ok = ok and sum(g.values()) == n and len(g) == n
        print()
        print(f"scorer alone on this message: {score_ms:.1f} ms (in-process, one thread)")
        print(f"exactly once: {'yes' if ok else 'NO'} (every run: {n} arrived, all distinct)")
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
        print(f"Command: `.venv/bin/python -m bench.bench_smtp {' '.join(sys.argv[1:])}`")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
