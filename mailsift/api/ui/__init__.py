"""The review web pages under ``/ui`` (quarantine list, message view, dashboard).

``mailsift.api.ui.routes.router`` is a FastAPI ``APIRouter`` (prefix ``/ui``) that
``mailsift.api.app.create_app`` includes, with ``mailsift.api.ui.security``'s
``UiHeadersMiddleware`` (sessions, CSRF and the Content-Security-Policy are there too); the
quarantine's JSON routes are ``mailsift.api.routes.quarantine``.
"""
