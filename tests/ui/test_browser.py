"""End to end in a real headless Chromium (Debian's chromium, Playwright's sync API).

- A hostile HTML spam in the quarantine cannot run script or load anything in the reviewer's
  browser: no dialog, no console message, no global set, and a beacon listener on loopback
  receives no request (``<script>``, ``onerror=``, ``javascript:`` links, CSS ``url()``,
  ``<link>``, ``<iframe>``, ``<meta refresh>``, in the HTML, the text, the headers and an
  attachment's name).
- Mail sent through the SMTP filter is held, shown, released from the page and arrives at
  the next hop (smtp-sink) exactly once, even when the button is clicked twice.

Screenshots go to build/screenshots/ (CI artifacts).
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mailsift.quarantine import RELEASED
from tests.fixtures.smtp import Sink
from tests.quarantine.conftest import envelope, sample_verdict
from tests.ui.conftest import PASSWORDS, UiServer, shot


class Beacon:
    """A loopback HTTP listener that records every request it gets."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def beacon() -> Iterator[Beacon]:
    b = Beacon()
    try:
        yield b
    finally:
        b.close()


def hostile_spam(b: Beacon) -> bytes:
    html = f"""<html><head>
<meta http-equiv="refresh" content="0;url={b.url("meta-refresh")}">
<link rel="stylesheet" href="{b.url("link-css")}">
<style>body {{ background: url({b.url("style-url")}); }}</style>
<script>window.__pwned = "script"; alert("script"); console.log("PWNED script");
fetch("{b.url("fetch")}");</script>
</head><body onload="window.__pwned='onload'">
<h1>You WON!</h1>
<img src="{b.url("img")}" onerror="window.__pwned='onerror'; console.log('PWNED onerror')">
<img src="x" onerror="alert('onerror2')">
<div style="background-image:url({b.url("inline-style")})">Claim now</div>
<a href="javascript:window.__pwned='jslink';alert('jslink')">click me</a>
<a href="{b.url("link")}">CLAIM YOUR PRIZE</a>
<iframe src="{b.url("iframe")}"></iframe>
<svg onload="alert('svg')"><image href="{b.url("svg-image")}"/></svg>
<form action="{b.url("form")}"><input type=submit value=go></form>
</body></html>"""
    text = (
        f"Plain part with markup: <script>alert('text')</script> "
        f"<img src={b.url('text-img')} onerror=alert(1)> {b.url('visible-url')}\r\n"
    )
    return (
        "From: \"<img src=x onerror=alert('from')>\" <winner@prize.example>\r\n"
        "To: bob@mailsift.test\r\n"
        "Subject: <script>alert('subject')</script> You won\r\n"
        "Message-ID: <hostile@prize.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\n"
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
        "--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n"
        "--A--\r\n"
        "--B\r\n"
        'Content-Type: text/html; name="<script>alert(1)</script>.html"\r\n'
        'Content-Disposition: attachment; filename="<img src=x onerror=alert(2)>.html"\r\n\r\n'
        f"<script>alert('attachment')</script><img src=\"{b.url('attachment')}\">\r\n"
        "--B--\r\n"
    ).encode()


def login(page: Any, base_url: str, user: str) -> None:
    page.goto(base_url + "/ui/login")
    page.fill("#user", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login")
    page.wait_for_url("**/ui/quarantine")


def watch(page: Any) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"dialogs": [], "console": [], "requests": []}

    def on_dialog(d: Any) -> None:
        seen["dialogs"].append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.on("request", lambda r: seen["requests"].append(r.url))
    return seen


