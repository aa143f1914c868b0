"""``/v1/quarantine`` JSON routes over real HTTP: API keys and scopes, per-user keys,
the same actions as the pages."""

from __future__ import annotations

from mailsift.api.keys import ApiKeys
from tests.quarantine.conftest import hold_sample
from tests.ui.conftest import UiServer


def _keys(server: UiServer) -> dict[str, str]:
    keys = ApiKeys(server.store, 0.0)
    return {
        "admin": keys.create("q-admin", "admin")[1],
        "score": keys.create("q-score", "score")[1],
        "feedback": keys.create("q-feedback", "feedback")[1],
        "alice": keys.create("q-alice", "feedback", owner="alice@mailsift.test")[1],
    }


def test_quarantine_json_routes(ui_server: UiServer) -> None:
    k = _keys(ui_server)
    q = ui_server.quarantine
    mine = hold_sample(q, "JSON alice", "j@x.example", "alice@mailsift.test", score=8.0)
    theirs = hold_sample(q, "JSON bob", "j@x.example", "bob@mailsift.test", score=9.0)
    c = ui_server.client()
    assert c.get("/v1/quarantine").status_code == 401
    auth = lambda name: {"Authorization": f"Bearer {k[name]}"}  # noqa: E731
    assert c.get("/v1/quarantine", headers=auth("score")).status_code == 403
    # a feedback key that speaks for anyone may not read everyone's mail
    assert c.get("/v1/quarantine", headers=auth("feedback")).status_code == 403

    r = c.get("/v1/quarantine", headers=auth("admin"), params={"sender": "j@x.example"})
    assert r.status_code == 200
    assert {e["id"] for e in r.json()["entries"]} == {mine, theirs}

    r = c.get("/v1/quarantine", headers=auth("alice"), params={"sender": "j@x.example"})
    assert [e["id"] for e in r.json()["entries"]] == [mine]
    assert c.get(f"/v1/quarantine/{theirs}", headers=auth("alice")).status_code == 404
    d = c.get(f"/v1/quarantine/{mine}", headers=auth("alice")).json()
    assert d["subject"] == "JSON alice"
    assert d["explanation"]["rules"][0]["name"] == "MEDS_PITCH"
    assert "Buy now!" in d["message"]["body"]

    assert c.post(f"/v1/quarantine/{theirs}/release", headers=auth("alice")).status_code == 404
    r = c.post(f"/v1/quarantine/{mine}/release", headers=auth("alice"))
    assert r.status_code == 200 and r.json()["status"] == "released"
    r = c.post(f"/v1/quarantine/{mine}/release", headers=auth("alice"))
    assert r.json()["already"] is True
    r = c.post(
        "/v1/quarantine/bulk",
        headers=auth("admin"),
        json={"action": "delete", "ids": [theirs, "f" * 32]},
    )
    assert r.status_code == 200
    assert r.json()["ok"] == 1 and r.json()["failed"] == 1
    assert q.get(theirs).status == "deleted"
    assert c.post("/v1/quarantine/purge", headers=auth("alice")).status_code == 403
    r = c.post("/v1/quarantine/purge", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["purged"] == 0
    assert (
        c.get("/v1/quarantine", headers=auth("admin"), params={"sort": "id;drop"}).status_code
        == 422
    )
    actors = {e.actor for e in ui_server.store.audit.recent(action="quarantine.release")}
    assert any(a.startswith("api-key:") for a in actors)
