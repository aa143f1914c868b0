"""The HTTP API against the real server (``mailsift serve api``: uvicorn, 2 workers, on
loopback): every route, authentication and scopes, limits and malformed input, logs and
metrics. Reload under load is in test_reload.py, schema fuzzing in test_schemathesis.py."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.api.messages import GTUBE_MSG, HAM, SPAM, b64, message
from tests.fixtures.api import ApiServer

pytestmark = pytest.mark.integration

V1_ROUTES = {
    "/v1/score",
    "/v1/score/batch",
    "/v1/feedback",
    "/v1/verdicts/{verdict_id}",
    "/v1/models",
    "/v1/models/reload",
    "/v1/lists/users/{user}/{kind}",
    "/v1/lists/global/{kind}",
    "/healthz",
    "/readyz",
    "/metrics",
}


def score(server: ApiServer, raw: bytes, key: str | None = None, **kw: object) -> httpx.Response:
    with server.client(key or server.keys["score"]) as c:
        headers = {"Content-Type": "message/rfc822", **kw.pop("headers", {})}  # type: ignore[dict-item]
        return c.post("/v1/score", content=raw, headers=headers, **kw)  # type: ignore[arg-type]


def settle() -> None:
    """Wait out the sender-list cache of every worker (``StoreListPolicy.ttl``, 2 s): a list
    edit taken by one worker reaches the other within that time."""
    time.sleep(2.5)


# ---- health, schema ----------------------------------------------------------------------


def test_health_ready_and_openapi(api_server: ApiServer) -> None:
    with api_server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["ready"] and body["model_loaded"] and body["store_reachable"]
        assert body["model_version"]
        spec = c.get("/openapi.json").json()
    assert V1_ROUTES <= set(spec["paths"])
    # every operation documents a response model
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok and ok.get("content"), f"{method.upper()} {path} has no response schema"
    assert spec["paths"]["/v1/score"]["post"]["requestBody"]["content"].keys() == {
        "message/rfc822",
        "application/octet-stream",
    }


# ---- authentication and scopes -----------------------------------------------------------


def test_no_key_is_401_with_challenge(api_server: ApiServer) -> None:
    with api_server.client() as c:
        r = c.post("/v1/score", content=HAM, headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "API key is required" in r.json()["detail"]


@pytest.mark.parametrize(
    "auth", ["Bearer msk_000000000000_" + "A" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz"]
)
def test_bad_key_is_401(api_server: ApiServer, auth: str) -> None:
    with httpx.Client(base_url=api_server.base_url, headers={"Authorization": auth}) as c:
        r = c.get("/v1/models")
    assert r.status_code == 401
    assert "Bearer" in r.headers["www-authenticate"]


def test_scopes(api_server: ApiServer) -> None:
    k = api_server.keys
    with api_server.client(k["score"]) as c:
        r = c.post("/v1/models/reload")
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        assert c.post("/v1/feedback", json={"label": "spam", "verdict_id": "x"}).status_code == 403
        assert c.get("/v1/lists/global/block").status_code == 403
    with api_server.client(k["feedback"]) as c:
        assert (
            c.post("/v1/score", content=HAM, headers={"Content-Type": "message/rfc822"}).status_code
            == 403
        )
        # a feedback key bound to no user may not speak for one
        r = c.get("/v1/lists/users/alice@mailsift.test/trusted")
        assert r.status_code == 403 and "bound to no user" in r.json()["detail"]
        assert c.post("/v1/lists/global/block", json={"pattern": "*@x.example"}).status_code == 403
    # admin implies every scope
    assert score(api_server, HAM, key=k["admin"]).status_code == 200


def test_keys_cli_create_list_revoke(api_server: ApiServer) -> None:
    token = api_server.create_key("short-lived", "score")
    key_id = token.split("_")[1]
    listed = api_server.cli("keys", "list", "--json").stdout.splitlines()
    assert any(json.loads(line)["key_id"] == key_id for line in listed)
    assert token not in api_server.cli("keys", "list").stdout
    assert score(api_server, HAM, key=token).status_code == 200
    assert api_server.cli("keys", "revoke", key_id).returncode == 0
    assert score(api_server, HAM, key=token).status_code == 401  # key cache is off in tests
    assert api_server.cli("keys", "revoke", key_id, check=False).returncode == 1
    bad = api_server.cli("keys", "create", "--name", "x", "--scope", "root", check=False)
    assert bad.returncode != 0 and "scopes must be among" in bad.stderr


def test_user_bound_key_acts_only_for_its_user(api_server: ApiServer) -> None:
    token = api_server.create_key("alice-webmail", "feedback", user="alice@mailsift.test")
    with api_server.client(token) as c:
        assert c.get("/v1/lists/users/alice@mailsift.test/trusted").status_code == 200
        r = c.get("/v1/lists/users/bob@mailsift.test/trusted")
        assert r.status_code == 403 and "alice@mailsift.test" in r.json()["detail"]


# ---- scoring -----------------------------------------------------------------------------


def test_score_explains_itself(api_server: ApiServer) -> None:
    r = score(api_server, SPAM)
    assert r.status_code == 200, r.text
    v = r.json()
    assert len(v["verdict_id"]) == 32
    assert 0.0 <= v["probability"] <= 1.0
    assert v["action"] in ("ham", "spam", "hold", "reject")
    assert v["is_spam"] == (v["action"] != "ham")
    assert v["tokens"] and all({"token", "weight"} <= set(t) for t in v["tokens"])
    assert all({"name", "score", "description"} <= set(h) for h in v["rules"])
    assert v["model_version"] and v["elapsed_ms"] > 0 and len(v["digest"]) == 64
    ham = score(api_server, HAM).json()
    assert ham["probability"] < v["probability"]


def test_score_gtube_and_octet_stream(api_server: ApiServer) -> None:
    r = score(api_server, GTUBE_MSG, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    v = r.json()
    assert v["probability"] == 1.0 and v["action"] == "reject"


def test_score_envelope_from_query_and_headers(api_server: ApiServer) -> None:
    sender = f"{uuid.uuid4().hex[:8]}@trusted-partner.example"
    raw = message(sender=sender, to="dave@mailsift.test", subject="q3 numbers", msgid="<q3@x>")
    dave = api_server.create_key("dave-webmail", "feedback", user="dave@mailsift.test")
    with api_server.client(dave) as c:
        r = c.post("/v1/lists/users/dave@mailsift.test/trusted", json={"pattern": sender})
        assert r.status_code == 201
    # the recipient comes from the rspamd-style header: dave's trusted list applies
    settle()
    hdrs = {"Rcpt": "dave@mailsift.test", "IP": "192.0.2.7"}
    v = score(api_server, raw, headers=hdrs).json()
    assert v["list_decision"] == "trusted" and v["action"] == "ham"
    # ... and from the query string (several times: each worker answers some)
    for _ in range(4):
        q = {"rcpt": "dave@mailsift.test", "ip": "2001:db8::1"}
        assert score(api_server, raw, params=q).json()["list_decision"] == "trusted"
    # another recipient: no list applies
    v = score(api_server, raw, params={"rcpt": "erin@mailsift.test"}).json()
    assert v["list_decision"] is None


def test_bad_envelope_is_422_with_reason(api_server: ApiServer) -> None:
    r = score(api_server, HAM, params={"ip": "999.1.1.1"})
    assert r.status_code == 422
    assert "not an IP address" in json.dumps(r.json())
    r = score(api_server, HAM, headers={"IP": "not-an-ip"})
    assert r.status_code == 422


def test_content_type_and_empty_body(api_server: ApiServer) -> None:
    for ctype in ("text/plain", "application/json", ""):
        r = score(api_server, HAM, headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
        assert "message/rfc822" in r.json()["detail"]
    r = score(api_server, b"")
    assert r.status_code == 400 and "empty" in r.json()["detail"]


def test_malformed_messages_are_scored_not_500(api_server: ApiServer) -> None:
    for raw in (b"\x00\xff\xfe garbage", b"no headers at all", b"Subject: =?bad?Q?x\r\n\r\n\x80"):
        r = score(api_server, raw)
        assert r.status_code == 200, r.text


def test_body_limit_declared_length_is_413_before_reading(api_server: ApiServer) -> None:
    limit = api_server.settings.api.max_body_bytes
    r = score(api_server, b"x" * (limit + 1))
    assert r.status_code == 413
    assert f"limit is {limit} bytes" in r.json()["detail"]


def test_body_limit_streamed_chunked_upload_is_413(api_server: ApiServer) -> None:
    limit = api_server.settings.api.max_body_bytes
    sent = 0

    def chunks():  # no Content-Length: chunked transfer encoding, far past the limit
        nonlocal sent
        header = b"Subject: big\r\n\r\n"
        sent += len(header)
        yield header
        for _ in range(64):
            sent += 65536
            yield b"y" * 65536

    with api_server.client(api_server.keys["score"]) as c:
        try:
            r = c.post("/v1/score", content=chunks(), headers={"Content-Type": "message/rfc822"})
            assert r.status_code == 413
            assert "too large" in r.json()["detail"]
        except httpx.TransportError:
            pass  # the server may close the connection before the client finished sending
    assert sent > limit
    assert score(api_server, HAM).status_code == 200  # and the server is fine


# ---- batch -------------------------------------------------------------------------------


def test_batch_json(api_server: ApiServer) -> None:
    body = {
        "messages": [
            {"id": "a", "message": b64(HAM)},
            {"id": "b", "message": b64(SPAM), "envelope": {"ip": "192.0.2.1", "rcpt": ["x@y.z"]}},
            {"message": b64(GTUBE_MSG)},
        ]
    }
    with api_server.client(api_server.keys["score"]) as c:
        r = c.post("/v1/score/batch", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["a", "b", None]
    assert results[2]["verdict"]["action"] == "reject"
    assert len({x["verdict"]["verdict_id"] for x in results}) == 3


def test_batch_multipart(api_server: ApiServer) -> None:
    files = [
        ("message", ("ham.eml", HAM, "message/rfc822")),
        ("message", ("spam.eml", SPAM, "message/rfc822")),
    ]
    with api_server.client(api_server.keys["score"]) as c:
        r = c.post("/v1/score/batch", files=files)
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["results"]] == ["ham.eml", "spam.eml"]
        r = c.post("/v1/score/batch", data={"message": "not a file"}, files=[files[0]])
        assert r.status_code == 422 and "not a file part" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"messages": []}, "at least 1"),
        ({"messages": [{"message": "***not base64***"}]}, "not valid base64"),
        ({"messages": [{"message": b64(HAM), "extra": 1}]}, "Extra inputs"),
        ({"messages": [{"message": b64(HAM), "envelope": {"ip": "x"}}]}, "not an IP address"),
        ({"messages": [{"message": b64(HAM)}] * 51}, "at most 50"),
    ],
)
def test_batch_bad_input_is_422(api_server: ApiServer, body: dict, reason: str) -> None:
    with api_server.client(api_server.keys["score"]) as c:
        r = c.post("/v1/score/batch", json=body)
    assert r.status_code == 422
    assert reason in json.dumps(r.json())


def test_batch_malformed_json_and_content_type(api_server: ApiServer) -> None:
    with api_server.client(api_server.keys["score"]) as c:
        r = c.post(
            "/v1/score/batch", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422
        # not UTF-8: the 422 still renders (it never echoes the input)
        r = c.post(
            "/v1/score/batch", content=b"x\xff\xfe", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        r = c.post("/v1/score/batch", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post(
            "/v1/score/batch",
            content=b"--zz\r\nbroken",
            headers={"Content-Type": "multipart/form-data; boundary=zz"},
        )
        assert 400 <= r.status_code < 500


# ---- verdicts, feedback, lists -----------------------------------------------------------


def test_verdict_is_recorded(api_server: ApiServer) -> None:
    v = score(api_server, SPAM, params={"rcpt": "alice@mailsift.test", "ip": "192.0.2.9"}).json()
    with api_server.client(api_server.keys["score"]) as c:
        r = c.get(f"/v1/verdicts/{v['verdict_id']}")
        assert r.status_code == 200
        rec = r.json()
        assert rec["digest"] == v["digest"] and rec["action"] == v["action"]
        assert rec["recipients"] == ["alice@mailsift.test"] and rec["client_ip"] == "192.0.2.9"
        assert c.get(f"/v1/verdicts/{uuid.uuid4().hex}").status_code == 404
        assert c.get("/v1/verdicts/bad%20id!").status_code == 422


def test_feedback_by_verdict_and_by_message(api_server: ApiServer) -> None:
    raw = message(subject=f"feedback {uuid.uuid4().hex}", msgid=f"<{uuid.uuid4().hex}@x>")
    v = score(api_server, raw, params={"rcpt": "alice@mailsift.test"}).json()
    alice = api_server.create_key("alice-fb", "feedback", user="alice@mailsift.test")
    with api_server.client(alice) as c:
        r = c.post(
            "/v1/feedback",
            json={"verdict_id": v["verdict_id"], "label": "spam", "user": "alice@mailsift.test"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["digest"] == v["digest"] and r.json()["label"] == "spam"
        assert r.json()["status"] == "personal" and r.json()["scope"] == "personal"
        other = message(subject=f"by raw {uuid.uuid4().hex}", msgid=f"<{uuid.uuid4().hex}@x>")
        r = c.post("/v1/feedback", json={"message": b64(other), "label": "ham"})  # user: alice
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "personal"
        # a bound key speaks only for its user
        r = c.post(
            "/v1/feedback",
            json={"message": b64(other), "label": "ham", "user": "bob@mailsift.test"},
        )
        assert r.status_code == 403 and "alice@mailsift.test" in r.json()["detail"]
        # malformed reports: 4xx with the reason
        r = c.post("/v1/feedback", json={"label": "spam", "user": "a@b.c"})
        assert r.status_code == 422 and "exactly one" in r.json()["detail"]
        r = c.post(
            "/v1/feedback",
            json={"label": "spam", "user": "a@b.c", "verdict_id": "x", "message": b64(HAM)},
        )
        assert r.status_code == 422
        r = c.post("/v1/feedback", json={"label": "maybe", "verdict_id": "x", "user": "a@b.c"})
        assert r.status_code == 422
        r = c.post("/v1/feedback", json={"label": "spam", "verdict_id": uuid.uuid4().hex})
        assert r.status_code == 404


def test_user_lists_crud(api_server: ApiServer) -> None:
    base = "/v1/lists/users/frank@mailsift.test"
    frank = api_server.create_key("frank-webmail", "feedback", user="frank@mailsift.test")
    with api_server.client(frank) as c:
        r = c.post(f"{base}/untrusted", json={"pattern": "*@spammy.example", "comment": "junk"})
        assert r.status_code == 201 and r.json()["changed"]
        r = c.post(f"{base}/untrusted", json={"pattern": "*@spammy.example"})
        assert r.status_code == 200 and not r.json()["changed"]
        entries = c.get(f"{base}/untrusted").json()["entries"]
        assert [e["pattern"] for e in entries] == ["*@spammy.example"]
        assert entries[0]["owner"] == "frank@mailsift.test" and entries[0]["comment"] == "junk"
        assert c.post(f"{base}/untrusted", json={"pattern": "has space"}).status_code == 422
        assert c.post(f"{base}/sometimes", json={"pattern": "a@b.c"}).status_code == 422
        assert c.get("/v1/lists/users/frank@mailsift.test/allow").status_code == 422
    # untrusted sender: always spam for frank
    raw = message(sender="news@spammy.example", to="frank@mailsift.test")
    settle()
    v = score(api_server, raw, params={"rcpt": "frank@mailsift.test"}).json()
    assert v["list_decision"] == "untrusted" and v["action"] != "ham"
    with api_server.client(frank) as c:
        r = c.delete(f"{base}/untrusted", params={"pattern": "*@spammy.example"})
        assert r.status_code == 200 and r.json()["changed"]
        assert (
            c.delete(f"{base}/untrusted", params={"pattern": "*@spammy.example"}).status_code == 404
        )
        assert c.get(f"{base}/untrusted").json()["entries"] == []


def test_global_lists_admin_only(api_server: ApiServer) -> None:
    with api_server.client(api_server.admin_key) as c:
        r = c.post("/v1/lists/global/block", json={"pattern": "*@blocked.example"})
        assert r.status_code == 201
        assert "*@blocked.example" in [
            e["pattern"] for e in c.get("/v1/lists/global/block").json()["entries"]
        ]
    raw = message(sender="x@blocked.example")
    settle()
    for _ in range(4):  # every worker
        v = score(api_server, raw).json()
        assert v["list_decision"] == "block" and v["action"] == "reject"
    with api_server.client(api_server.admin_key) as c:
        r = c.delete("/v1/lists/global/block", params={"pattern": "*@blocked.example"})
        assert r.status_code == 200
    settle()
    for _ in range(4):
        assert score(api_server, raw).json()["list_decision"] is None


# ---- models, metrics, logs ---------------------------------------------------------------


def test_models_listing(api_server: ApiServer) -> None:
    with api_server.client(api_server.keys["score"]) as c:
        r = c.get("/v1/models")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["serving"]["version"] and m["serving"]["path"]
    assert isinstance(m["versions"], list)


def test_metrics(api_server: ApiServer) -> None:
    score(api_server, HAM)
    with api_server.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert "mailsift_http_requests_total{" in text and 'route="/v1/score"' in text
    assert "mailsift_http_request_duration_seconds_bucket" in text
    assert "mailsift_verdicts_total{" in text and 'action="ham"' in text
    assert "mailsift_model_info{" in text


def test_logs_are_json_with_verdict_ids_and_no_bodies(api_server: ApiServer) -> None:
    marker = f"SECRET-BODY-{uuid.uuid4().hex}"
    v = score(api_server, message(body=f"do not log this: {marker}\n")).json()
    deadline = time.monotonic() + 10
    while True:  # the access line is written just after the response
        logs = api_server.logs()
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        access = [x for x in lines if x.get("logger") == "mailsift.api.access"]
        if any(v["verdict_id"] in (x.get("verdict_ids") or []) for x in access):
            break
        assert time.monotonic() < deadline, "verdict id not in the access log"
        time.sleep(0.1)
    assert marker not in logs
    assert all({"ts", "level", "method", "route", "status", "ms"} <= set(x) for x in access)