def test_hostile_spam_cannot_run_script_or_load_anything(
    ui_server: UiServer, browser: Any, beacon: Beacon
) -> None:
    raw = hostile_spam(beacon)
    qid = ui_server.quarantine.hold(
        raw, envelope("winner@prize.example", "bob@mailsift.test"), sample_verdict()
    )
    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    try:
        login(page, ui_server.base_url, "admin@mailsift.test")
        # the list shows the hostile subject as text
        row = page.locator(f'tr[data-id="{qid}"]')
        assert "<script>alert('subject')</script>" in row.inner_text()
        page.click(f'tr[data-id="{qid}"] a.open')
        page.wait_for_url(f"**/ui/quarantine/{qid}")
        page.wait_for_load_state("networkidle")
        shot(page, "hostile-message")
        body = page.locator("#body").inner_text()
        assert "<script>alert('text')</script>" in body  # shown, as text
        assert beacon.url("visible-url") in page.locator("#links").inner_text()
        # links are text: no anchor inside the message section at all
        assert page.locator("#message a").count() == 0
        assert (
            page.locator(
                "#message img, #message iframe, #message script, #message link, "
                "#message style, #message form, #message svg"
            ).count()
            == 0
        )
        atts = page.locator("#attachments").inner_text()
        assert "<img src=x onerror=alert(2)>.html" in atts
        assert page.evaluate("typeof window.__pwned") == "undefined"
        # try to trigger what could be there: click the message text and the link texts
        page.locator("#body").click()
        assert "click me" in page.locator("#html-text").inner_text()
        page.locator("#html-text").get_by_text("click me").click()
        page.wait_for_timeout(300)
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.url.endswith(f"/ui/quarantine/{qid}")
    finally:
        context.close()
    assert seen["dialogs"] == []
    assert seen["console"] == []
    assert beacon.hits == []
    own = ui_server.base_url
    assert [u for u in seen["requests"] if not u.startswith(own)] == []


# ---- through the SMTP filter -------------------------------------------------------------------


SPAM_TEXT = (
    "Dear friend,\r\n\r\nMAKE MONEY FAST!!! Earn $5000 a week from home. 100% GUARANTEED. "
    "Limited time offer, act now! Click here to be removed from our mailing list. "
    "Cheap viagra, cialis, Rolex replica watches. Free money, no credit check, "
    "lowest mortgage rates. Order now and get a FREE gift!!!\r\n"
    "http://cheap-meds.example/buy?now=1\r\n"
)


BORDERLINE_TEXT = (
    "Hi Bob,\r\n\r\nWe have a special offer on our newsletter subscription this week. "
    "Reply to this message if you want the details, or visit our site.\r\n\r\nRegards\r\n"
)


