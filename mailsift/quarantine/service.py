"""The quarantine service: held mail, kept durably, reviewed by people, released exactly once.

A message the filter decides to hold (score between the ``hold`` and ``reject`` thresholds,
or by policy) is written to the held-message files under ``settings.quarantine_dir``
(``mailsift.quarantine.held``: it survives a crash the moment ``hold`` returns) and gets an
entry in the store (``store.quarantine``, ``mailsift.store.quarantine``): verdict id, envelope sender and recipients,
subject, score, the verdict's reasons, time and expiry (``settings.quarantine.retention_days``).

Actions, each recorded in the store's audit trail (who, when, what):

- ``release``: deliver to the original envelope recipients through the next hop
  (``mailsift.smtpd.delivery.deliver``), exactly once. The entry moves ``held -> releasing``
  with a conditional update that only one caller can win (double clicks, two reviewers, two
  API workers), then ``releasing -> released`` after the next hop's 250. A failed delivery
  moves it back to ``held`` with the error kept; a crash between the 250 and the update leaves
  it ``releasing`` (never delivered twice; shown to the reviewer, ``release(force=True)`` by
  an admin retries it).
- ``delete``: the message file goes, the entry stays (status ``deleted``) until it expires.
- ``learn``: "ham" (not spam) = teach the model ham + release + optionally trust the sender
  for the recipients; "spam" = teach spam + optionally untrust the sender; the message stays
  held (the reviewer deletes it or lets it expire).
- ``purge``: expired entries and their files go; the count is logged.

No message is ever sent to anyone about a held message (no backscatter): release is the only
thing that delivers, and only to the original recipients.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailsift.config import Settings
from mailsift.message import parse
from mailsift.quarantine.held import ID_RE, HeldMessages
from mailsift.store.base import ListEntry, Store
from mailsift.store.quarantine import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    QuarantineEntry,
    QuarantineError,
    QuarantineQuery,
    QuarantineRepo,
)
from mailsift.verdict import Envelope, Label, Verdict, symbol_fields, token_fields

log = logging.getLogger(__name__)

_DAY = 86400.0


class NotFound(QuarantineError):
    def __init__(self, qid: str) -> None:
        super().__init__(f"no quarantined message {qid!r}", status=404)


@dataclass(slots=True)
class ActionResult:
    id: str
    action: str
    ok: bool
    status: str  # the entry's status afterwards
    detail: str = ""
    already: bool = False  # idempotent repeat: nothing was done this time


@dataclass(slots=True)
class BulkResult:
    results: list[ActionResult] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)


DeliverFn = Callable[..., Any]
AuditFn = Callable[[str, str, str, dict[str, Any]], None]


class Quarantine:
    """Hold, list, review and release quarantined mail (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        service: Any = None,
        deliver: DeliverFn | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.files = HeldMessages(settings.quarantine_dir)
        self.repo: QuarantineRepo = store.quarantine
        self._service = service
        self._deliver = deliver
        self.clock = clock

    # ---- holding --------------------------------------------------------------------------
    def hold(self, raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
        """Keep ``raw`` durably; return the quarantine id. Raises OSError if it cannot."""
        qid = secrets.token_hex(16)
        pm = parse(raw, max_parse_bytes=min(len(raw), 1024 * 1024), max_text_chars=1000)
        now = self.clock()
        entry = QuarantineEntry(
            id=qid,
            verdict_id=verdict.verdict_id,
            sender=(envelope.mail_from or "").lower(),
            recipients=[r.lower() for r in envelope.rcpt_to],
            subject=pm.subject[:998],
            from_header=pm.header("From")[:998],
            score=float(verdict.score),
            probability=float(verdict.probability),
            action=str(verdict.action),
            reasons=_reasons(verdict),
            size=len(raw),
            digest=verdict.digest or pm.digest,
            created=now,
            expires=now + self.settings.quarantine.retention_days * _DAY,
        )
        self.files.write(qid, raw)
        try:
            self.repo.add(entry)
        except BaseException:
            self.files.remove(qid)
            raise
        self._audit(
            "mailsift",
            "quarantine.hold",
            qid,
            {"verdict_id": entry.verdict_id, "score": entry.score, "rcpts": len(entry.recipients)},
        )
        log.info(
            "quarantine hold id=%s verdict=%s score=%.2f rcpts=%d",
            qid,
            entry.verdict_id,
            entry.score,
            len(entry.recipients),
        )
        return qid

    # ---- reading --------------------------------------------------------------------------
    def list(
        self, user: str | None = None, query: QuarantineQuery | None = None
    ) -> tuple[list[QuarantineEntry], int]:
        """Entries matching ``query`` (and, when ``user`` is given, addressed to that user)."""
        q = query or QuarantineQuery()
        if user is not None:
            q.user = user.lower()
        return self.repo.query(q)

    def get(self, qid: str, user: str | None = None) -> QuarantineEntry:
        """The entry; with ``user``, only when addressed to that user (else NotFound)."""
        if not ID_RE.match(qid or ""):
            raise NotFound(qid)
        entry = self.repo.get(qid)
        if entry is None or (user is not None and not entry.visible_to(user)):
            raise NotFound(qid)
        return entry

    def raw(self, qid: str) -> bytes:
        return self.files.read(qid)

    def counts(self) -> dict[str, int]:
        return self.repo.counts()

    # ---- actions --------------------------------------------------------------------------
    def release(self, qid: str, actor: str, *, force: bool = False) -> ActionResult:
        """Deliver to the original recipients, once. Repeats return ``already=True``."""
        entry = self.get(qid)
        if entry.status == RELEASED:
            return ActionResult(qid, "release", True, RELEASED, "already released", True)
        if entry.status == DELETED:
            raise QuarantineError("the message was deleted", 409)
        sources = (HELD, RELEASING) if force else (HELD,)
        if not self.repo.transition(qid, sources, RELEASING, last_error=None):
            now = self.repo.get(qid)
            status = now.status if now else DELETED
            if status == RELEASED:
                return ActionResult(qid, "release", True, RELEASED, "already released", True)
            if status == RELEASING:
                return ActionResult(qid, "release", True, RELEASING, "release in progress", True)
            raise QuarantineError(f"cannot release a {status} message", 409)
        try:
            data = self.files.read(qid)
            self.deliver(entry.sender, entry.recipients, data)
        except Exception as exc:
            err = _error_text(exc)
            self.repo.transition(qid, (RELEASING,), HELD, last_error=err)
            self._audit(actor, "quarantine.release_failed", qid, {"error": err})
            log.warning("quarantine release failed id=%s: %s", qid, err)
            code = 503 if getattr(exc, "temporary", True) else 502
            raise QuarantineError(f"release failed: {err}", code) from exc
        self.repo.transition(
            qid, (RELEASING,), RELEASED, released_at=self.clock(), released_by=actor
        )
        self._audit(actor, "quarantine.release", qid, {"rcpts": entry.recipients})
        log.info("quarantine release id=%s by=%s rcpts=%d", qid, actor, len(entry.recipients))
        return ActionResult(qid, "release", True, RELEASED, f"delivered to {len(entry.recipients)}")

    def delete(self, qid: str, actor: str) -> ActionResult:
        entry = self.get(qid)
        if entry.status == DELETED:
            return ActionResult(qid, "delete", True, DELETED, "already deleted", True)
        if entry.status == RELEASING:
            raise QuarantineError("a release is in progress", 409)
        if not self.repo.transition(
            qid, (HELD, RELEASED), DELETED, deleted_at=self.clock(), deleted_by=actor
        ):
            raise QuarantineError("the message changed meanwhile; try again", 409)
        self.files.remove(qid)
        self._audit(actor, "quarantine.delete", qid, {"previous": entry.status})
        log.info("quarantine delete id=%s by=%s", qid, actor)
        return ActionResult(qid, "delete", True, DELETED, "deleted")

    def learn(
        self,
        qid: str,
        label: Label | str,
        actor: str,
        *,
        trust_sender: bool = False,
        untrust_sender: bool = False,
        users: Iterable[str] | None = None,
        reporter: str | None = None,
        trusted: bool = False,
    ) -> ActionResult:
        """Teach the filter; "ham" also releases. ``users``: whose sender lists change
        (default: the entry's recipients); ``reporter``: the user the feedback counts for
        (their own mail, rate caps, a corroboration vote; default ``actor``). ``trusted``
        (an admin's verdict): a global lesson at once."""
        label = Label(label)
        if label is Label.SPAM and trust_sender:
            raise QuarantineError("trust_sender goes with 'ham' (not spam)")
        if label is Label.HAM and untrust_sender:
            raise QuarantineError("untrust_sender goes with 'spam'")
        entry = self.get(qid)
        if entry.status == DELETED:
            raise QuarantineError("the message was deleted", 409)
        raw = self.files.read(qid)
        service = self.service
        detail: list[str] = []
        if entry.label != label.value:  # the same correction twice teaches once
            status = self._teach(service, label, reporter or actor, entry, raw, trusted)
            self.repo.update(qid, label=label.value)
            detail.append(f"{label.value}: {status}")
        list_users = [u.lower() for u in (users if users is not None else entry.recipients)]
        if (trust_sender or untrust_sender) and entry_sender(entry):
            kind = "trusted" if trust_sender else "untrusted"
            for u in list_users:
                self._set_sender_list(u, entry_sender(entry), kind, actor)
            detail.append(f"{kind} {entry_sender(entry)} for {', '.join(list_users)}")
        self._audit(
            actor,
            "quarantine.learn",
            qid,
            {"label": label.value, "trust": trust_sender, "untrust": untrust_sender},
        )
        if label is Label.HAM:
            rel = self.release(qid, actor)
            detail.append(rel.detail)
            return ActionResult(qid, "learn", True, rel.status, "; ".join(detail), rel.already)
        return ActionResult(qid, "learn", True, entry.status, "; ".join(detail))

    def _teach(
        self,
        service: Any,
        label: Label,
        user: str,
        entry: QuarantineEntry,
        raw: bytes,
        trusted: bool = False,
    ) -> str:
        """Feedback through the scoring service: by verdict id when the store knows it,
        else the raw message alone. Returns the learner's status (learned, personal,
        duplicate, rate_limited ...)."""
        kw = {"source": "quarantine", "trusted": trusted}
        try:
            try:
                res = service.feedback(
                    label, user, verdict_id=entry.verdict_id or None, raw=raw, **kw
                )
            except LookupError:
                res = None
            except ValueError as exc:
                if "unknown verdict" not in str(exc):
                    raise
                res = None
            if res is None:  # the verdict was recorded elsewhere (another store, HTTP scorer)
                res = service.feedback(label, user, raw=raw, **kw)
        except ValueError as exc:
            raise QuarantineError(f"feedback refused: {exc}", 422) from exc
        return str(getattr(res, "status", "learned"))

    def bulk(self, action: str, ids: Iterable[str], actor: str, **kw: Any) -> BulkResult:
        """Run one action over many ids; a failure on one does not stop the rest."""
        fn: Callable[..., ActionResult]
        if action == "release":
            fn = self.release
        elif action == "delete":
            fn = self.delete
        elif action in ("spam", "ham"):

            def fn(qid: str, actor: str, **k: Any) -> ActionResult:
                return self.learn(qid, action, actor, **k)
        else:
            raise QuarantineError(f"unknown bulk action {action!r}")
        out = BulkResult()
        for qid in dict.fromkeys(ids):  # de-duplicated, order kept
            try:
                out.results.append(fn(qid, actor, **kw))
            except QuarantineError as exc:
                out.results.append(ActionResult(qid, action, False, "", str(exc)))
        return out

    def purge(self, now: float | None = None) -> int:
        """Remove expired entries and their files; return how many went."""
        now = self.clock() if now is None else now
        n = 0
        while True:
            ids = self.repo.expired(now)
            if not ids:
                break
            for qid in ids:
                self.files.remove(qid)
                if self.repo.remove(qid):
                    n += 1
            if len(ids) < 1000:
                break
        self.files.clean_tmp()
        if n:
            self._audit("mailsift", "quarantine.purge", "*", {"count": n})
        log.info("quarantine purge: %d expired entr%s removed", n, "y" if n == 1 else "ies")
        return n

    # ---- collaborators --------------------------------------------------------------------
    @property
    def service(self) -> Any:
        if self._service is None:
            from mailsift.service import ScoringService

            self._service = ScoringService(self.settings, store=self.store)
        return self._service

    def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> Any:
        fn = self._deliver
        if fn is None:
            from mailsift.smtpd.delivery import deliver

            fn = deliver
        smtp = self.settings.smtp
        return fn(smtp.next_hop_host, smtp.next_hop_port, mail_from, list(rcpts), data, 60.0)

    def _set_sender_list(self, user: str, sender: str, kind: str, actor: str) -> None:
        """Put ``sender`` on ``user``'s ``kind`` list (and off the opposite one)."""
        opposite = "untrusted" if kind == "trusted" else "trusted"
        self.store.lists.remove(opposite, sender, user)
        self.store.lists.add(
            ListEntry(
                kind=kind,
                pattern=sender,
                owner=user,
                created=self.clock(),
                added_by=actor,
                comment="quarantine review",
            )
        )

    def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.store.audit.record(actor, action, target, detail)


def entry_sender(entry: QuarantineEntry) -> str:
    """The address a trust/untrust decision is about: the From header, else MAIL FROM."""
    from mailsift.message import address_of

    return address_of(entry.from_header) or entry.sender


def _reasons(verdict: Verdict) -> dict[str, Any]:
    return {
        "reason": verdict.reason,
        "model_version": verdict.model_version,
        "list_decision": verdict.list_decision,
        "rules": [symbol_fields(s) for s in verdict.rules[:50]],
        "tokens": [token_fields(t) for t in verdict.tokens[:30]],
    }


def _error_text(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"{code} {msg}" if code else str(msg)
    return text[:500]
