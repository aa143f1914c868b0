"""Feedback keys and identities over HTTP (the real 2-worker server): an unbound key may
not speak for users, bound keys speak for their user only, rate caps count per reporter,
trusted keys teach everyone."""

from __future__ import annotations

import uuid

from tests.api.messages import SPAM, b64, message
from tests.fixtures.api import ApiServer

from .test_server import score, settle


def test_an_unbound_key_naming_1000_users_teaches_nothing(api_server: ApiServer) -> None:
    before = score(api_server, SPAM, params={"rcpt": "zed@mailsift.test"}).json()["probability"]
    body = {"message": b64(SPAM), "label": "ham"}
    with api_server.client(api_server.keys["feedback"]) as c:
        codes = {
            c.post("/v1/feedback", json={**body, "user": f"u{n}@d{n}.example"}).status_code
            for n in range(1000)
        }
        assert codes == {403}
        r = c.post("/v1/feedback", json=body)  # nor for nobody
        assert r.status_code == 403 and "bound to no user" in r.json()["detail"]
    settle()
    after = score(api_server, SPAM, params={"rcpt": "zed@mailsift.test"}).json()["probability"]
    assert abs(after - before) < 0.1


def test_a_flood_from_one_bound_key_never_locks_out_another(api_server: ApiServer) -> None:
    tag = uuid.uuid4().hex[:8]
    mallory = api_server.create_key(f"mallory-{tag}", "feedback", user=f"mallory-{tag}@evil.test")
    alice = api_server.create_key(f"alice-{tag}", "feedback", user=f"alice-{tag}@mailsift.test")
    codes: dict[int, int] = {}
    with api_server.client(mallory) as c:
        for n in range(230):  # past feedback.per_user_per_hour (200)
            raw = message(subject=f"flood {tag} {n}", msgid=f"<{tag}-{n}@x>")
            code = c.post("/v1/feedback", json={"message": b64(raw), "label": "ham"}).status_code
            codes[code] = codes.get(code, 0) + 1
    assert codes == {200: 200, 429: 30}
    with api_server.client(alice) as c:
        raw = message(subject=f"mine {tag}", msgid=f"<{tag}-alice@x>")
        r = c.post("/v1/feedback", json={"message": b64(raw), "label": "spam"})
        assert r.status_code == 200 and r.json()["status"] == "personal", r.text


def test_a_trusted_key_teaches_everyone(api_server: ApiServer) -> None:
    trap = api_server.create_key("spam-trap", "trusted")
    raw = message(subject=f"trap {uuid.uuid4().hex}", msgid=f"<{uuid.uuid4().hex}@x>")
    with api_server.client(trap) as c:
        r = c.post("/v1/feedback", json={"message": b64(raw), "label": "spam"})
        assert r.status_code == 200 and r.json()["scope"] == "global", r.text
        assert r.json()["status"] == "learned"
        # a trusted key is no admin: it edits nobody's lists
        assert c.get("/v1/lists/users/alice@mailsift.test/trusted").status_code == 403
