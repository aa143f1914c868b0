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

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_smtp import SMTP_SINK, SMTP_SOURCE, Sink, pick_message, quick_model, source
from mailsift.config import Settings, load_settings


def _settings(base: Settings, var: Path, block: str, ports: dict[str, int]) -> Settings:
    import tomllib

    from tests.fixtures.postfix import doc_block, render

    conf = tomllib.loads(render(doc_block(block), ports))
    data = base.model_dump()
    data["paths"]["var_dir"] = var
    for section, values in conf.items():
        data[section] = {**data.get(section, {}), **values}
    data["smtp"].update(submission_port=None, max_connections_per_ip=200,
                        max_commands_per_session=100_000)  # fmt: skip
    return load_settings(**data)


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
    from mailsift.smtpd.milter import MilterServer
    from mailsift.smtpd.server import FilterServer
    from tests.fixtures.ports import free_port
    from tests.fixtures.postfix import doc_block, render, start_postfix

    root.mkdir(parents=True)
    sink = Sink(root / "sink")
    ports = {"11332": free_port(), "10024": free_port(), "10025": free_port()}
    main, master = "", ""
    server: Any = None
    start: Callable[[], Any] | None = None
    if name == "milter":
        s = _settings(base, root / "var", "postfix-milter mailsift.toml", ports)
        main = render(doc_block("postfix-milter main.cf"), ports)
        start = lambda: MilterServer(s, service).start()  # noqa: E731
    elif name == "proxy":
        s = _settings(base, root / "var", "postfix-proxy mailsift.toml", ports)
        master = render(doc_block("postfix-proxy master.cf"), ports)
        start = lambda: FilterServer(s, service).start()  # noqa: E731
    elif name == "after-queue":
        s = _settings(base, root / "var", "postfix-after-queue mailsift.toml", ports)
        main = render(doc_block("postfix-after-queue main.cf"), ports)
        master = render(doc_block("postfix-after-queue master.cf"), ports)
        start = lambda: FilterServer(s, service).start()  # noqa: E731
    if start is not None:
        server = start()
    pf = start_postfix(main, master, sink.port)
    try:
        t0 = time.perf_counter()
        accept = source(pf.port, msg_file, sessions, messages)
        rc = sink.recipients()
        deadline = time.monotonic() + timeout
        while sum(rc.values()) < messages and time.monotonic() < deadline:
            time.sleep(0.1)
            rc = sink.recipients()
        delivered = time.perf_counter() - t0
        return accept, delivered, sum(rc.values()), len(rc)
    finally:
        pf.stop()
        pf.remove()
        if server is not None:
            server.stop()
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_postfix")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: serving)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per path, at most")
    args = ap.parse_args(argv)
    for tool in (SMTP_SOURCE, SMTP_SINK, "/usr/sbin/postfix"):
        if not Path(tool).exists():
            sys.exit(f"{tool} missing: install Debian's postfix package")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    base = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="bench-postfix-"))
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
