"""Clients that leave or stall mid-body, against the real server (``mailsift serve api``,
uvicorn) over raw sockets: a disconnect is one access line with status 499, no traceback,
no 500 in the metrics; a body that stops half-way is answered 408 and the connection closed
once ``api.body_timeout`` has passed."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.messages import HAM
from tests.fixtures.api import ApiServer, api_test_settings, start_api_server

pytestmark = pytest.mark.integration

BODY_TIMEOUT = 1.5
ABORTED = 30


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, test_settings, small_model_dir: Path
) -> Iterator[ApiServer]:  # type: ignore[no-untyped-def]
    var_dir = tmp_path_factory.mktemp("api-disconnects")
    settings = api_test_settings(test_settings, var_dir, small_model_dir, body_timeout=BODY_TIMEOUT)
    with start_api_server(settings, workers=1) as srv:
        yield srv


def _connect(server: ApiServer) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def _head(server: ApiServer, path: str, length: int, ctype: str, scope: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.keys[scope]}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _access_lines(server: ApiServer) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(x) for x in server.logs().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("logger") == "mailsift.api.access"]


def _requests_total(server: ApiServer, route: str, status: int) -> float:
    with server.client() as c:
        text = c.get("/metrics").text
    pattern = (
        r'mailsift_http_requests_total\{method="POST",route="' + re.escape(route)
        + r'",status="' + str(status) + r'"\} ([0-9.e+]+)'
    )  # fmt: skip
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def _wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("path", "ctype", "scope"),
    [
        ("/v1/score", "message/rfc822", "score"),  # answered by a raw ASGI handler
        ("/v1/score/batch", "application/json", "score"),  # FastAPI parses the body
    ],
)
def test_client_disconnect_mid_body_is_one_499_line(
    server: ApiServer, path: str, ctype: str, scope: str
) -> None:
    before_499 = _requests_total(server, path, 499)
    before_500 = _requests_total(server, path, 500)
    log_before = len(server.logs())
    for _ in range(ABORTED):
        s = _connect(server)
        s.sendall(_head(server, path, 100_000, ctype, scope) + b"x" * 1000)
        time.sleep(0.02)  # the server has started reading the body
        s.close()
    _wait_for(lambda: _requests_total(server, path, 499) >= before_499 + ABORTED)
    assert _requests_total(server, path, 499) == before_499 + ABORTED
    assert _requests_total(server, path, 500) == before_500
    new = server.logs()[log_before:]
    assert "Traceback" not in new and "unhandled error" not in new, new[-3000:]
    lines = [json.loads(x) for x in new.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "mailsift.api.access"]
    assert [x["status"] for x in access if x["route"] == path] == [499] * ABORTED
    # the server is fine: a whole request is answered
    with server.client(server.keys["score"]) as c:
        r = c.post("/v1/score", content=HAM, headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 200


def test_half_sent_body_is_408_after_the_body_timeout(server: ApiServer) -> None:
    s = _connect(server)
    s.sendall(_head(server, "/v1/score", 50_000, "message/rfc822", "score") + b"x" * 5000)
    start = time.monotonic()
    s.settimeout(BODY_TIMEOUT + 10)
    data = b""
    waited = 0.0
    while True:  # the answer, then the server closes the connection
        chunk = s.recv(65536)
        if not chunk:
            break
        waited = waited or time.monotonic() - start
        data += chunk
    closed = time.monotonic() - start
    s.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"request body not received within 1.5 s" in data
    assert BODY_TIMEOUT - 0.3 <= waited < BODY_TIMEOUT + 3, waited
    assert closed < waited + 2, closed  # closed after the answer, not kept alive
    _wait_for(lambda: any(x["status"] == 408 for x in _access_lines(server)))


def test_a_slow_but_complete_body_within_the_timeout_is_scored(server: ApiServer) -> None:
    s = _connect(server)
    s.sendall(_head(server, "/v1/score", len(HAM), "message/rfc822", "score"))
    half = len(HAM) // 2
    s.sendall(HAM[:half])
    time.sleep(BODY_TIMEOUT / 3)
    s.sendall(HAM[half:])
    s.settimeout(30)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]


def test_body_timeout_is_configured(server: ApiServer) -> None:
    assert server.settings.api.body_timeout == BODY_TIMEOUT
    with httpx.Client(base_url=server.base_url) as c:
        assert c.get("/healthz").status_code == 200
