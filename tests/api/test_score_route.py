"""``POST /v1/score`` (``mailsift.api.routes.score``, answered by its raw ASGI handler):
in-process over one scoring service, what it checks and in which order (service, key,
media type, envelope, body), what it records, and the metrics and access log of its
requests. The exact bytes of its answers are pinned by ``test_golden``; the verdict's JSON
by ``test_verdict_codec``."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsift.api import metrics
from mailsift.api.app import create_app
from mailsift.api.keys import ApiKeys
from mailsift.api.logs import ACCESS_LOGGER
from mailsift.api.schemas import ScoreResponse
from mailsift.config import Settings
from mailsift.service import ScoringService
from mailsift.store import StoreUnavailable, open_store_for
from mailsift.verdict import Action, Envelope, Verdict
from tests.api.messages import GTUBE_MSG, HAM, SPAM, message
from tests.fixtures.api import api_test_settings, running

LIMIT = 64 * 1024


@dataclass
class Apps:
    settings: Settings
    service: ScoringService
    keys: dict[str, str]
    envelopes: list[Envelope]  # what service.evaluate was given, in order


@pytest.fixture(scope="module")
def apps(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[Apps]:
    var = tmp_path_factory.mktemp("score-route-var")
    settings = api_test_settings(test_settings, var, small_model_dir, max_body_bytes=LIMIT)
    store = open_store_for(settings)
    service = ScoringService(settings, store=store)
    envelopes: list[Envelope] = []
    evaluate = service.evaluate

    def spy(raw: bytes, envelope: Envelope | None = None, symbols: Any = ()) -> Verdict:
        envelopes.append(envelope or Envelope())
        return evaluate(raw, envelope, symbols)

    service.evaluate = spy  # type: ignore[method-assign]
    keys = ApiKeys(store, 0.0)
    tokens = {s: keys.create(f"sr-{s}", s)[1] for s in ("score", "feedback", "admin")}
    revoked_key, revoked = keys.create("sr-revoked", "score")
    keys.revoke(revoked_key.key_id)
    tokens["revoked"] = revoked
    try:
        yield Apps(settings, service, tokens, envelopes)
    finally:
        service.close()
        gc.unfreeze()  # the app's start-up froze what was alive then


@asynccontextmanager
async def served(apps: Apps, **settings_api: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = apps.settings
    if settings_api:
        api = settings.api.model_copy(update=settings_api)
        settings = settings.model_copy(update={"api": api})
    async with running(create_app(settings, apps.service)) as client:
        yield client


async def ask(c: httpx.AsyncClient, method: str = "POST", **kw: Any) -> httpx.Response:
    """One request; a 200 must be the documented response model, with its length."""
    path = kw.pop("path", "/v1/score")
    r = await c.request(method, path, **kw)
    if r.status_code == 200 and path == "/v1/score":
        ScoreResponse.model_validate(r.json())
    if method != "HEAD":
        assert r.headers["content-length"] == str(len(r.content))
    return r


def auth(token: str, ctype: str = "message/rfc822", **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": ctype, **headers}


async def test_scores_alike_and_records(apps: Apps) -> None:
    async with served(apps) as c:
        for raw in (HAM, SPAM, GTUBE_MSG, b"no headers at all", b"\x00\xff\xfe garbage"):
            r = await ask(c, content=raw, headers=auth(apps.keys["score"]))
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            v = r.json()
            # recorded by the worker's verdict writer; the lookup waits for its commit
            assert apps.service.verdict(v["verdict_id"]) is not None
        assert (await ask(c, content=HAM, headers=auth(apps.keys["admin"]))).status_code == 200
        r = await ask(
            c, content=HAM, headers=auth(apps.keys["score"], "Application/Octet-Stream; x=1")
        )
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer nonsense", 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Basic SCORE", 401),
        ("Bearer msk_000000000000_" + "A" * 43, 401),
        ("Bearer REVOKED", 401),
        ("Bearer FEEDBACK", 403),
        ("bearer SCORE", 200),  # the scheme is case-insensitive
        ("Bearer   SCORE  ", 200),
    ],
)
async def test_auth(apps: Apps, authorization: str | None, status: int) -> None:
    headers = {"Content-Type": "message/rfc822"}
    if authorization is not None:
        for name in ("SCORE", "FEEDBACK", "REVOKED"):
            authorization = authorization.replace(name, apps.keys[name.lower()])
        headers["Authorization"] = authorization
    async with served(apps) as c:
        r = await ask(c, content=HAM, headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    elif status == 403:
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_auth_before_media_type_and_body(apps: Apps) -> None:
    async with served(apps) as c:
        r = await ask(c, content=b"", headers={"Content-Type": "text/plain"})
        assert r.status_code == 401
        r = await ask(c, content=b"", headers=auth(apps.keys["feedback"], "text/plain"))
        assert r.status_code == 403


async def test_no_service_is_503_before_auth(apps: Apps) -> None:
    app = create_app(apps.settings, apps.service)
    async with running(app) as c:
        # as when the model failed to load at start-up
        app.state.service, app.state.startup_error = None, "model missing"
        r = await ask(c, content=HAM, headers={"Content-Type": "message/rfc822"})
        assert r.status_code == 503 and "model missing" in r.json()["detail"]
        r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
        assert r.status_code == 503
        app.state.service = apps.service  # the lifespan's shutdown needs none of it


async def test_store_and_scoring_failures(apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    def store_down(*args: Any) -> None:
        raise StoreUnavailable("connection refused")

    def scorer_bug(*args: Any) -> Verdict:
        raise ValueError("a scorer bug")

    async with served(apps) as c:
        with monkeypatch.context() as m:
            # the verdict writer's commits fail: a record queued before its first failure
            # waits for the store; once it failed, scoring answers 503 with Retry-After
            m.setattr(apps.service.store.verdicts, "add_many", store_down)
            statuses: list[int] = []
            queued: list[str] = []
            for _ in range(100):
                r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
                statuses.append(r.status_code)
                if r.status_code == 200:
                    queued.append(r.json()["verdict_id"])
                else:
                    assert r.status_code == 503 and r.headers["retry-after"] == "2"
                    break
                await asyncio.sleep(0.01)
            assert statuses[-1] == 503, statuses
        # the store is back: the writer writes what waited and scoring resumes
        for _ in range(100):
            r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
            if r.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200
        for verdict_id in queued:
            assert apps.service.verdict(verdict_id) is not None
        with monkeypatch.context() as m:
            m.setattr(apps.service, "evaluate", scorer_bug)
            r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
            assert r.status_code == 500 and r.json() == {"detail": "internal error (logged)"}
        r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
        assert r.status_code == 200  # and it carries on


async def test_keys_not_required(apps: Apps) -> None:
    async with served(apps, require_keys=False) as c:
        r = await ask(c, content=HAM, headers={"Content-Type": "message/rfc822"})
        assert r.status_code == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", "", "message/rfc8222"])
async def test_media_type_415(apps: Apps, ctype: str) -> None:
    async with served(apps) as c:
        r = await ask(c, content=HAM, headers=auth(apps.keys["score"], ctype))
    assert r.status_code == 415


async def test_no_content_type_is_415(apps: Apps) -> None:
    async with served(apps) as c:
        headers = {"Authorization": f"Bearer {apps.keys['score']}"}
        r = await ask(c, content=HAM, headers=headers)
    assert r.status_code == 415


@pytest.mark.parametrize("raw", [b"", b"  \r\n\t "])
async def test_empty_body_400(apps: Apps, raw: bytes) -> None:
    async with served(apps) as c:
        r = await ask(c, content=raw, headers=auth(apps.keys["score"]))
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"ip": "999.1.1.1"}, {}),
        ({}, {"IP": "not-an-ip"}),
        ({"ip": ""}, {"IP": ""}),
        ({"helo": "x" * 600}, {}),
        ({"rcpt": ""}, {}),
        ({"rcpt": ["a@b.c", "x" * 600]}, {}),
        ({"surprise": "1"}, {"Helo": "h" * 513}),
    ],
)
async def test_bad_envelope_422(
    apps: Apps, params: dict[str, Any], headers: dict[str, str]
) -> None:
    async with served(apps) as c:
        r = await ask(c, content=HAM, params=params, headers=auth(apps.keys["score"], **headers))
    assert r.status_code == 422


async def test_envelope_from_query_and_headers(apps: Apps) -> None:
    a, b, c_, q = "a@x.test", "b@x.test", "c@x.test", "q@x.test"
    cases: list[tuple[dict[str, Any], list[tuple[str, str]], Envelope]] = [
        ({}, [], Envelope()),
        ({"ip": "192.0.2.7", "rcpt": [a, b]}, [], Envelope("192.0.2.7", rcpt_to=(a, b))),
        (
            {},
            [("IP", "2001:db8::1"), ("Rcpt", f"{a}, {b}"), ("Rcpt", c_)],
            Envelope("2001:db8::1", rcpt_to=(a, b, c_)),
        ),
        (
            {},
            [("Helo", "mx.example"), ("From", "s@example.org"), ("User", "u"), ("Hostname", "h")],
            Envelope(helo="mx.example", mail_from="s@example.org", auth_user="u", client_name="h"),
        ),
        (  # the query wins over the headers
            {"ip": "192.0.2.8", "from": q},
            [("IP", "192.0.2.9"), ("From", "h@x.test")],
            Envelope("192.0.2.8", mail_from=q),
        ),
        ({"ip": ""}, [("IP", "192.0.2.10")], Envelope("192.0.2.10")),  # an empty value: no value
        (
            {"ip": "192.0.2.11", "rcpt": q},
            [("Rcpt", "h@x.test"), ("IP", "bad")],
            Envelope("192.0.2.11", rcpt_to=(q,)),
        ),
        (  # the last query value wins
            {"ip": ["192.0.2.1", "192.0.2.2"]},
            [("IP", "192.0.2.3"), ("IP", "192.0.2.4")],
            Envelope("192.0.2.2"),
        ),
    ]
    async with served(apps) as c:
        for params, extra, expected in cases:
            headers = [*auth(apps.keys["score"]).items(), *extra]
            apps.envelopes.clear()
            r = await ask(c, content=HAM, params=params, headers=headers)
            assert r.status_code == 200, r.text
            assert apps.envelopes == [expected], (params, extra)


async def test_body_limits(apps: Apps) -> None:
    async with served(apps) as c:
        # declared too large: refused before reading
        r = await ask(c, content=b"x" * (LIMIT + 1), headers=auth(apps.keys["score"]))
        assert r.status_code == 413 and r.headers["connection"] == "close"

        # no Content-Length (chunked): refused while the body streams in
        async def chunks() -> AsyncIterator[bytes]:
            yield b"Subject: big\r\n\r\n"
            for _ in range(4):
                yield b"y" * (LIMIT // 2)

        r = await ask(c, content=chunks(), headers=auth(apps.keys["score"]))
        assert r.status_code == 413 and "too large" in r.json()["detail"]
        # just under the limit, in pieces: scored
        body = message(body="z" * (LIMIT - 1000))

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 5000):
                yield body[i : i + 5000]

        r = await ask(c, content=pieces(), headers=auth(apps.keys["score"]))
        assert r.status_code == 200
        assert r.json()["digest"] == hashlib.sha256(body).hexdigest()


async def test_other_methods_and_paths(apps: Apps) -> None:
    async with served(apps) as c:
        for method in ("GET", "PUT", "HEAD", "OPTIONS"):
            r = await ask(c, method, content=HAM, headers=auth(apps.keys["score"]))
            assert r.status_code == 405
        r = await ask(c, path="/v1/score/", content=HAM, headers=auth(apps.keys["score"]))
        assert r.status_code in (307, 404)
        r = await ask(c, path="/v1/Score", content=HAM, headers=auth(apps.keys["score"]))
        assert r.status_code == 404
        spec = (await c.get("/openapi.json")).json()
        op = spec["paths"]["/v1/score"]["post"]
        assert op["requestBody"]["content"].keys() == {"message/rfc822", "application/octet-stream"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ScoreResponse"
        }


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _count(route: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mailsift_http_requests_total", {"method": "POST", "route": route, "status": status}
    )
    return value or 0.0


def _verdicts(action: str) -> float:
    value = metrics.REGISTRY.get_sample_value("mailsift_verdicts_total", {"action": action})
    return value or 0.0


async def test_metrics_and_access_log(apps: Apps) -> None:
    access = logging.getLogger(ACCESS_LOGGER)
    handler, level = _Records(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    before = {st: _count("/v1/score", st) for st in ("200", "401", "403")}
    counts = {a.value: _verdicts(a.value) for a in Action}
    try:
        async with served(apps) as c:
            r = await ask(c, content=HAM, headers=auth(apps.keys["score"]))
            await ask(c, content=HAM, headers={"Content-Type": "message/rfc822"})
            await ask(c, content=HAM, headers=auth(apps.keys["feedback"]))
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert _count("/v1/score", "200") - before["200"] == 1
    assert _count("/v1/score", "401") - before["401"] == 1
    assert _count("/v1/score", "403") - before["403"] == 1
    action = r.json()["action"]
    assert {a: _verdicts(a) - n for a, n in counts.items()} == {
        a.value: 1 if a.value == action else 0 for a in Action
    }
    fields = [r.fields for r in handler.records]  # type: ignore[attr-defined]
    assert len(fields) == 3
    for f in fields:
        assert (f["method"], f["path"], f["route"]) == ("POST", "/v1/score", "/v1/score")
    assert fields[0]["status"] == 200 and fields[0]["verdict_ids"] == [r.json()["verdict_id"]]
    assert fields[0]["key_id"] == apps.keys["score"].split("_")[1]
    assert fields[1]["key_id"] is None and fields[1]["status"] == 401
    assert fields[1]["verdict_ids"] is None
    assert fields[2]["key_id"] == apps.keys["feedback"].split("_")[1]
    assert fields[2]["status"] == 403
