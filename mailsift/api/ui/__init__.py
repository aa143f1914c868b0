"""The review web pages under ``/ui`` (quarantine list, message view, dashboard).

``router`` is a FastAPI ``APIRouter`` (prefix ``/ui``); ``install(app)`` adds it and the
``/v1/quarantine`` JSON routes (``mailsift.api.routes.quarantine``) to the API app
(``mailsift.api.app.create_app`` calls it). See ``mailsift.api.ui.routes`` for the pages and
``mailsift.api.ui.security`` for sessions, CSRF and the Content-Security-Policy.
"""

from __future__ import annotations

from fastapi import FastAPI

from mailsift.api.ui.routes import router
from mailsift.api.ui.security import UiHeadersMiddleware


def install(app: FastAPI) -> None:
    """Mount the web pages and the quarantine JSON routes into ``app``."""
    from mailsift.api.routes import quarantine

    app.add_middleware(UiHeadersMiddleware)
    app.include_router(router)
    app.include_router(quarantine.router)


__all__ = ["install", "router"]
