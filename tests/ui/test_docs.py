"""``/docs`` is served from the package's own assets: every script, style sheet and image the
page names is on this server, it renders in Chromium with every other origin cut off, and its
Content-Security-Policy lets nothing else in (no inline script either)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tests.ui.conftest import UiServer, shot


def test_docs_names_only_same_origin_assets(ui_server: UiServer) -> None:
    with ui_server.client() as c:
        r = c.get("/docs")
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs, r.text
        for ref in refs:
            assert ref.startswith("/") and not ref.startswith("//"), ref
            asset = c.get(ref)
            assert asset.status_code == 200, ref
        assert "<script>" not in r.text  # no inline script: the CSP would refuse it
        assert c.get("/docs/assets/index.html").status_code == 404
        assert c.get("/docs/assets/..%2F..%2F__init__.py").status_code == 404
        assert c.get("/redoc").status_code == 404
        assert c.get("/openapi.json").json()["info"]["title"] == "mailsift"


def test_docs_render_offline_in_chromium(ui_server: UiServer, browser: Any) -> None:
    origin = urlsplit(ui_server.base_url).netloc
    elsewhere: list[str] = []
    problems: list[str] = []

    def only_this_server(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc == origin:
            route.continue_()
        else:  # the machine is offline for everything but this server
            elsewhere.append(url)
            route.abort("internetdisconnected")

    context = browser.new_context()
    try:
        context.route("**/*", only_this_server)
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(ui_server.base_url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "mailsift" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector('[data-path="/v1/score/batch"]', timeout=20_000)
        shot(page, "docs")
    finally:
        context.close()
    assert elsewhere == []
    assert problems == []
