"""The HTTP layer's own CPU per ``POST /v1/score`` request, without scoring or the store.

    .venv/bin/python -m bench.bench_api_layer [--requests 2000] [--rounds 7]

The API app (``create_app``) is driven in-process as an ASGI application (no sockets, no
HTTP client): a scoring service that answers every message with the same verdict and
hands its record to the verdict writer as the real one does stands in for it, so what is
timed is what the API itself does per request (middleware, routing, the key check from the
key cache, the envelope, reading the body, the thread hand-off of scoring, the record queued
and written in batches by the writer thread, the response JSON). Each round sends
``--requests`` requests one after the other; printed: the median and the best round's
microseconds per request, for messages without and with an envelope in the query, as CPU
time of the process (all its threads: what a worker spends; stable when other processes
share the cores) and as wall-clock time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mailsift.api.app import create_app
from mailsift.api.keys import ApiKeys
from mailsift.config import Settings, load_settings
from mailsift.service import ScoringService
from mailsift.store import Store, open_store_for
from mailsift.store.base import VerdictRecord
from mailsift.verdict import Action, Envelope, Symbol, TokenContribution, Verdict

MESSAGE = (
    b"From: carol@example.org\r\nTo: alice@example.org\r\nSubject: minutes\r\n\r\n"
    + b"the minutes of Tuesday's meeting\r\n" * 40
)
VERDICT = Verdict(
    "0123456789abcdef0123456789abcdef",
    0.25,
    1.5,
    5.0,
    Action.HAM,
    rules=[Symbol(f"RULE_{i}", 0.5, "a rule", "rule") for i in range(5)],
    tokens=[TokenContribution(f"body:word{i}", 0.01 * i) for i in range(10)],
    model_version="bench",
    elapsed_ms=1.0,
    digest="f" * 64,
)


class CannedService:
    """What the API needs of a ``ScoringService``, answering one verdict at no cost."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.model_version = "bench"

    def evaluate(self, raw: bytes, envelope: Envelope | None = None, symbols: Any = ()) -> Verdict:
        return VERDICT

    def record(self, verdict: Verdict, raw: bytes, envelope: Envelope | None = None) -> None:
        return None

    def verdict_record(
        self, verdict: Verdict, raw: bytes, envelope: Envelope | None = None
    ) -> tuple[VerdictRecord, bytes | None]:
        return ScoringService.verdict_record(self, verdict, raw, envelope)  # type: ignore[arg-type]

    def reload_model(self) -> None:
        return None


async def _request(app: Any, query: bytes, token: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": MESSAGE, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"message/rfc822"),
            (b"content-length", str(len(MESSAGE)).encode()),
            (b"authorization", b"Bearer " + token),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return status


async def _run(settings: Settings, token: str, requests: int, rounds: int) -> None:
    store = open_store_for(settings)
    app = create_app(settings, CannedService(store, settings))  # type: ignore[arg-type]
    queries = {"no envelope": b"", "envelope": b"ip=192.0.2.7&rcpt=a%40x.test&helo=mx.x.test"}
    async with app.router.lifespan_context(app):
        for query in queries.values():  # warm-up: key cache, thread pools
            for _ in range(50):
                assert await _request(app, query, token.encode()) == 200
        cpu: dict[str, list[float]] = {name: [] for name in queries}
        wall: dict[str, list[float]] = {name: [] for name in queries}
        for _ in range(rounds):
            for name, query in queries.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(requests):
                    await _request(app, query, token.encode())
                cpu[name].append((time.process_time() - start_cpu) / requests * 1e6)
                wall[name].append((time.perf_counter() - start) / requests * 1e6)
    store.close()
    gc.unfreeze()
    for name in queries:
        print(
            f"{name:12s}: CPU median {statistics.median(cpu[name]):6.1f} us/request, "
            f"best {min(cpu[name]):6.1f}; wall median {statistics.median(wall[name]):6.1f}, "
            f"best {min(wall[name]):6.1f} ({rounds} rounds of {requests})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-layer-") as tmp:
        settings = load_settings(
            paths={"var_dir": Path(tmp)},
            store={"url": ""},
            api={"require_keys": True, "key_cache_seconds": 3600.0},
        )
        store = open_store_for(settings)
        token = ApiKeys(store, 0.0).create("bench", "score")[1]
        store.close()
        asyncio.run(_run(settings, token, args.requests, args.rounds))


if __name__ == "__main__":
    main()
