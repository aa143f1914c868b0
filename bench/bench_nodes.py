"""Two mailsift nodes against one: SMTP throughput with the shared services of docs/integrations.md's
"Several nodes" configuration (one PostgreSQL store, one Redis greylist, one MLflow file).

    .venv/bin/python -m bench.bench_nodes [--sessions 10] [--messages 400] [--model DIR]

Each node is complete and separate (``mailsift serve api`` + ``mailsift serve smtp``
processes, own var dir and ports; ``tests.nodes.test_two_nodes.node_settings`` builds the
settings from the docs block), scoring in-process and recording every verdict in a fresh
schema of the PostgreSQL database ``test`` (127.0.0.1:5432; dropped afterwards). Greylisting
is off (every message would be deferred once). ``smtp-source`` sends a median-size corpus
ham with a distinct recipient each (``-N``): first all of it to node A alone, then half to
each node at once. Reported: delivered messages/s and whether every message arrived exactly
once. On a 2-core host both nodes share the same cores, so this shows that the shared store
and greylist are no bottleneck rather than a speed-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bench_smtp import SMTP_SINK, SMTP_SOURCE, Sink
from bench.common import bench_model, load_args, load_message, need_tools, wait_arrived
from mailsift.config import load_settings

PG = os.environ.get("MAILSIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _source(port: int, msg_file: Path, sessions: int, messages: int, rcpt: str) -> None:
    """smtp-source with its own recipient (``-N`` numbers it: ``<n><rcpt>``)."""
    subprocess.run(
        [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-N", "-F", str(msg_file),
         "-f", "sender@example.org", "-t", rcpt, "-M", "bench.example", f"127.0.0.1:{port}"],
        capture_output=True, timeout=3600, check=False,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = load_args("python -m bench.bench_nodes", sessions=10, messages=400)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run, at most")
    args = ap.parse_args(argv)
    need_tools(SMTP_SOURCE, SMTP_SINK)
    import psycopg

    from tests.fixtures.api import start_api_server
    from tests.fixtures.ports import free_port
    from tests.fixtures.store import pg_schema_url
    from tests.nodes.test_two_nodes import node_settings, start_smtp

    base = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    procs: list[subprocess.Popen[bytes]] = []
    apis: list[Any] = []
    try:
        model_dir, note = bench_model(base, args.model, tmp)
        model_dir = model_dir.resolve()
        base = base.model_copy(
            update={
                "rules": base.rules.model_copy(update={"cache_dir": base.rules_cache_dir.resolve()})
            }
        )
        from mailsift.classifier.model import SpamModel
        from mailsift.classifier.scorer import Scorer, load_rules

        scorer = Scorer(SpamModel.load(model_dir), load_rules(base), base)
        raw, msg_file = load_message(base, scorer, tmp)
        sink = Sink(tmp / "sink")
        ports: list[int] = []
        for name in ("a", "b"):
            port = free_port()
            s = node_settings(
                base, tmp / name, model_dir, pg_schema_url(PG, schema),
                f"mailsift-bench:{uuid.uuid4().hex}:", tmp / "mlflow.db", sink.port, port,
            )  # fmt: skip
            data = s.model_dump()
            data["greylist"]["enabled"] = False
            data["smtp"].update(max_connections_per_ip=200, max_commands_per_session=100_000)
            s = type(s)(**data)
            ctx = start_api_server(s, workers=1, make_keys=(name == "a"))
            ctx.__enter__()
            apis.append(ctx)
            procs.append(start_smtp(s, tmp / name / "smtp.log"))
            ports.append(port)
        n, sessions = args.messages, args.sessions
        print(f"message: {len(raw)} bytes (corpus median-size ham); {n} messages per run")
        print(f"model: {note}: {model_dir}")
        print()
        print("| run | sessions | delivered | distinct (all runs) | seconds | messages/s |")
        print("|---|---:|---:|---:|---:|---:|")
        ok = True
        for run, (label, targets) in enumerate(
            (("node A alone", ports[:1]), ("nodes A + B", ports))
        ):
            before = sum(sink.recipients().values())
            t0 = time.perf_counter()
            per = n // len(targets)
            threads = [
                threading.Thread(
                    target=_source,
                    args=(
                        p,
                        msg_file,
                        max(1, sessions // len(targets)),
                        per,
                        f"r{run}n{i}bob@mailsift.test",
                    ),
                )
                for i, p in enumerate(targets)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            want = before + per * len(targets)
            rc = wait_arrived(sink, want, args.timeout)
            elapsed = time.perf_counter() - t0
            got = sum(rc.values()) - before
            print(f"| {label} | {sessions} | {got} | {len(rc)} | {elapsed:.1f} "
                  f"| {got / elapsed:.0f} |", flush=True)  # fmt: skip
            ok = ok and got == per * len(targets) and len(rc) == want  # no duplicates
        print()
        print(f"exactly once: {'yes' if ok else 'NO'} (every recipient is distinct)")
        sink.stop()
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(30)
        for ctx in reversed(apis):
            ctx.__exit__(None, None, None)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
