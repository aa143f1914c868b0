"""The review pages over real HTTP (uvicorn): security headers on every response, login,
sessions, CSRF, who sees what, and actions through the forms."""

from __future__ import annotations

import re

import httpx

from mailsift.api.ui.security import CSP
from tests.quarantine.conftest import hold_sample
from tests.ui.conftest import UiServer


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _assert_secure(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "default-src 'none'" in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"


def test_every_ui_response_carries_the_csp(ui_server: UiServer) -> None:
    c = ui_server.client()
    for path in (
        "/ui/login",
        "/ui/",
        "/ui/quarantine",
        "/ui/dashboard",
        "/ui/static/ui.css",
        "/ui/static/ui.js",
        "/ui/static/nope.css",
        "/ui/static/..%2Fsecurity.py",
        "/ui/quarantine/" + "0" * 32,
    ):
        r = c.get(path)
        _assert_secure(r)
    r = c.post("/ui/quarantine", data={"action": "release"})
    _assert_secure(r)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert c.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")


def test_login_sets_a_hardened_session_cookie(ui_server: UiServer) -> None:
    c = ui_server.client()
    r = c.get("/ui/login")
    login_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
    r = c.post(
        "/ui/login",
        data={"user": "alice@mailsift.test", "password": "alice-password-1", "csrf": _csrf(r.text)},
    )
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("mailsift_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie
    page = c.get("/ui/quarantine")
    assert page.status_code == 200 and "alice@mailsift.test" in page.text


def test_secure_flag_follows_settings(ui_server: UiServer) -> None:
    from fastapi import Response

    from mailsift.api.ui.security import SessionCodec

    settings = ui_server.settings.model_copy(deep=True)
    settings.ui.secure_cookies = True
    resp = Response()
    codec = SessionCodec(settings, ui_server.store)
    s = codec.start(None, resp, "alice@mailsift.test", False, "credential")
    assert "; secure" in resp.headers["set-cookie"].lower()
    codec.revoke(s)


def test_wrong_password_and_login_csrf(ui_server: UiServer) -> None:
    c = ui_server.client()
    token = _csrf(c.get("/ui/login").text)
    r = c.post("/ui/login", data={"user": "bob@mailsift.test", "password": "nope", "csrf": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert "mailsift_session" not in c.cookies
    # a login form posted from elsewhere (no login cookie / token) is refused
    other = ui_server.client()
    r = other.post(
        "/ui/login", data={"user": "bob@mailsift.test", "password": "bob-password-2", "csrf": token}
    )
    assert r.status_code == 403
    assert "mailsift_session" not in other.cookies


def test_forged_or_expired_session_is_refused(ui_server: UiServer) -> None:
    c = ui_server.client(cookies={"mailsift_session": "eyJ1IjoiYWRtaW4ifQ.forged.sig"})
    r = c.get("/ui/quarantine")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"


def test_users_see_their_own_mail_admins_all(ui_server: UiServer) -> None:
    q = ui_server.quarantine
    to_alice = hold_sample(q, "For Alice only", "s@x.example", "alice@mailsift.test")
    to_bob = hold_sample(q, "For Bob only", "s@x.example", "bob@mailsift.test")
    alice = ui_server.login("alice@mailsift.test")
    page = alice.get("/ui/quarantine").text
    assert "For Alice only" in page and "For Bob only" not in page
    assert alice.get(f"/ui/quarantine/{to_bob}").status_code == 404
    assert alice.get(f"/ui/quarantine/{to_alice}").status_code == 200
    assert alice.get("/ui/dashboard").status_code == 403
    admin = ui_server.login("admin@mailsift.test")
    page = admin.get("/ui/quarantine").text
    assert "For Alice only" in page and "For Bob only" in page
    # alice cannot act on bob's mail through a crafted form either
    token = _csrf(alice.get("/ui/quarantine").text)
    r = alice.post("/ui/quarantine", data={"csrf": token, "action": "delete", "id": to_bob})
    assert r.status_code == 303
    assert q.get(to_bob).status == "held"


def test_actions_need_the_csrf_token(ui_server: UiServer) -> None:
    q = ui_server.quarantine
    qid = hold_sample(q, "CSRF target", "s@x.example", "alice@mailsift.test")
    alice = ui_server.login("alice@mailsift.test")
    for data in ({"action": "delete"}, {"action": "delete", "csrf": "wrong"}):
        r = alice.post(f"/ui/quarantine/{qid}/action", data=data)
        assert r.status_code == 403
        _assert_secure(r)
    assert q.get(qid).status == "held"
    # another session's token does not work either
    bob_token = _csrf(ui_server.login("bob@mailsift.test").get("/ui/quarantine").text)
    r = alice.post(f"/ui/quarantine/{qid}/action", data={"action": "delete", "csrf": bob_token})
    assert r.status_code == 403
    token = _csrf(alice.get(f"/ui/quarantine/{qid}").text)
    r = alice.post(f"/ui/quarantine/{qid}/action", data={"action": "delete", "csrf": token})
    assert r.status_code == 303
    assert q.get(qid).status == "deleted"
    audit = ui_server.store.audit.recent(action="quarantine.delete", actor="ui:alice@mailsift.test")
    assert qid in [a.target for a in audit]


def test_list_filters_and_sorting(ui_server: UiServer) -> None:
    q = ui_server.quarantine
    low = hold_sample(q, "Filter low", "low@filter.example", "bob@mailsift.test", score=5.5)
    high = hold_sample(q, "Filter high", "high@filter.example", "bob@mailsift.test", score=15.0)
    bob = ui_server.login("bob@mailsift.test")
    page = bob.get(
        "/ui/quarantine", params={"sender": "filter.example", "sort": "score", "order": "asc"}
    ).text
    assert page.index(low) < page.index(high)
    page = bob.get("/ui/quarantine", params={"sender": "filter.example", "min_score": "10"}).text
    assert high in page and low not in page
    assert bob.get("/ui/quarantine", params={"min_score": "abc"}).status_code == 400
    page = bob.get("/ui/quarantine", params={"since": "2099-01-01"}).text
    assert high not in page


def test_failed_logins_are_throttled(ui_server: UiServer, no_failures: None) -> None:
    c = ui_server.client()
    for _ in range(5):
        token = _csrf(c.get("/ui/login").text)
        r = c.post(
            "/ui/login", data={"user": "bob@mailsift.test", "password": "guess", "csrf": token}
        )
        assert r.status_code == 401
    token = _csrf(c.get("/ui/login").text)
    r = c.post(
        "/ui/login",
        data={"user": "bob@mailsift.test", "password": "bob-password-2", "csrf": token},
    )
    assert r.status_code == 429  # even the right password waits now, from this address
    assert "mailsift_session" not in c.cookies
    # the same account from another address, and another account from this one, get in
    with ui_server.client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        assert other.get("/ui/login").status_code == 200
    assert (
        ui_server.login("bob@mailsift.test", via="127.0.0.2").get("/ui/quarantine").status_code
        == 200
    )
    assert ui_server.login("alice@mailsift.test").get("/ui/quarantine").status_code == 200
    ui_server.store.execute("DELETE FROM ui_login_failures")  # the window has passed
    assert ui_server.login("bob@mailsift.test").get("/ui/quarantine").status_code == 200


def test_logout_needs_csrf_and_ends_the_session(ui_server: UiServer) -> None:
    c = ui_server.login("alice@mailsift.test")
    assert c.post("/ui/logout", data={}).status_code == 403
    token = _csrf(c.get("/ui/quarantine").text)
    r = c.post("/ui/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert c.get("/ui/quarantine").status_code == 303
