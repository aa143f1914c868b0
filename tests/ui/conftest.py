"""The review pages served for real: the API app (``create_app``) under uvicorn on a loopback
port in this process (a thread), over a SQLite store of its own holding the accounts, a
Quarantine whose next hop is a recording SMTP server on loopback, and a browser fixture
(Debian's chromium driven by Playwright's sync API; never ``playwright install``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI

from mailsift.api.app import create_app
from mailsift.api.keys import ApiKeys
from mailsift.config import PROJECT_ROOT, Settings
from mailsift.quarantine import Quarantine
from mailsift.smtpd.accounts import Accounts
from mailsift.store import Store, open_store
from tests.fixtures.ports import free_port
from tests.fixtures.smtp import Sink
from tests.quarantine.conftest import make_settings

SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# argon2id with small costs: the login tests verify dozens of passwords, each ~0.5 s with the
# production parameters on a loaded test machine (the parameters do not change behaviour)
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORDS = {
    "alice@mailsift.test": "alice-password-1",
    "bob@mailsift.test": "bob-password-2",
    "admin@mailsift.test": "admin-password-3",
}


@dataclass
class UiServer:
    base_url: str
    settings: Settings
    store: Store
    quarantine: Quarantine
    accounts: Accounts
    next_hop: Sink
    app: object

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kw)  # type: ignore[arg-type]

    def login(self, user: str, password: str | None = None, via: str = "") -> httpx.Client:
        """A client logged in as ``user`` (from the loopback address ``via``, if given)."""
        kw: dict[str, object] = {}
        if via:
            kw["transport"] = httpx.HTTPTransport(local_address=via)
        c = self.client(**kw)
        r = c.get("/ui/login")
        csrf = r.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = c.post(
            "/ui/login",
            data={"user": user, "password": password or PASSWORDS[user], "csrf": csrf},
        )
        assert r.status_code == 303, r.text
        return c


@pytest.fixture(scope="session")
def ui_next_hop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    """Postfix's smtp-sink: the real next hop released mail goes to."""
    sink = Sink(dir=tmp_path_factory.mktemp("ui-sink"), port=free_port()).start()
    try:
        yield sink
    finally:
        sink.stop()


def serve_in_thread(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _store_with_accounts(settings: Settings) -> tuple[Store, Accounts]:
    """The settings' store (its var dir made) and its accounts, one for each of PASSWORDS."""
    settings.paths.var_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url)
    accounts = Accounts(store, hasher=FAST_HASHER)
    for user, pw in PASSWORDS.items():
        accounts.add(user, pw, admin=user.startswith("admin"))
    return store, accounts


@contextmanager
def _served(
    app: FastAPI, quarantine: Quarantine, accounts: Accounts, next_hop: Sink
) -> Iterator[UiServer]:
    """``app`` with ``quarantine`` and ``accounts``, served in a thread; the server stopped
    and the quarantine's store closed afterwards."""
    store = quarantine.store
    app.state.quarantine = quarantine
    app.state.accounts = accounts
    server, thread, url = serve_in_thread(app)
    try:
        yield UiServer(url, quarantine.settings, store, quarantine, accounts, next_hop, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, ui_next_hop: Sink) -> Iterator[UiServer]:
    tmp = tmp_path_factory.mktemp("ui")
    settings = make_settings(tmp, ui_next_hop.port)
    store, accounts = _store_with_accounts(settings)
    app = create_app(settings)
    with _served(app, Quarantine(settings, store), accounts, ui_next_hop) as ui:
        # no scoring service here (no model): the key store is set up by hand
        app.state.keys = ApiKeys(store, 0.0)
        yield ui


@pytest.fixture
def no_failures(ui_server: UiServer) -> Iterator[None]:
    """No failed logins counted before or after the test (the throttle's table)."""
    ui_server.store.execute("DELETE FROM ui_login_failures")
    yield
    ui_server.store.execute("DELETE FROM ui_login_failures")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium, per test module: Playwright's sync API keeps an event loop running in this
    thread while it is open, which asyncio tests of later modules must not find."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shot(page: object, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


@pytest.fixture(scope="session")
def e2e_server(
    tmp_path_factory: pytest.TempPathFactory, ui_next_hop: Sink, small_model_dir: Path
) -> Iterator[UiServer]:
    """The whole path: a ScoringService over the shared small corpus-trained test model
    (``tests.fixtures.model``; realistic, not saturated probabilities; thresholds that hold
    nearly everything: hold at 0.01, reject only at 1.0) recording verdicts in the same store as
    the quarantine, and the API app with the review pages over it."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    tmp = tmp_path_factory.mktemp("e2e")
    settings = make_settings(
        tmp,
        ui_next_hop.port,
        thresholds={"spam": 0.01, "hold": 0.01, "reject": 1.0},
        rules={"cache_dir": PROJECT_ROOT / "var" / "test-cache" / "rules"},
    )
    store, accounts = _store_with_accounts(settings)
    scorer = Scorer(SpamModel.load(small_model_dir), load_rules(settings), settings)
    service = ScoringService(settings, scorer=scorer, store=store)
    quarantine = Quarantine(settings, store, service=service)
    with _served(create_app(settings, service), quarantine, accounts, ui_next_hop) as ui:
        yield ui
