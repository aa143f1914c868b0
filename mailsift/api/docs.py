"""The interactive API documentation at ``/docs``, served entirely from this server.

FastAPI's default ``/docs`` and ``/redoc`` pages load Swagger UI / ReDoc from a CDN: they fail
offline and run third-party script on an admin host. Here ``/docs`` is Swagger UI from the
``swagger-ui-bundle-v2`` package (Apache-2.0; its JavaScript and CSS ship inside the wheel),
started by a small script of ours rather than an inline one, under a Content-Security-Policy
that allows nothing but this origin (FastAPI's "self-hosting JavaScript and CSS for docs"
recipe). ReDoc is not served (no package ships its bundle); ``/openapi.json`` is the spec.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSET_DIR = Path(str(swagger_ui_path))
# the files the page needs, with their media types: nothing else under the package is served
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# the page's own start-up script: Swagger UI on the spec of this server
INIT_JS = """\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: %(openapi)s,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""

PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s - API documentation</title>
<link rel="stylesheet" href="%(assets)s/swagger-ui.css">
<link rel="icon" type="image/png" href="%(assets)s/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="%(assets)s/swagger-ui-bundle.js"></script>
<script src="%(assets)s/init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets on ``app`` (built with ``docs_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"
    page = PAGE % {"title": escape(app.title), "assets": ASSETS_URL}
    init_js = INIT_JS % {"openapi": json.dumps(openapi_url)}

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(page, headers={**HEADERS, "Cache-Control": "no-cache"})

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name == "init.js":
            return Response(init_js, media_type="text/javascript; charset=utf-8", headers=HEADERS)
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "not found")
        return FileResponse(
            ASSET_DIR / name,
            media_type=media_type,
            headers={**HEADERS, "Cache-Control": "public, max-age=86400"},
        )
