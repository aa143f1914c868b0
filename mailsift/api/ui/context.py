"""What the UI routes work with, built once per app from ``app.state``.

The API app (``mailsift.api.app.create_app``) puts ``settings`` and the scoring ``service``
on ``app.state``; the UI adds its own pieces next to them on first use: the
``Quarantine`` (over the service's store), the ``Accounts`` (the SMTP filter's logins, in the
same store), the sessions and the login throttle (both in the
quarantine's store). Tests may set
``app.state.quarantine`` / ``app.state.accounts`` beforehand.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from mailsift.api.ui.security import LoginThrottle, SessionCodec
from mailsift.config import Settings
from mailsift.quarantine import Quarantine, QuarantineEntry
from mailsift.verdict import Envelope

log = logging.getLogger(__name__)
_lock = threading.RLock()


@dataclass(slots=True)
class UiContext:
    settings: Settings
    service: Any
    quarantine: Quarantine
    accounts: Any
    sessions: SessionCodec
    throttle: LoginThrottle

    @property
    def store(self) -> Any:
        return self.quarantine.store

    def rescore(self, raw: bytes, entry: QuarantineEntry) -> dict[str, Any] | None:
        """The live model's opinion now (after feedback), without recording a verdict."""
        scorer = getattr(self.service, "scorer", None)
        if scorer is None:
            return None
        env = Envelope(mail_from=entry.sender or None, rcpt_to=tuple(entry.recipients))
        try:
            v = scorer.score(raw, env)
        except Exception as exc:  # the page still shows the message
            log.warning("rescore failed for %s: %s", entry.id, exc)
            return None
        return {
            "probability": v.probability,
            "score": v.score,
            "action": str(v.action),
            "model_version": v.model_version,
        }


def ui_context(request: Request) -> UiContext:
    state = request.app.state
    ctx = getattr(state, "ui", None)
    if ctx is not None:
        return ctx  # type: ignore[no-any-return]
    with _lock:
        ctx = getattr(state, "ui", None)
        if ctx is None:
            ctx = _build(state)
            state.ui = ctx
    return ctx  # type: ignore[no-any-return]


def quarantine_for(state: Any) -> Quarantine:
    """The app's Quarantine (over the scoring service's store), built on first use."""
    quarantine = getattr(state, "quarantine", None)
    if quarantine is not None:
        return quarantine  # type: ignore[no-any-return]
    settings: Settings | None = getattr(state, "settings", None)
    service = getattr(state, "service", None)
    if settings is None or service is None:
        raise HTTPException(503, "the scoring service (and its store) is not available")
    with _lock:
        quarantine = getattr(state, "quarantine", None)
        if quarantine is None:
            quarantine = Quarantine(settings, service.store, service=service)
            state.quarantine = quarantine
    return quarantine  # type: ignore[no-any-return]


def _build(state: Any) -> UiContext:
    settings: Settings | None = getattr(state, "settings", None)
    if settings is None:
        raise HTTPException(503, "the web UI is not configured (no settings on the app)")
    quarantine = quarantine_for(state)
    service = getattr(state, "service", None) or quarantine._service
    accounts = getattr(state, "accounts", None)
    if accounts is None:
        from mailsift.smtpd.accounts import Accounts

        accounts = Accounts(quarantine.store, import_file=settings.smtp.accounts_file)
        state.accounts = accounts
    store = quarantine.store
    return UiContext(
        settings,
        service,
        quarantine,
        accounts,
        SessionCodec(settings, store),
        LoginThrottle(store, settings.ui),
    )
