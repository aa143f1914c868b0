"""Throughput and latency of the scoring API over HTTP, side by side with rspamd and spamd.

    .venv/bin/python -m bench.bench_api [--messages 1000] [--seconds 20] [--rounds 2]

On the same SpamAssassin-corpus messages (a fixed random sample, ham and spam):

- **mailsift**: ``mailsift serve api --workers 2`` with the serving (default) model, its own
  store (``--store``: SQLite in a temporary var dir, or a fresh PostgreSQL database; every
  verdict is recorded, as in production); clients ``POST /v1/score`` the raw message with an
  API key over keep-alive HTTP/1.1 connections (pre-built requests over asyncio streams).
- **rspamd**: the Debian package with its stock configuration, 2 normal workers bound to
  loopback, run/db/log dirs in a temporary dir, and its network modules off
  (``RSPAMD_NETWORK_MODULES``: DNS lists and lookups, Redis, remote hashes), with a local
  resolver that answers REFUSED at once for anything still asked: mailsift's scorer makes no
  network lookups, and offline rspamd's would wait for DNS timeouts (it then looks ten times
  slower than it is). Clients ``POST /checkv2``.
- **spamd** (SpamAssassin; ``--skip spamd`` to leave it out): ``spamd -L`` (local tests
  only) with 2 children, a temporary helper home dir and a site config dir holding the stock
  ``.pre`` files plus ``use_bayes 0``; each message is scored by running ``spamc -c`` (how
  MTAs use it). ``sa-update`` is never run. Measured once, after the others.

mailsift and rspamd run at the same time (an idle server costs no CPU) and are measured in
alternating rounds (``--rounds``, ``--seconds`` each; the order flips every round), so a
change in the machine's other load falls on both. Each round has a short warm-up, then
``--concurrency`` clients (default 2 per worker) send messages; clients are closed-loop
(each sends its next message when the answer to the last arrives), so the p99 reported is
the p99 at the throughput reported. Reported: messages/s (pooled, and each round's), p50/p99
latency, errors, mailsift's throughput ratio to each peer, and the RSS of one mailsift
worker after the run. The load generator runs on the same machine (it costs CPU too).
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

TARGET_RSPAMD_RATIO = 1.2  # mailsift msg/s over rspamd's, with a p99 no worse
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


@contextlib.contextmanager
def mailsift_server(
    args: argparse.Namespace, tmp: Path
) -> Iterator[tuple[int, dict[str, str], ApiProcess]]:
    """``mailsift serve api --workers N`` on its own var dir and store; yields (port, the
    request headers with a score key, the process)."""
    from mailsift.pipeline.registry import resolve_serving_model_dir

    base = load_settings()
    model_dir = args.model or resolve_serving_model_dir(base)
    if model_dir is None:
        sys.exit("no serving model: train one first (`mailsift train --default` or `make run`)")
    with store_url(args) as url:
        var = tmp / "mailsift-var"
        settings = base.model_copy(
            update={
                "paths": base.paths.model_copy(update={"var_dir": var}),
                "store": base.store.model_copy(update={"url": url}),
                "model": base.model.model_copy(update={"path": Path(model_dir).resolve()}),
                "rules": base.rules.model_copy(
                    update={"cache_dir": base.rules_cache_dir.resolve()}
                ),
            },
            deep=True,
        )
        server = ApiProcess(settings, workers=args.workers, log=tmp / "mailsift-api.log")
        key = create_key(server.env, "bench", "score")
        server.start(timeout=args.ready_timeout)
        try:
            headers = {"Content-Type": "message/rfc822", "Authorization": f"Bearer {key}"}
            yield server.port, headers, server
        finally:
            server.stop()


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

# rspamd modules that ask the network (DNS lists and lookups, Redis, remote hashes or
# maps): off, as mailsift's scorer asks nothing of the network. Offline, their DNS
# lookups would otherwise wait for timeouts and rspamd would look ten times slower than
# it is. What stays on is rspamd's local work: the regexp / multimap / SpamAssassin-style
# rules, MIME and HTML parsing, composites and the rest of the stock configuration.
RSPAMD_NETWORK_MODULES = [
    "arc",
    "asn",
    "bimi",
    "dcc",
    "dkim",
    "dmarc",
    "emails",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "metadata_exporter",
    "mx_check",
    "neural",
    "p0f",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spf",
    "surbl",
    "url_redirector",
    "whitelist",
    "clickhouse",
    "elastic",
]


def refusing_resolver(root: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """unbound on a loopback port answering every query REFUSED at once: what a module
    left on still asks gets its failure without a timeout (None without unbound)."""
    unbound = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(unbound).exists():
        return None
    port = free_port()
    conf = root / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"  interface: 127.0.0.1@{port}\n"
        '  do-daemonize: no\n  use-syslog: no\n  chroot: ""\n  username: ""\n'
        f'  directory: "{root}"\n  pidfile: "{root}/unbound.pid"\n'
        '  access-control: 127.0.0.0/8 allow\n  local-zone: "." refuse\n'
        "  do-ip6: no\n  num-threads: 1\n"
    )
    proc = subprocess.Popen(
        [unbound, "-d", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # up once it answers (REFUSED) on UDP
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"
            s.sendto(query, ("127.0.0.1", port))
            with contextlib.suppress(OSError):
                if s.recv(512)[:2] == b"\x12\x34":
                    return proc, port
        time.sleep(0.1)
    stop_group(proc)
    return None


@contextlib.contextmanager
def rspamd_server(args: argparse.Namespace, tmp: Path) -> Iterator[int]:
    """rspamd (the Debian package's stock configuration) with ``args.workers`` normal
    workers on a loopback port, its network modules off (``RSPAMD_NETWORK_MODULES``) and
    a resolver that refuses at once; yields the normal workers' port."""
    rspamd = shutil.which("rspamd")
    if rspamd is None:
        raise RuntimeError("rspamd not installed (Debian package rspamd)")
    root = tmp / "rspamd"
    local, override = root / "local", root / "local" / "override.d"
    for d in (override, local / "local.d", root / "run", root / "db", root / "log"):
        d.mkdir(parents=True)
    port, ctl, proxy = free_port(), free_port(), free_port()
    (override / "worker-normal.inc").write_text(
        f'bind_socket = "127.0.0.1:{port}";\ncount = {args.workers};\n'
    )
    (override / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{ctl}";\ncount = 1;\n'
    )
    (override / "worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{proxy}";\ncount = 1;\n')
    for module in RSPAMD_NETWORK_MODULES:
        (local / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
    resolver = refusing_resolver(root)
    nameserver = f"127.0.0.1:{resolver[1]}" if resolver else "127.0.0.1:1"
    (override / "options.inc").write_text(
        f'dns {{\n  nameserver = ["{nameserver}"];\n  timeout = 0.1s;\n  retransmits = 0;\n}}\n'
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
        yield port
    finally:
        stop_group(proc)
        if resolver is not None:
            stop_group(resolver[0])


def rspamd_symbols(port: int, raw: bytes) -> dict[str, object]:
    """rspamd's answer for one message (to check that it scores, and what it ran)."""
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/checkv2", data=raw, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


# ---- report --------------------------------------------------------------------------------


def pooled(rounds: list[Result]) -> Result:
    """One Result of several rounds of one system (all their latencies, all their time)."""
    first = rounds[0]
    out = Result(first.system, first.workers, first.concurrency, note=first.note)
    for r in rounds:
        out.seconds += r.seconds
        out.latencies += r.latencies
        out.errors += r.errors
    return out


def table(
    rounds: dict[str, list[Result]], extra: list[Result], rss: float, args: argparse.Namespace
) -> str:
    results = [pooled(rs) for rs in rounds.values()] + extra
    ms = next(r for r in results if r.system == "mailsift")
    rows = [
        "| system | workers | concurrency | messages scored | msg/s (each round) | p50 ms | p99 ms | errors | mailsift ÷ system |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = ms.rate / r.rate if r.rate else float("inf")
        each = ", ".join(f"{x.rate:.1f}" for x in rounds.get(r.system, []))
        rows.append(
            f"| {r.system}{' (' + r.note + ')' if r.note else ''} | {r.workers} | {r.concurrency} | {r.count} | {r.rate:.1f}"
            f"{' (' + each + ')' if each else ''} | {r.pct(0.5):.1f} | {r.pct(0.99):.1f} | {r.errors} | {ratio:.2f}x |"
        )
    checks = []
    rs = next((r for r in results if r.system == "rspamd"), None)
    if rs is not None and rs.rate:
        ratio = ms.rate / rs.rate
        checks += [
            f"- mailsift / rspamd throughput {ratio:.2f}x (target >= {TARGET_RSPAMD_RATIO:.1f}x): "
            f"{'PASS' if ratio >= TARGET_RSPAMD_RATIO else 'FAIL'}",
            f"- mailsift p99 {ms.pct(0.99):.1f} ms, rspamd p99 {rs.pct(0.99):.1f} ms (target: no "
            f"worse): {'PASS' if ms.pct(0.99) <= rs.pct(0.99) else 'FAIL'}",
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
            f"{args.messages} corpus messages (seed {args.seed}), cycled; {args.rounds} rounds of "
            f"{args.seconds:g} s per system, alternating; {os.cpu_count()} CPUs, load average "
            f"{load:.1f} at the end (other work on the machine makes these figures noisy).",
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
    ap.add_argument("--seconds", type=float, default=20.0, help="measured time per round")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per system, alternating")
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
    rounds: dict[str, list[Result]] = {"mailsift": []}
    extra: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        tmp.chmod(0o755)  # spamd runs as nobody and reads its config from here
        # both servers up at once (an idle server costs no CPU); measured in turn
        port, headers, server = stack.enter_context(mailsift_server(args, tmp))
        targets = {"mailsift": (port, "/v1/score", headers)}
        if "rspamd" not in args.skip:
            rport = stack.enter_context(rspamd_server(args, tmp))
            answer = rspamd_symbols(rport, messages[0])
            print(
                f"rspamd scores: score {answer.get('score')}, "
                f"{len(answer.get('symbols', {}))} symbols",  # type: ignore[arg-type]
                file=sys.stderr,
            )
            targets["rspamd"] = (rport, "/checkv2", {})
            rounds["rspamd"] = []
        for i in range(args.rounds):
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            for name in order:
                p, path, h = targets[name]
                r = run_http(name, p, path, h, messages, args, args.workers)
                rounds[name].append(r)
                print(f"round {i + 1} {name}: {r.rate:.1f} msg/s", file=sys.stderr)
        rounds["mailsift"][0].note = f"store {args.store}"
        rss = max((rss_mb(p) for p in server.worker_pids()), default=0.0)
        if "rspamd" in rounds:
            rounds["rspamd"][0].note = "network modules off"
        stack.close()
        if "spamd" not in args.skip:
            r = bench_spamd(messages, args, tmp)
            extra.append(r)
            print(f"spamd: {r.rate:.1f} msg/s", file=sys.stderr)
    print(table(rounds, extra, rss, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
