"""A 422 says where and why a request is invalid, never what it contained: pydantic's errors
carry the input, which for an over-long batch is every message of it (a 5,000-message, 20 MB
batch came back whole) and for invalid JSON the whole body. Over real HTTP (uvicorn on a
loopback port) with the production body limit and batch size."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailsift.api.app import MAX_VALIDATION_ERRORS, create_app
from mailsift.api.keys import ApiKeys
from mailsift.config import Settings
from mailsift.service import ScoringService
from mailsift.store import open_store
from tests.fixtures.api import api_test_settings
from tests.ui.conftest import serve_in_thread

MARK = "ECHO-MARK-7f3a"  # in every message; must never come back


def _message(i: int) -> str:
    body = f"Message {i} {MARK}\r\n" + "filler text of a plain message\r\n" * 92
    raw = f"From: a{i}@example.org\r\nSubject: {MARK} {i}\r\n\r\n{body}".encode()
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[tuple[str, str]]:
    var = tmp_path_factory.mktemp("validation-var")
    # the shipped limits: 25 MiB bodies, batches of at most 1,000 messages
    settings = api_test_settings(
        test_settings, var, small_model_dir, max_body_bytes=25 * 1024 * 1024, max_batch=1000
    )
    store = open_store(settings.store_url)
    service = ScoringService(settings, store=store)
    token = ApiKeys(store, 0.0).create("validation", "score")[1]
    server, thread, url = serve_in_thread(create_app(settings, service))
    try:
        yield url, token
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        service.close()


def _post(api: tuple[str, str], content: bytes, path: str = "/v1/score/batch") -> httpx.Response:
    url, token = api
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(url + path, content=content, headers=headers, timeout=120)


def _no_echo(r: httpx.Response, limit: int = 8192) -> list[dict]:
    assert r.status_code == 422, r.text[:500]
    assert MARK not in r.text
    assert len(r.content) < limit, len(r.content)
    detail = r.json()["detail"]
    for e in detail:
        assert set(e) == {"loc", "msg", "type"}, e
    return detail


def test_a_5000_message_batch_is_not_echoed(api: tuple[str, str]) -> None:
    body = json.dumps({"messages": [{"id": str(i), "message": _message(i)} for i in range(5000)]})
    assert len(body) > 20_000_000
    detail = _no_echo(_post(api, body.encode()))
    assert detail == [
        {
            "loc": ["messages"],
            "msg": "List should have at most 1000 items after validation, not 5000",
            "type": "too_long",
        }
    ]


def test_many_bad_messages_give_a_short_answer(api: tuple[str, str]) -> None:
    msgs = [{"message": _message(i), "envelope": {"ip": f"{MARK}-{i}"}} for i in range(800)]
    detail = _no_echo(_post(api, json.dumps({"messages": msgs}).encode()))
    assert len(detail) == MAX_VALIDATION_ERRORS + 1
    assert detail[0]["loc"][:3] == ["messages", 0, "envelope"]
    assert detail[-1] == {
        "loc": [],
        "msg": f"and {800 - MAX_VALIDATION_ERRORS} more errors",
        "type": "too_many_errors",
    }


def test_invalid_json_is_not_echoed(api: tuple[str, str]) -> None:
    body = json.dumps({"messages": [{"message": _message(i)} for i in range(50)]})
    for broken in (body[:-2].encode(), body.encode() + b"\xff", b"\xfe" + MARK.encode()):
        detail = _no_echo(_post(api, broken))
        assert detail[0]["type"] == "json_invalid"


def test_a_bad_envelope_of_a_raw_message_is_not_echoed(api: tuple[str, str]) -> None:
    url, token = api
    raw = base64.b64decode(_message(1))
    r = httpx.post(
        url + "/v1/score",
        content=raw,
        params={"rcpt": ["ok@example.org", "x" * 600]},
        headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"},
        timeout=60,
    )
    detail = _no_echo(r)
    assert detail[0]["loc"][0] == "rcpt" and "x" * 600 not in r.text
