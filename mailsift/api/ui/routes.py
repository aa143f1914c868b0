"""The review pages under ``/ui``: login, the quarantine list, a message, the dashboard.

Server-rendered (Jinja2, autoescaped), a little plain JavaScript (``static/ui.js``: the
"select all" box) and no build step. Users see the held mail addressed to them; admins
see all of it and the dashboard. Every POST checks the session's CSRF token; every response
carries the strict Content-Security-Policy (``security.SecureRoute``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from mailsift.api.ui import stats
from mailsift.api.ui.context import UiContext, ui_context
from mailsift.api.ui.security import SecureRoute, Session, csrf_ok
from mailsift.quarantine import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    SORT_KEYS,
    QuarantineError,
    QuarantineQuery,
)
from mailsift.review import explanation, message_view

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
PAGE_SIZE = 50
ACTIONS = ("release", "delete", "ham", "spam")

router = APIRouter(prefix="/ui", route_class=SecureRoute, include_in_schema=False)

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _datetime(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


env.filters["dt"] = _datetime
env.filters["size"] = lambda n: f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def render(name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    html = env.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status_code)


def _live_session(request: Request, ctx: UiContext) -> Session | None:
    """The request's session if it is still good: in the store (not logged out, not
    expired) and its account active with the password it logged in with."""
    s = ctx.sessions.load(request)
    if s is None:
        return None
    credential = ctx.accounts.credential(s.user)
    if credential is None or not hmac.compare_digest(credential, s.credential):
        ctx.sessions.revoke(s)  # account disabled or expired, or its password changed
        return None
    # the admin flag follows account changes at once
    return dataclasses.replace(s, admin=ctx.accounts.is_admin(s.user))


async def _session(request: Request, ctx: UiContext) -> Session:
    s = await run_in_threadpool(_live_session, request, ctx)
    if s is None:
        raise HTTPException(303, headers={"Location": "/ui/login"})
    return s


async def _form_checked(request: Request, s: Session) -> Any:
    form = await request.form()
    if not csrf_ok(s, str(form.get("csrf", ""))):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    return form


def _page(ctx: UiContext, s: Session, name: str, status_code: int = 200, **kw: Any) -> HTMLResponse:
    return render(name, status_code, session=s, **kw)


# ---- login / logout --------------------------------------------------------------------------


@router.get("/", name="ui_home")
async def home(request: Request) -> Response:
    return RedirectResponse("/ui/quarantine", status_code=303)


@router.get("/login", name="ui_login")
async def login_form(request: Request) -> Response:
    ctx = ui_context(request)
    return _login_page(request, ctx, "", None, 200)


def _login_page(
    request: Request, ctx: UiContext, user: str, error: str | None, code: int
) -> Response:
    token, cookie = ctx.sessions.login_token(request)
    resp = render("login.html", code, session=None, error=error, user=user, csrf=token)
    ctx.sessions.set_login_cookie(resp, cookie)
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = ui_context(request)
    form = await request.form()
    user = str(form.get("user", "")).strip().lower()[:254]
    password = str(form.get("password", ""))[:1024]
    client = request.client.host if request.client else "?"
    if not ctx.sessions.check_login_token(request, str(form.get("csrf", ""))):
        return _login_page(request, ctx, user, "Your login form expired; try again.", 403)
    refused, wait = await run_in_threadpool(ctx.throttle.check, client, user)
    if refused:
        log.warning("ui login refused (throttled) user=%s ip=%s", user, client)
        return _login_page(request, ctx, user, "Too many failed logins; wait a while.", 429)
    if wait > 0:
        await asyncio.sleep(wait)  # a soft limit is reached: slow down, do not lock out
    ok = await run_in_threadpool(ctx.accounts.verify, user, password)
    credential = ctx.accounts.credential(user) if ok else None
    if credential is None:
        await run_in_threadpool(ctx.throttle.fail, client, user)
        log.info("ui login failed user=%s ip=%s", user, client)
        return _login_page(request, ctx, user, "Wrong user name or password.", 401)
    resp = RedirectResponse("/ui/quarantine", status_code=303)

    def begin() -> None:
        ctx.throttle.succeeded(client, user)
        ctx.sessions.start(
            request, resp, user, ctx.accounts.is_admin(user), credential, client_ip=client
        )

    await run_in_threadpool(begin)
    ctx.sessions.end_login(resp)
    log.info("ui login user=%s ip=%s", user, client)
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = ui_context(request)
    s = await _session(request, ctx)
    await _form_checked(request, s)
    resp = RedirectResponse("/ui/login", status_code=303)
    await run_in_threadpool(ctx.sessions.end, resp, s)
    log.info("ui logout user=%s", s.user)
    return resp


# ---- the list ----------------------------------------------------------------------------------


def _float(v: str | None) -> float | None:
    if v is None or not str(v).strip():
        return None
    try:
        return float(v)
    except ValueError:
        raise HTTPException(400, f"not a number: {v!r}") from None


def _date(v: str | None, end: bool = False) -> float | None:
    if not v:
        return None
    try:
        d = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(400, f"not a date (YYYY-MM-DD): {v!r}") from None
    return d.timestamp() + (86400.0 if end else 0.0)


def query_from_params(params: Any, s: Session) -> tuple[QuarantineQuery, dict[str, str]]:
    f = {
        k: str(params.get(k, "") or "")
        for k in (
            "recipient",
            "sender",
            "subject",
            "min_score",
            "max_score",
            "since",
            "until",
            "sort",
            "order",
            "status",
            "page",
        )
    }
    sort = f["sort"] if f["sort"] in SORT_KEYS else "created"
    status = f["status"] if f["status"] in (HELD, RELEASED, DELETED, "all") else ""
    statuses = {
        "": (HELD, RELEASING),
        HELD: (HELD, RELEASING),
        RELEASED: (RELEASED,),
        DELETED: (DELETED,),
        "all": (HELD, RELEASING, RELEASED, DELETED),
    }[status]
    try:
        page = max(1, int(f["page"] or 1))
    except ValueError:
        page = 1
    q = QuarantineQuery(
        user=None if s.admin else s.user,
        recipient=f["recipient"][:254] or None,
        sender=f["sender"][:254] or None,
        subject=f["subject"][:254] or None,
        min_score=_float(f["min_score"]),
        max_score=_float(f["max_score"]),
        since=_date(f["since"]),
        until=_date(f["until"], end=True),
        statuses=statuses,
        sort=sort,
        descending=f["order"] != "asc",
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    f["sort"], f["status"], f["page"] = sort, status, str(page)
    return q, f


@router.get("/quarantine", name="ui_list")
async def quarantine_list(request: Request) -> Response:
    ctx = ui_context(request)
    s = await _session(request, ctx)
    q, f = query_from_params(request.query_params, s)
    entries, total = await run_in_threadpool(ctx.quarantine.list, None, q)
    page = int(f["page"])
    keep = {k: v for k, v in f.items() if v and k != "page"}

    def link(**over: Any) -> str:
        return "/ui/quarantine?" + urlencode({**keep, **{k: v for k, v in over.items() if v}})

    def sort_link(key: str) -> str:
        order = "asc" if f["sort"] == key and f["order"] != "asc" else "desc"
        return link(sort=key, order=order, page=None)

    return _page(
        ctx,
        s,
        "list.html",
        entries=entries,
        total=total,
        filters=f,
        page=page,
        pages=max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE),
        link=link,
        sort_link=sort_link,
        notice=request.query_params.get("notice", "")[:300],
        error=request.query_params.get("error", "")[:300],
    )


# ---- one message -----------------------------------------------------------------------------


@router.get("/quarantine/{qid}", name="ui_message")
async def quarantine_message(request: Request, qid: str) -> Response:
    ctx = ui_context(request)
    s = await _session(request, ctx)
    try:
        entry = ctx.quarantine.get(qid, None if s.admin else s.user)
    except QuarantineError as exc:
        return _page(ctx, s, "error.html", exc.status, error=str(exc))
    view = None
    missing = ""
    try:
        raw = await run_in_threadpool(ctx.quarantine.raw, qid)
        view = await run_in_threadpool(message_view, raw)
        current = await run_in_threadpool(ctx.rescore, raw, entry)
    except QuarantineError as exc:
        missing, current = str(exc), None
    return _page(
        ctx,
        s,
        "message.html",
        entry=entry,
        view=view,
        missing=missing,
        why=explanation(entry),
        current=current,
        notice=request.query_params.get("notice", "")[:300],
        error=request.query_params.get("error", "")[:300],
    )


def _do(ctx: UiContext, s: Session, action: str, ids: list[str], form: Any) -> tuple[str, str]:
    """Run an action over ids the user may see; returns (notice, error)."""
    allowed: list[str] = []
    for qid in ids:
        try:
            ctx.quarantine.get(qid, None if s.admin else s.user)
            allowed.append(qid)
        except QuarantineError:
            continue
    if not allowed:
        return "", "nothing selected that you may act on"
    kw: dict[str, Any] = {}
    if action in ("ham", "spam"):
        users = None if s.admin else [s.user]
        # an admin's verdict is a trusted global lesson; a user's is theirs (plus a vote)
        kw = {"users": users, "reporter": s.user, "trusted": s.admin}
        if action == "ham" and form.get("trust"):
            kw["trust_sender"] = True
        if action == "spam" and form.get("untrust"):
            kw["untrust_sender"] = True
    result = ctx.quarantine.bulk(action, allowed, f"ui:{s.user}", **kw)
    done = [r for r in result.results if r.ok]
    failed = [r for r in result.results if not r.ok]
    word = {
        "release": "released",
        "delete": "deleted",
        "ham": "marked not spam",
        "spam": "marked spam",
    }[action]
    notice = f"{len(done)} message{'s' if len(done) != 1 else ''} {word}" if done else ""
    if len(done) == 1 and done[0].detail:
        notice += f" ({done[0].detail})"
    error = "; ".join(f"{r.id[:8]}: {r.detail}" for r in failed[:5])
    return notice, error


async def _post_action(request: Request, ids: Callable[[Any], list[str]]) -> tuple[str, str, str]:
    """A quarantine action posted from a page: the live session, its CSRF-checked form and
    the form's action (400 when unknown), run over ``ids(form)``. Returns the action, the
    error text and the query string that carries the notice and error back to the page."""
    ctx = ui_context(request)
    s = await _session(request, ctx)
    form = await _form_checked(request, s)
    action = str(form.get("action", ""))
    if action not in ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    notice, error = await run_in_threadpool(_do, ctx, s, action, ids(form), form)
    params = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
    return action, error, params


@router.post("/quarantine/{qid}/action")
async def quarantine_action(request: Request, qid: str) -> Response:
    action, error, params = await _post_action(request, lambda form: [qid])
    target = "/ui/quarantine" if action == "delete" and not error else f"/ui/quarantine/{qid}"
    return RedirectResponse(f"{target}?{params}", status_code=303)


@router.post("/quarantine")
async def quarantine_bulk(request: Request) -> Response:
    _, _, params = await _post_action(
        request, lambda form: [str(v) for v in form.getlist("id")][:500]
    )
    return RedirectResponse(f"/ui/quarantine?{params}", status_code=303)


# ---- dashboard ---------------------------------------------------------------------------------


@router.get("/dashboard", name="ui_dashboard")
async def dashboard(request: Request) -> Response:
    ctx = ui_context(request)
    s = await _session(request, ctx)
    if not s.admin:
        return _page(ctx, s, "error.html", 403, error="The dashboard is for administrators.")
    days = 14 if request.query_params.get("range") != "48h" else 2
    data = await run_in_threadpool(stats.dashboard, ctx, days, time.time())
    return _page(ctx, s, "dashboard.html", d=data, days=days)


# ---- static files ------------------------------------------------------------------------------


@router.get("/static/{name}", name="ui_static")
async def static(name: str) -> Response:
    path = STATIC_DIR / name
    ctype = STATIC_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or ctype is None or not path.is_file():
        raise HTTPException(404, "not found")
    resp = FileResponse(path, media_type=ctype)
    return resp
