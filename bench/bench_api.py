"""Throughput and latency of the scoring API over HTTP, side by side with spamd and rspamd.

    .venv/bin/python -m bench.bench_api [--messages 1000] [--concurrency 8] [--seconds 20]

One run, on the same SpamAssassin-corpus messages (a fixed random sample, ham and spam),
one system after the other (never two at once: they would share the CPUs):

- **mailsift**: ``mailsift serve api --workers 2`` with the serving (default) model, its own
  store (``--store``: SQLite in a temporary var dir, or a fresh PostgreSQL database; every
  verdict is recorded, as in production); clients ``POST /v1/score`` the raw message with an
  API key over keep-alive HTTP/1.1 connections (pre-built requests over asyncio streams).
- **spamd** (SpamAssassin): ``spamd -L`` (local tests only) with 2 children, a temporary
  helper home dir and a site config dir holding the stock ``.pre`` files plus ``use_bayes 0``;
  each message is scored by running ``spamc -c`` (how MTAs use it). ``sa-update`` is never run.
- **rspamd**: the Debian package with its stock configuration, 2 normal workers bound to
  loopback, run/db/log dirs in a temporary dir, no redis; clients ``POST /checkv2``.

Each system gets a short warm-up, then ``--concurrency`` clients send messages for
``--seconds`` (spamd: ``--spamd-seconds``). Clients are closed-loop (each sends its next
message when the answer to the last arrives), so the p99 reported is the p99 at the
throughput reported. Concurrency defaults to 2 per worker: a worker scores on one thread,
so two requests in flight per worker keep it busy while the other's HTTP and commit run;
more only queue (throughput the same, latency up in proportion: measured on a busy 2-core
machine, 2 workers: 4 clients 94 msg/s p99 152 ms, 8 clients 98 msg/s p99 284 ms,
16 clients 98 msg/s p99 409 ms). Reported: messages/s, p50/p99 latency, errors,
mailsift's throughput ratio to each peer, and the RSS of one mailsift worker after the run.
The load generator runs on the same machine (it costs CPU too): figures are conservative,
and noisy when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailsift.config import Settings, load_settings
from tests.fixtures.ports import free_port
from tests.fixtures.process import ApiProcess, create_key, rss_mb

TARGET_RATE = 400.0
TARGET_P99_MS = 50.0
TARGET_SPAMD_RATIO = 10.0
TARGET_RSS_MB = 300.0


# ---- messages ------------------------------------------------------------------------------


def spamd_command(
    spamd: str,
    site: Path,
    port: int,
    children: int,
    home: Path,
    pidfile: Path,
    configpath: str | None = None,
) -> list[str]:
    """``spamd -L`` (no network tests) on a loopback port with a private site config and
    ``children`` fixed children; as ``nobody`` when run as root (spamd refuses root)."""
    cmd = [spamd, "-L", f"--siteconfigpath={site}"]
    if configpath:
        cmd.append(f"--configpath={configpath}")
    cmd += [
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        f"--max-children={children}",
        f"--min-children={children}",
        "-x",
        f"--helper-home-dir={home}",
        f"--pidfile={pidfile}",
        "-s",
        "stderr",
    ]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    return cmd


def load_messages(settings: Settings, n: int, seed: int) -> list[bytes]:
    """A fixed random sample of ``n`` corpus messages (ham and spam, in random order)."""
    from mailsift.pipeline.corpus import iter_corpus

    corpus = settings.paths.corpus
    if corpus is None or not Path(corpus).exists():
        sys.exit("no corpus: set MAILSIFT_CORPUS to the SpamAssassin corpus folder")
    raws = [item.raw for item in iter_corpus(Path(corpus))]
    rng = random.Random(seed)
    rng.shuffle(raws)
    return raws[:n]


# ---- load generation -----------------------------------------------------------------------


@dataclass
class Result:
    system: str
    workers: int
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    note: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000.0


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client connection (cheap, so the load generator leaves
    the CPU to the servers): requests are pre-built bytes (see ``request_bytes``), one
    ``write`` each; the response head is split once and only Content-Length and Connection
    are looked at."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.lower().split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
            elif line.startswith(b"connection:") and b"close" in line:
                close = True
        data = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def request_bytes(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


Scorer = Callable[[int, bytes], Awaitable[bool]]  # (client number, message) -> ok


async def drive(
    score: Scorer, messages: list[bytes], concurrency: int, seconds: float, warmup: int
) -> tuple[float, list[float], int]:
    """Warm up, then run ``concurrency`` clients for ``seconds``; returns (elapsed,
    latencies, errors)."""
    for i in range(warmup):
        await score(0, messages[i % len(messages)])
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal counter, errors
        while time.perf_counter() < deadline:
            msg = messages[counter % len(messages)]
            counter += 1
            t0 = time.perf_counter()
            try:
                ok = await score(n, msg)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return time.perf_counter() - start, latencies, errors


def http_scorer(
    port: int, path: str, headers: dict[str, str], concurrency: int
) -> tuple[Scorer, Callable[[], Awaitable[None]]]:
    conns = [HttpConnection("127.0.0.1", port) for _ in range(concurrency)]
    built: dict[int, bytes] = {}  # id(message) -> the whole request, built once

    async def score(n: int, raw: bytes) -> bool:
        req = built.get(id(raw))
        if req is None:
            req = built[id(raw)] = request_bytes("127.0.0.1", port, path, headers, raw)
        status, _ = await conns[n].send(req)
        return status == 200

    async def close() -> None:
        for c in conns:
            await c.close()

    return score, close


def run_http(
    system: str,
    port: int,
    path: str,
    headers: dict[str, str],
    messages: list[bytes],
    args: argparse.Namespace,
    workers: int,
) -> Result:
    async def main() -> Result:
        score, close = http_scorer(port, path, headers, args.concurrency)
        try:
            elapsed, lat, errors = await drive(
                score, messages, args.concurrency, args.seconds, args.warmup
            )
        finally:
            await close()
        return Result(system, workers, args.concurrency, elapsed, lat, errors)

    return asyncio.run(main())


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ---- mailsift ------------------------------------------------------------------------------


@contextlib.contextmanager
def store_url(args: argparse.Namespace) -> Iterator[str]:
    """``sqlite``: a file in the temporary var dir (one fsync'ed commit per verdict);
    ``postgresql``: a fresh database on ``--pg`` (commits of concurrent requests share
    fsyncs), dropped afterwards."""
    if args.store == "sqlite":
        yield ""
        return
    import psycopg

    name = f"mailsift_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{args.pg.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_mailsift(
    messages: list[bytes], args: argparse.Namespace, tmp: Path
) -> tuple[Result, float]:
    with store_url(args) as url:
        return _bench_mailsift(messages, args, tmp, url)


def _bench_mailsift(
    messages: list[bytes], args: argparse.Namespace, tmp: Path, url: str
) -> tuple[Result, float]:
    from mailsift.pipeline.registry import resolve_serving_model_dir

    base = load_settings()
    model_dir = args.model or resolve_serving_model_dir(base)
    if model_dir is None:
        sys.exit("no serving model: train one first (`mailsift train --default` or `make run`)")
    var = tmp / "mailsift-var"
    settings = base.model_copy(
        update={
            "paths": base.paths.model_copy(update={"var_dir": var}),
            "store": base.store.model_copy(update={"url": url}),
            "model": base.model.model_copy(update={"path": Path(model_dir).resolve()}),
            "rules": base.rules.model_copy(update={"cache_dir": base.rules_cache_dir.resolve()}),
        },
        deep=True,
    )
    server = ApiProcess(settings, workers=args.workers, log=tmp / "mailsift-api.log")
    key = create_key(server.env, "bench", "score")
    server.start(timeout=args.ready_timeout)
    try:
        headers = {"Content-Type": "message/rfc822", "Authorization": f"Bearer {key}"}
        result = run_http(
            "mailsift", server.port, "/v1/score", headers, messages, args, args.workers
        )
        rss = max((rss_mb(p) for p in server.worker_pids()), default=0.0)
    finally:
        server.stop()
    result.note = f"store {args.store}"
    return result, rss


# ---- spamd ---------------------------------------------------------------------------------


def bench_spamd(messages: list[bytes], args: argparse.Namespace, tmp: Path) -> Result:
    spamd, spamc = shutil.which("spamd") or "/usr/sbin/spamd", shutil.which("spamc")
    if not Path(spamd).exists() or spamc is None:
        raise RuntimeError("spamd/spamc not installed (Debian packages spamd, spamc)")
    site, home = tmp / "spamd-site", tmp / "spamd-home"
    site.mkdir()
    home.mkdir()
    home.chmod(0o777)  # spamd drops privileges to nobody
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site)
    (site / "local.cf").write_text("use_bayes 0\nbayes_auto_learn 0\n")
    port = free_port()
    cmd = spamd_command(spamd, site, port, args.workers, home, tmp / "spamd.pid")
    with open(tmp / "spamd.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, proc, 120, "spamd")
        ok = re.compile(rb"^-?\d+(\.\d+)?/\d+(\.\d+)?\s*$")

        async def score(_: int, raw: bytes) -> bool:
            p = await asyncio.create_subprocess_exec(
                spamc,
                "-d",
                "127.0.0.1",
                "-p",
                str(port),
                "-c",
                "-x",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            out, _err = await p.communicate(raw)
            return p.returncode in (0, 1) and bool(ok.match(out)) and not out.endswith(b"/0\n")

        async def main() -> Result:
            # spamd answers before its children are ready: wait for a real score
            deadline = time.monotonic() + 120
            while not await score(0, messages[0]):
                if time.monotonic() > deadline:
                    raise RuntimeError("spamd does not score")
                await asyncio.sleep(1)
            elapsed, lat, errors = await drive(
                score, messages, args.concurrency, args.spamd_seconds, 4
            )
            return Result("spamd", args.workers, args.concurrency, elapsed, lat, errors, "spamc -c")

        return asyncio.run(main())
    finally:
        stop_group(proc)


# ---- rspamd --------------------------------------------------------------------------------


def bench_rspamd(messages: list[bytes], args: argparse.Namespace, tmp: Path) -> Result:
    rspamd = shutil.which("rspamd")
    if rspamd is None:
        raise RuntimeError("rspamd not installed (Debian package rspamd)")
    root = tmp / "rspamd"
    local, override = root / "local", root / "local" / "override.d"
    for d in (override, root / "run", root / "db", root / "log"):
        d.mkdir(parents=True)
    port, ctl, proxy = free_port(), free_port(), free_port()
    (override / "worker-normal.inc").write_text(
        f'bind_socket = "127.0.0.1:{port}";\ncount = {args.workers};\n'
    )
    (override / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{ctl}";\ncount = 1;\n'
    )
    (override / "worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{proxy}";\ncount = 1;\n')
    # offline machine: a resolver that refuses at once, so DNS checks fail fast (as
    # mailsift's scorer, which makes no DNS lookups) instead of waiting for timeouts
    (override / "options.inc").write_text(
        'dns {\n  nameserver = ["127.0.0.1:1"];\n  timeout = 0.1s;\n  retransmits = 0;\n}\n'
    )
    (override / "logging.inc").write_text(
        f'type = "file";\nfilename = "{root}/log/rspamd.log";\nlevel = "error";\n'
    )
    cmd = [
        rspamd,
        "-f",
        "-c",
        "/etc/rspamd/rspamd.conf",
        "--var",
        f"LOCAL_CONFDIR={local}",
        "--var",
        f"RUNDIR={root}/run",
        "--var",
        f"DBDIR={root}/db",
        "--var",
        f"LOGDIR={root}/log",
    ]
    if os.geteuid() == 0:
        cmd += ["-i", "-u", "root", "-g", "root"]
    with open(tmp / "rspamd.out", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, proc, 180, "rspamd")
        time.sleep(2)  # let every worker load its hyperscan database
        return run_http("rspamd", port, "/checkv2", {}, messages, args, args.workers)
    finally:
        stop_group(proc)


# ---- report --------------------------------------------------------------------------------


def table(results: list[Result], rss: float, args: argparse.Namespace) -> str:
    ms = next(r for r in results if r.system == "mailsift")
    rows = [
        "| system | workers | concurrency | messages scored | msg/s | p50 ms | p99 ms | errors | mailsift ÷ system |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = ms.rate / r.rate if r.rate else float("inf")
        rows.append(
            f"| {r.system}{' (' + r.note + ')' if r.note else ''} | {r.workers} | {r.concurrency} | {r.count} | {r.rate:.1f} | "
            f"{r.pct(0.5):.1f} | {r.pct(0.99):.1f} | {r.errors} | {ratio:.1f}x |"
        )
    checks = [
        f"- mailsift throughput {ms.rate:.0f} msg/s (target >= {TARGET_RATE:.0f}): "
        f"{'PASS' if ms.rate >= TARGET_RATE else 'FAIL'}",
        f"- mailsift p99 {ms.pct(0.99):.1f} ms (target < {TARGET_P99_MS:.0f}): "
        f"{'PASS' if ms.pct(0.99) < TARGET_P99_MS else 'FAIL'}",
    ]
    spamd = next((r for r in results if r.system == "spamd"), None)
    if spamd is not None and spamd.rate:
        ratio = ms.rate / spamd.rate
        checks.append(
            f"- mailsift / spamd throughput {ratio:.1f}x (target >= {TARGET_SPAMD_RATIO:.0f}x): "
            f"{'PASS' if ratio >= TARGET_SPAMD_RATIO else 'FAIL'}"
        )
    checks.append(
        f"- RSS of one mailsift worker after the run {rss:.0f} MB (target < {TARGET_RSS_MB:.0f}): "
        f"{'PASS' if 0 < rss < TARGET_RSS_MB else 'FAIL'}"
    )
    load = os.getloadavg()[0]
    return "\n".join(
        [
            *rows,
            "",
            *checks,
            "",
            f"{args.messages} corpus messages (seed {args.seed}), cycled; "
            f"{os.cpu_count()} CPUs, load average {load:.1f} at the end (other work on the "
            "machine makes these figures noisy).",
            "",
            f"Command: `{' '.join(['.venv/bin/python -m bench.bench_api', *sys.argv[1:]])}`",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_api", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--messages", type=int, default=1000, help="corpus messages to cycle through")
    ap.add_argument("--seed", type=int, default=20030228)
    ap.add_argument(
        "--concurrency", type=int, default=None, help="clients in flight (2 per worker)"
    )
    ap.add_argument("--workers", type=int, default=2, help="server workers / children")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured time per system")
    ap.add_argument("--spamd-seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: serving)")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    ap.add_argument(
        "--ready-timeout", type=float, default=1200.0, help="seconds to wait for mailsift's start"
    )
    ap.add_argument("--skip", action="append", default=[], choices=["spamd", "rspamd"])
    args = ap.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 2 * args.workers

    messages = load_messages(load_settings(), args.messages, args.seed)
    print(f"{len(messages)} messages loaded", file=sys.stderr)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as d:
        tmp = Path(d)
        tmp.chmod(0o755)  # spamd runs as nobody and reads its config from here
        ms, rss = bench_mailsift(messages, args, tmp)
        results.append(ms)
        print(f"mailsift: {ms.rate:.1f} msg/s", file=sys.stderr)
        for name, fn in (("spamd", bench_spamd), ("rspamd", bench_rspamd)):
            if name in args.skip:
                continue
            r = fn(messages, args, tmp)
            results.append(r)
            print(f"{name}: {r.rate:.1f} msg/s", file=sys.stderr)
    print(table(results, rss, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
