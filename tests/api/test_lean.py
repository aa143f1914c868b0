"""Cheap guards of the API worker's footprint and connection handling (no server needed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from mailsift.api.middleware import RecycleMiddleware


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip()


def test_app_module_imports_no_scikit_learn() -> None:
    """A worker must be able to set itself up (lean_process) before scikit-learn loads."""
    code = (
        "import sys, mailsift.api.app\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'pandas', 'mlflow') if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_lean_process_keeps_pandas_out_of_a_worker() -> None:
    code = (
        "import sys\n"
        "from mailsift.process import lean_process, trim_heap\n"
        "lean_process()\n"
        "import sklearn.naive_bayes, sklearn.linear_model, skops.io\n"
        "trim_heap()\n"
        "print(sys.modules.get('pandas') is None, sys.modules.get('pyarrow') is None)"
    )
    assert _run(code) == "True True"


def test_recycle_closes_a_connection_after_max_requests() -> None:
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = RecycleMiddleware(app, max_requests=3)

    async def request(port: int) -> list[tuple[bytes, bytes]]:
        sent: list[dict] = []

        async def send(message) -> None:  # type: ignore[no-untyped-def]
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "http_version": "1.1", "client": ("127.0.0.1", port)}
        await mw(scope, receive, send)
        return list(sent[0]["headers"])

    async def main() -> None:
        for _ in range(2):
            assert (b"connection", b"close") not in await request(5000)
            assert (b"connection", b"close") not in await request(5001)
        assert (b"connection", b"close") in await request(5000)
        assert (b"connection", b"close") not in await request(5000)  # a new connection
        assert (b"connection", b"close") in await request(5001)

    asyncio.run(main())
