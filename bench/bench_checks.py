"""Cost of the deterministic SMTP checks per session, against real unbound and clamd.

    .venv/bin/python -m bench.bench_checks [--sessions 300] [--concurrency 20]

Starts unbound (data/zones/) and clamd (EICAR test signatures) on loopback like the tests do,
builds every check with ``build_checks`` (lists on a temporary SQLite store, greylisting on,
its triplets already passed so nothing is deferred) and runs whole sessions - CONNECT, HELO,
MAIL, one RCPT, DATA with a DKIM-signed message - through the filter's ``CheckRunner``,
``--concurrency`` at a time. Three scenarios:

1. **healthy**: DNS answers (local unbound: no network latency; real resolvers add theirs);
2. **dead DNS**: a black-holed resolver (1 s timeout): each session waits about one timeout,
   whatever the number of DNS questions its checks would ask, and sessions overlap;
3. **no antivirus**: healthy DNS, clamd left out (what clamd costs).

Reported: sessions/s, latency p50/p95/max per session. Load generator, checks, unbound and
clamd share this machine's CPUs: figures are noisy and conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import dkim

from mailsift.config import Settings
from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.base import CheckAction, SmtpContext, Stage
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.smtpd.runner import CheckRunner
from mailsift.store import open_store
from mailsift.store.greylist import SqliteGreylistStore
from mailsift.store.lists import StoreListPolicy
from tests.checks.helpers import make_settings
from tests.fixtures.clamd import start_clamd
from tests.fixtures.dns import BlackholeDns, make_dkim_key, start_unbound, stop_process

MESSAGE = (
    b"From: Alice <alice@good.test>\r\nTo: bob@mailsift.test\r\nSubject: bench\r\n"
    b"Date: Sun, 29 Nov 2026 05:00:00 +0000\r\nMessage-ID: <bench@good.test>\r\n\r\n"
    + b"A line of an ordinary message body, repeated to a typical size.\r\n"
    * 80
)


async def session(runner: CheckRunner, raw: bytes, i: int) -> float:
    t0 = time.perf_counter()
    ctx = SmtpContext("192.0.2.10", helo="mail.good.test", mail_from="alice@good.test")
    for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
        out = await runner.run(stage, ctx)
        assert out.action is CheckAction.ACCEPT, (stage, out.reply)
    ctx.current_rcpt = "bob@mailsift.test"
    out = await runner.run(Stage.RCPT, ctx)
    assert out.action is CheckAction.ACCEPT, out.reply
    ctx.current_rcpt, ctx.rcpt_to, ctx.raw_message = None, ["bob@mailsift.test"], raw
    out = await runner.run(Stage.DATA, ctx)
    assert out.action is CheckAction.ACCEPT, out.reply
    return time.perf_counter() - t0


async def scenario(runner: CheckRunner, raw: bytes, sessions: int, concurrency: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            lat.append(await session(runner, raw, i))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "sessions_per_s": sessions / wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
        "max_ms": 1000 * lat[-1],
    }


async def warm_up(runner: CheckRunner, raw: bytes) -> None:
    """First attempt: greylisted (delay 0); the retry passes and remembers the triplet."""
    with contextlib.suppress(AssertionError):
        await session(runner, raw, -1)
    await asyncio.sleep(0.01)
    await session(runner, raw, -2)


def build(settings: Settings, store_path: Path, grey: SqliteGreylistStore) -> CheckRunner:
    store = open_store(f"sqlite:///{store_path}")
    checks = build_checks(
        settings,
        resolver=make_resolver(settings.dns),
        lists=StoreListPolicy(store),
        greylist_store=grey,
    )
    return CheckRunner(checks, timeout=60)


def blackhole() -> tuple[BlackholeDns, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    hole = BlackholeDns("127.0.0.1", int(sock.getsockname()[1]))

    def swallow() -> None:
        while True:
            try:
                sock.recvfrom(4096)
            except OSError:
                return
            hole.received += 1

    threading.Thread(target=swallow, daemon=True).start()
    return hole, sock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_checks")
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    key = make_dkim_key()
    unbound = start_unbound(tmp / "unbound", key)
    clamd = start_clamd(tmp / "clamd")
    hole, hole_sock = blackhole()
    raw = (
        dkim.sign(
            MESSAGE,
            selector=key.selector.encode(),
            domain=key.domain.encode(),
            privkey=key.private_pem,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        + MESSAGE
    )
    grey = SqliteGreylistStore(tmp / "greylist.db")
    common = {
        "antivirus": {"clamd_socket": clamd.unix_address},
        "greylist": {"enabled": True, "delay": 0.0},
    }
    results: dict[str, dict] = {}
    try:
        healthy = make_settings(unbound.settings(), tmp, **common)
        runner = build(healthy, tmp / "store.db", grey)
        asyncio.run(warm_up(runner, raw))
        results["healthy"] = asyncio.run(scenario(runner, raw, args.sessions, args.concurrency))
        dead = make_settings(hole.settings(timeout=1.0, session_budget=10.0), tmp, **common)
        n_dead = max(args.concurrency, args.sessions // 5)
        results["dead DNS (1 s timeout)"] = asyncio.run(
            scenario(build(dead, tmp / "store.db", grey), raw, n_dead, args.concurrency)
        )
        results["dead DNS (1 s timeout)"]["dns_packets_per_session"] = hole.received / n_dead
        no_av = make_settings(
            unbound.settings(), tmp, **{**common, "antivirus": {"enabled": False}}
        )
        results["no antivirus"] = asyncio.run(
            scenario(build(no_av, tmp / "store.db", grey), raw, args.sessions, args.concurrency)
        )
    finally:
        hole_sock.close()
        clamd.stop()
        stop_process(unbound.process)
    print(f"checks per session, {args.sessions} sessions, concurrency {args.concurrency}")
    print(f"{'scenario':26} {'sessions/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        note = ""
        if "dns_packets_per_session" in r:
            note = f"  ({r['dns_packets_per_session']:.1f} DNS packets/session)"
        print(
            f"{name:26} {r['sessions_per_s']:10.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['max_ms']:8.1f}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