def send_through_filter(
    port: int, subject: str, rcpt: str = "bob@mailsift.test", body: str = SPAM_TEXT
) -> str:
    msg = (
        f"From: Deals <deals@offers.example>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@offers.example>\r\n"
        "Date: Sun, 29 Nov 2026 05:00:00 +0000\r\n\r\n" + body
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        code, reply = s.docmd("MAIL FROM:<deals@offers.example>")
        assert code == 250, reply
        code, reply = s.docmd(f"RCPT TO:<{rcpt}>")
        assert code == 250, reply
        code, reply = s.data(msg.encode())
    assert code == 250, reply
    assert b"quarantine" in reply.lower(), reply
    return reply.decode()


@pytest.mark.timeout(1200)  # the shared small-model fixture trains once per session
def test_release_from_the_page_arrives_once_and_spam_raises_the_score(
    e2e_server: UiServer,
    browser: Any,
    ui_next_hop: Sink,
    filter_factory: Callable[..., Any],
) -> None:
    server = e2e_server
    service = server.app.state.service  # type: ignore[attr-defined]
    srv = filter_factory(ui_next_hop, service=service, quarantine=server.quarantine)
    before = len(ui_next_hop.files())
    send_through_filter(srv.port, "Release me please")
    send_through_filter(srv.port, "Teach me as spam", body=BORDERLINE_TEXT)
    assert len(ui_next_hop.files()) == before  # held, not delivered
    entries, _ = server.quarantine.list(user="bob@mailsift.test")
    held = {e.subject: e for e in entries}
    entry, other = held["Release me please"], held["Teach me as spam"]
    assert entry.sender == "deals@offers.example"
    assert service.verdict(entry.verdict_id) is not None  # the filter's verdict, recorded

    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    try:
        login(page, server.base_url, "bob@mailsift.test")
        assert page.locator(f'tr[data-id="{entry.id}"]').count() == 1
        shot(page, "quarantine-list")
        page.click(f'tr[data-id="{entry.id}"] a.open')
        page.wait_for_url(f"**/ui/quarantine/{entry.id}")
        assert page.locator("#subject").inner_text() == "Release me please"
        assert "bob@mailsift.test" in page.locator("#recipients").inner_text()
        assert page.locator("#explanation #tokens tr").count() > 0
        shot(page, "message-before-release")
        # a double click sends the form twice, faster than a person can
        page.dblclick("#release")
        page.wait_for_selector("#notice")
        page.wait_for_load_state("networkidle")
        shot(page, "message-released")
        assert page.locator("#status").inner_text().startswith("released")
        page.reload()
        assert page.locator("#release").count() == 0

        # the other one: "spam" teaches the live model; its score for the message rises
        page.goto(f"{server.base_url}/ui/quarantine/{other.id}")
        score_before = float(page.locator("#current-score").inner_text())
        p_before = float(page.locator("#current-probability").inner_text())
        shot(page, "message-before-spam")
        page.click("#spam")
        page.wait_for_selector("#notice")
        assert "marked spam" in page.locator("#notice").inner_text()
        score_after = float(page.locator("#current-score").inner_text())
        p_after = float(page.locator("#current-probability").inner_text())
        shot(page, "message-after-spam")
        assert score_after > score_before
        assert p_after > p_before
        assert page.locator("#label").inner_text() == "spam"
    finally:
        context.close()
    msgs = ui_next_hop.wait_for(before + 1)
    released = [m for m in msgs if m["Subject"] == "Release me please"]
    assert len(released) == 1
    time.sleep(1.0)  # a second delivery, were there one, would have arrived by now
    assert len([m for m in ui_next_hop.messages() if m["Subject"] == "Release me please"]) == 1
    assert server.quarantine.get(entry.id).status == RELEASED
    assert server.quarantine.get(other.id).status == "held"  # spam stays held
    fb = server.store.feedback.recent(user="bob@mailsift.test")
    assert [(f.label, f.source) for f in fb] == [("spam", "quarantine")]
    assert seen["dialogs"] == [] and seen["console"] == []


def test_dashboard_draws_charts(e2e_server: UiServer, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    try:
        login(page, e2e_server.base_url, "admin@mailsift.test")
        page.click("#nav-dashboard")
        page.wait_for_url("**/ui/dashboard")
        for chart in ("verdicts", "rules", "feedback", "dnsbl", "greylist", "quarantine"):
            assert page.locator(f"#chart-{chart} svg.chart").count() == 1
        version = e2e_server.app.state.service.model_version  # type: ignore[attr-defined]
        assert page.locator("#model-version").inner_text() == version
        shot(page, "dashboard")
    finally:
        context.close()
    assert seen["dialogs"] == [] and seen["console"] == []


def test_select_all_and_bulk_delete(ui_server: UiServer, browser: Any) -> None:
    ids = [
        ui_server.quarantine.hold(
            f"From: a@bulk.example\r\nTo: carol@mailsift.test\r\nSubject: bulk {i}\r\n\r\nx\r\n".encode(),
            envelope("a@bulk.example", "alice@mailsift.test"),
            sample_verdict(),
        )
        for i in range(3)
    ]
    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    try:
        login(page, ui_server.base_url, "alice@mailsift.test")
        page.fill("input[name=sender]", "bulk.example")
        page.click("#apply-filters")
        page.wait_for_load_state("networkidle")
        assert page.locator("tr.row").count() == 3
        page.check("#select-all")  # ui.js: the only script, from our own origin
        assert page.locator("input.pick:checked").count() == 3
        shot(page, "bulk-selected")
        page.click("#bulk-delete")
        page.wait_for_selector("#notice")
        assert "3 messages deleted" in page.locator("#notice").inner_text()
        shot(page, "bulk-deleted")
    finally:
        context.close()
    assert {ui_server.quarantine.get(i).status for i in ids} == {"deleted"}
    assert seen["dialogs"] == [] and seen["console"] == []
