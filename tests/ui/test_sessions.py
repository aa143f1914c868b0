"""Server-side sessions and the login throttle, against the real server (uvicorn on loopback,
sessions and failed logins in its SQLite store; the store contract tests run the same SQL on
PostgreSQL).

- A copy of the session cookie taken before logout (or before a password change, or before
  the account is disabled) neither lists nor acts on the quarantine afterwards, in httpx
  and in Chromium.
- The throttle is keyed on (client address, account): a sprayer trying 40 account names
  from one address does not lock out a real user of another account behind that address;
  past the soft limits (per address, per account, in all) attempts are slowed, not refused.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from mailsift.quarantine import HELD
from tests.quarantine.conftest import envelope, sample_message, sample_verdict
from tests.ui.conftest import PASSWORDS, UiServer

from .test_browser import login as browser_login


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None, html[:500]
    return m.group(1)


def _held_for(ui_server: UiServer, user: str, subject: str) -> str:
    return ui_server.quarantine.hold(
        sample_message(subject, to=user), envelope("s@x.example", user), sample_verdict()
    )


def _replay(ui_server: UiServer, cookie: str, csrf: str, qid: str) -> None:
    """The old cookie lists nothing, shows nothing and acts on nothing."""
    with ui_server.client(cookies={"mailsift_session": cookie}) as thief:
        for path in ("/ui/quarantine", f"/ui/quarantine/{qid}", "/ui/dashboard"):
            r = thief.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
        r = thief.post(f"/ui/quarantine/{qid}/action", data={"action": "delete", "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        r = thief.post("/ui/quarantine", data={"action": "release", "id": qid, "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert ui_server.quarantine.get(qid).status == HELD


def _login_attempt(
    ui_server: UiServer, user: str, password: str, via: str = ""
) -> tuple[httpx.Response, float]:
    """One login from the loopback address ``via``: (the answer, seconds it took)."""
    kw: dict[str, Any] = {}
    if via:
        kw["transport"] = httpx.HTTPTransport(local_address=via)
    with ui_server.client(**kw) as c:
        token = _csrf(c.get("/ui/login").text)
        start = time.monotonic()
        r = c.post("/ui/login", data={"user": user, "password": password, "csrf": token})
        return r, time.monotonic() - start


def test_logout_ends_the_session_for_every_copy_of_the_cookie(ui_server: UiServer) -> None:
    qid = _held_for(ui_server, "alice@mailsift.test", "Logout replay")
    alice = ui_server.login("alice@mailsift.test")
    cookie = alice.cookies["mailsift_session"]
    page = alice.get("/ui/quarantine")
    assert page.status_code == 200 and qid in page.text
    csrf = _csrf(page.text)
    # the copy works while the session lives
    with ui_server.client(cookies={"mailsift_session": cookie}) as copy:
        assert qid in copy.get("/ui/quarantine").text
    r = alice.post("/ui/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    _replay(ui_server, cookie, csrf, qid)
    # a fresh login is a new session with a new cookie
    again = ui_server.login("alice@mailsift.test")
    assert again.cookies["mailsift_session"] != cookie
    assert qid in again.get("/ui/quarantine").text


def test_a_password_change_ends_every_session(ui_server: UiServer) -> None:
    user = "alice@mailsift.test"
    qid = _held_for(ui_server, user, "Password change")
    first, second = ui_server.login(user), ui_server.login(user)
    cookies = [c.cookies["mailsift_session"] for c in (first, second)]
    csrf = _csrf(first.get("/ui/quarantine").text)
    try:
        ui_server.accounts.passwd(user, "a-new-password-4")  # as `mailsift accounts passwd`
        for cookie in cookies:
            _replay(ui_server, cookie, csrf, qid)
        r, _ = _login_attempt(ui_server, user, PASSWORDS[user])
        assert r.status_code == 401
        fresh = ui_server.login(user, "a-new-password-4")
        assert qid in fresh.get("/ui/quarantine").text
    finally:
        ui_server.accounts.passwd(user, PASSWORDS[user])
        ui_server.store.execute("DELETE FROM ui_login_failures")


def test_disabling_the_account_ends_its_sessions(ui_server: UiServer) -> None:
    user = "bob@mailsift.test"
    qid = _held_for(ui_server, user, "Disabled account")
    bob = ui_server.login(user)
    cookie = bob.cookies["mailsift_session"]
    csrf = _csrf(bob.get("/ui/quarantine").text)
    ui_server.accounts.disable(user)
    try:
        _replay(ui_server, cookie, csrf, qid)
    finally:
        ui_server.accounts.enable(user)
    _replay(ui_server, cookie, csrf, qid)  # enabling again does not bring the session back


def test_logout_replay_in_chromium(ui_server: UiServer, browser: Any) -> None:
    qid = _held_for(ui_server, "admin@mailsift.test", "Browser logout replay")
    context = browser.new_context()
    try:
        page = context.new_page()
        browser_login(page, ui_server.base_url, "admin@mailsift.test")
        assert page.locator(f"a[href='/ui/quarantine/{qid}']").count() >= 1
        stolen = [c for c in context.cookies() if c["name"] == "mailsift_session"]
        assert len(stolen) == 1
        page.click("#logout")
        page.wait_for_url("**/ui/login")
    finally:
        context.close()
    # another browser given the cookie copied before logout lands on the login form
    replay = browser.new_context()
    try:
        replay.add_cookies(stolen)
        page = replay.new_page()
        page.goto(ui_server.base_url + "/ui/quarantine")
        assert page.url.endswith("/ui/login")
        assert page.locator("#login").count() == 1
        assert qid not in page.content()
    finally:
        replay.close()


def test_a_sprayer_does_not_lock_out_a_neighbour(
    ui_server: UiServer, no_failures: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui = ui_server.settings.ui
    monkeypatch.setattr(ui, "login_slow_delay", 0.1)
    nat = "127.0.0.3"  # the sprayer and a real user behind one address
    for i in range(40):
        r, _ = _login_attempt(ui_server, f"user{i}@mailsift.test", "Winter2026!", via=nat)
        assert r.status_code == 401, (i, r.status_code)
    # the soft limit per address is reached: the neighbour is slowed, then let in
    assert ui_server.store.sessions.failures(0.0, client_ip=nat) == 40
    r, took = _login_attempt(ui_server, "bob@mailsift.test", PASSWORDS["bob@mailsift.test"], nat)
    assert r.status_code == 303 and r.headers["location"] == "/ui/quarantine"
    assert took >= ui.login_slow_delay
    # elsewhere nobody is slowed (40 < the soft total of 100)
    r, took = _login_attempt(ui_server, "alice@mailsift.test", PASSWORDS["alice@mailsift.test"])
    assert r.status_code == 303
    # the same sprayed name, 5 failures from the same address: that pair only is refused
    for _ in range(4):
        r, _ = _login_attempt(ui_server, "user0@mailsift.test", "Spring2026!", via=nat)
        assert r.status_code == 401
    r, _ = _login_attempt(ui_server, "user0@mailsift.test", "Summer2026!", via=nat)
    assert r.status_code == 429
    r, _ = _login_attempt(ui_server, "bob@mailsift.test", PASSWORDS["bob@mailsift.test"], nat)
    assert r.status_code == 303


def test_soft_limits_per_account_and_in_all_slow_but_never_refuse(
    ui_server: UiServer, no_failures: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui = ui_server.settings.ui
    monkeypatch.setattr(ui, "login_slow_delay", 0.1)
    user, password = "bob@mailsift.test", PASSWORDS["bob@mailsift.test"]
    # one account guessed from many addresses (2 each, under the per-pair limit)
    for i in range(ui.login_soft_per_account):
        r, _ = _login_attempt(ui_server, user, "guess", via=f"127.0.1.{i // 2 + 1}")
        assert r.status_code == 401
    r, took = _login_attempt(ui_server, user, password, via="127.0.2.1")
    assert r.status_code == 303 and took >= ui.login_slow_delay
    # past the soft total, everyone waits a little, and still gets in
    monkeypatch.setattr(ui, "login_soft_total", ui.login_soft_per_account)
    r, took = _login_attempt(ui_server, "alice@mailsift.test", PASSWORDS["alice@mailsift.test"])
    assert r.status_code == 303 and took >= ui.login_slow_delay
