"""Throughput through a real Postfix: alone, and with mailsift plugged in each of the three ways
docs/integrations.md shows (the same configuration blocks the tests run).

    .venv/bin/python -m bench.bench_postfix [--sessions 10] [--messages 500] [--model DIR]

For each path a fresh Postfix instance (``postfix -c DIR start``, loopback only, its own
queue; ``tests.fixtures.postfix``) relays to a fresh ``smtp-sink``:

* **Postfix alone**: ``smtp-source -> postfix -> smtp-sink``;
* **milter**: Postfix with ``smtpd_milters`` -> in-process ``MilterServer``;
* **before-queue proxy**: Postfix's ``smtpd_proxy_filter`` -> in-process ``FilterServer`` ->
  Postfix's re-injection smtpd;
* **after-queue**: Postfix's ``content_filter`` -> ``FilterServer`` (``after_queue``) ->
  re-injection.

mailsift scores in-process (``ScoringService``, its own SQLite store recording every
verdict; no DNS or antivirus checks). The message is a corpus ham of median size the model
scores HAM, sent with a distinct recipient each (``smtp-source -N``). Reported per path:
messages/s accepted by Postfix (smtp-source's run) and messages/s delivered (until the sink
holds every message), and whether every message arrived exactly once. Everything shares this
machine's CPUs; the run is bounded by --messages (default 500) and a timeout per path.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_smtp import SMTP_SINK, SMTP_SOURCE, Sink, source
from bench.common import (
    bench_model,
    load_args,
    load_message,
    need_tools,
    service_settings,
    wait_arrived,
)
from mailsift.config import Settings, load_settings


def run_path(
    name: str,
    base: Settings,
    service: Any,
    msg_file: Path,
    sessions: int,
    messages: int,
    root: Path,
    timeout: float,
) -> tuple[float, float, int, int]:
    """(accept seconds, delivery seconds, arrived, distinct) for one path."""
    from tests.fixtures.postfix import (
        doc_ports,
        doc_postfix,
        doc_server,
        doc_settings,
        start_postfix,
    )

    root.mkdir(parents=True)
    sink = Sink(root / "sink")
    ports = doc_ports()
    main, master = "", ""
    server: Any = None
    if name != "alone":
        s = doc_settings(base, root / "var", name, ports,
                         max_connections_per_ip=200, max_commands_per_session=100_000)  # fmt: skip
        server = doc_server(name, s, service).start()
        main, master = doc_postfix(name, ports)
    pf = start_postfix(main, master, sink.port)
    try:
        t0 = time.perf_counter()
        accept = source(pf.port, msg_file, sessions, messages)
        rc = wait_arrived(sink, messages, timeout)
        delivered = time.perf_counter() - t0
        return accept, delivered, sum(rc.values()), len(rc)
    finally:
        pf.stop()
        pf.remove()
        if server is not None:
            server.stop()
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    ap = load_args("python -m bench.bench_postfix", sessions=10, messages=500)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per path, at most")
    args = ap.parse_args(argv)
    need_tools(SMTP_SOURCE, SMTP_SINK, "/usr/sbin/postfix")
    base = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="bench-postfix-"))
    try:
        model_dir, note = bench_model(base, args.model, tmp)
        settings = service_settings(base, tmp, model_dir)
        from mailsift.service import ScoringService

        service = ScoringService(settings)
        raw, msg_file = load_message(settings, service.scorer, tmp)
        n, s = args.messages, args.sessions
        print(f"message: {len(raw)} bytes (corpus median-size ham); {n} messages, {s} sessions")
        print(f"model: {note}: {model_dir}")
        print()
        print("| path | accepted msg/s | delivered msg/s | arrived | distinct | of Postfix alone |")
        print("|---|---:|---:|---:|---:|---:|")
        ok, alone = True, 0.0
        for name in ("alone", "milter", "proxy", "after-queue"):
            acc, dlv, got, distinct = run_path(
                name, settings, service if name != "alone" else None, msg_file, s, n,
                tmp / name, args.timeout,
            )  # fmt: skip
            rate = got / dlv
            alone = alone or rate
            label = "Postfix alone" if name == "alone" else f"Postfix + mailsift {name}"
            print(f"| {label} | {n / acc:.0f} | {rate:.0f} | {got} | {distinct} "
                  f"| {rate / alone:.0%} |", flush=True)  # fmt: skip
            ok = ok and got == n and distinct == n
        print()
        print(f"exactly once: {'yes' if ok else 'NO'} (every path: {n} arrived, all distinct)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
