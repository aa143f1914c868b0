"""SMTP filter throughput: Postfix's smtp-source through the filter (scoring on) to smtp-sink.

    .venv/bin/python -m bench.bench_smtp [--sessions 20] [--messages 5000] [--model DIR]

1. A message of corpus size: the SpamAssassin-corpus ham message closest to the corpus
   median size that the model scores HAM (so every copy is delivered, none held).
2. **direct**: ``smtp-source -s 20 -m 5000 -N -F msg`` straight into ``smtp-sink`` (the
   ceiling: what the load generator and the sink do alone).
3. **filter**: the same load into the mailsift filter (in-process ``FilterServer``, before-
   queue proxy mode, the in-process ``ScoringService`` with its own SQLite store recording
   every verdict, no DNS checks) forwarding to a fresh ``smtp-sink``.
4. Exactly once: ``-N`` gives every message its own recipient (``<n>bob@...``); the sink's
   dumps must hold 5,000 files with 5,000 distinct recipients.

Reported: messages/s for both, the filter's fraction of direct speed, arrivals, duplicates.
Everything (load generator, filter, sink) shares this machine's CPUs: figures are noisy and
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


def through_filter(
    settings: Settings, service: object, msg_file: Path, s: int, n: int, root: Path
) -> tuple[Counter[str], float]:
    """The load through an in-process FilterServer (proxy mode) to a fresh smtp-sink."""
    from mailsift.smtpd.server import FilterServer

    sink = Sink(root)
    fsettings = settings.model_copy(
        update={
            "smtp": settings.smtp.model_copy(
                update={
                    "port": 0,
                    "submission_port": None,
                    "next_hop_port": sink.port,
                    "mailboxes_file": None,
                    "accounts_file": None,
                    "max_connections_per_ip": s + 5,
                    "max_commands_per_session": 100_000,
                }
            )
        }
    )
    server = FilterServer(fsettings, service).start()
    try:
        elapsed = source(server.port or 0, msg_file, s, n)
        got = settle(sink, n)
    finally:
        server.stop()
        sink.stop()
    return got, elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_smtp")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: serving)")
    ap.add_argument(
        "--also-unscored",
        action="store_true",
        help="also run the filter without scoring (the SMTP path's own cost)",
    )
    args = ap.parse_args(argv)
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            sys.exit(f"{tool} missing: install Debian's postfix package")

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
        from mailsift.service import ScoringService

        service = ScoringService(settings)
        raw = pick_message(settings, service.scorer)
        msg_file = tmp / "message.eml"
        msg_file.write_bytes(raw)
        n, s = args.messages, args.sessions
        print(f"message: {len(raw)} bytes (corpus median-size ham); {n} messages, {s} sessions")
        print(f"model: {note}: {model_dir}")

        direct_sink = Sink(tmp / "direct")
        t_direct = source(direct_sink.port, msg_file, s, n)
        direct = settle(direct_sink, n)
        direct_sink.stop()

        t0 = time.perf_counter()
        for _ in range(20):
            service.scorer.score(raw)
        score_ms = (time.perf_counter() - t0) / 20 * 1000

        runs = [("mailsift filter, scoring on", service)]
        if args.also_unscored:
            runs.append(("mailsift filter, no scoring", None))
        rows = [("smtp-source -> smtp-sink (direct)", direct, t_direct)]
        for i, (label, svc) in enumerate(runs):
            got, elapsed = through_filter(settings, svc, msg_file, s, n, tmp / f"filtered{i}")
            rows.append((f"smtp-source -> {label} -> smtp-sink", got, elapsed))

        rate_d = sum(direct.values()) / t_direct
        print()
        print("| path | arrived | distinct | duplicates | seconds | messages/s | of direct |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        ok = True
        for label, got, elapsed in rows:
            dups = sum(c - 1 for c in got.values() if c > 1)
            rate = sum(got.values()) / elapsed
            print(f"| {label} | {sum(got.values())} | {len(got)} | {dups} | {elapsed:.1f} "
                  f"| {rate:.0f} | {rate / rate_d:.1%} |")  # fmt: skip
            ok = ok and sum(got.values()) == n and len(got) == n and dups == 0
        print()
        print(f"scorer alone on this message: {score_ms:.1f} ms (in-process, one thread)")
        print(f"exactly once: {'yes' if ok else 'NO'} (every run: {n} arrived, all distinct)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
