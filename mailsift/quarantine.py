"""Quarantine: held mail, kept durably, reviewed by people, released exactly once.

A message the filter decides to hold (score between the ``hold`` and ``reject`` thresholds,
or by policy) is written to a spool under ``settings.quarantine_dir`` (temporary file, fsync,
rename, fsync of the directory: it survives a crash the moment ``hold`` returns) and gets an
entry in the store's ``quarantine`` table: verdict id, envelope sender and recipients,
subject, score, the verdict's reasons, time and expiry (``settings.quarantine.retention_days``).

Actions, each recorded in the store's audit trail (who, when, what):

- ``release``: deliver to the original envelope recipients through the next hop
  (``mailsift.smtpd.delivery.deliver``), exactly once. The entry moves ``held -> releasing``
  with a conditional update that only one caller can win (double clicks, two reviewers, two
  API workers), then ``releasing -> released`` after the next hop's 250. A failed delivery
  moves it back to ``held`` with the error kept; a crash between the 250 and the update leaves
  it ``releasing`` (never delivered twice; shown to the reviewer, ``release(force=True)`` by
  an admin retries it).
- ``delete``: the spool file goes, the entry stays (status ``deleted``) until it expires.
- ``learn``: "ham" (not spam) = teach the model ham + release + optionally trust the sender
  for the recipients; "spam" = teach spam + optionally untrust the sender; the message stays
  held (the reviewer deletes it or lets it expire).
- ``purge``: expired entries and their spool files go; the count is logged.

No message is ever sent to anyone about a held message (no backscatter): release is the only
thing that delivers, and only to the original recipients.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mailsift.config import Settings
from mailsift.durable import fsync_dir, write_durably
from mailsift.message import parse
from mailsift.verdict import Envelope, Label, Verdict

log = logging.getLogger(__name__)

# Entry states.
HELD = "held"
RELEASING = "releasing"
RELEASED = "released"
DELETED = "deleted"
STATUSES = (HELD, RELEASING, RELEASED, DELETED)

SORT_KEYS = ("created", "score", "sender", "subject", "expires")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_DAY = 86400.0


class QuarantineError(Exception):
    """An action could not be done; ``status`` is the HTTP-ish status for callers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(QuarantineError):
    def __init__(self, qid: str) -> None:
        super().__init__(f"no quarantined message {qid!r}", status=404)


@dataclass(slots=True)
class QuarantineEntry:
    id: str
    verdict_id: str
    sender: str
    recipients: list[str]
    subject: str
    from_header: str
    score: float
    probability: float
    action: str
    reasons: dict[str, Any]  # {"reason", "rules": [...], "tokens": [...], "model_version"}
    size: int
    digest: str
    created: float  # unix time
    expires: float
    status: str = HELD
    released_at: float | None = None
    released_by: str | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None
    label: str | None = None  # the last reviewer's label ("spam"/"ham")
    last_error: str | None = None

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list(self.reasons.get("rules", []))

    @property
    def tokens(self) -> list[dict[str, Any]]:
        return list(self.reasons.get("tokens", []))

    def visible_to(self, user: str) -> bool:
        u = user.lower()
        return any(r.lower() == u for r in self.recipients)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class QuarantineQuery:
    """Filters and sort for ``Quarantine.list``; every field optional."""

    user: str | None = None  # only entries whose recipients include this address
    recipient: str | None = None  # substring of a recipient
    sender: str | None = None  # substring of the envelope sender or From header
    subject: str | None = None  # substring
    min_score: float | None = None
    max_score: float | None = None
    since: float | None = None  # unix time, created >= since
    until: float | None = None  # created < until
    statuses: tuple[str, ...] = (HELD, RELEASING)
    sort: str = "created"
    descending: bool = True
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in SORT_KEYS:
            raise QuarantineError(f"sort must be one of {', '.join(SORT_KEYS)}")
        bad = [s for s in self.statuses if s not in STATUSES]
        if bad:
            raise QuarantineError(f"unknown status {bad[0]!r}")
        self.limit = max(1, min(int(self.limit), 1000))
        self.offset = max(0, int(self.offset))


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


# ---- the spool ------------------------------------------------------------------------------


class Spool:
    """Raw messages as files ``<id>.eml``; writes are atomic and durable."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, qid: str) -> Path:
        if not _ID_RE.match(qid):
            raise QuarantineError(f"malformed quarantine id {qid!r}")
        return self.root / f"{qid}.eml"

    def write(self, qid: str, raw: bytes) -> Path:
        final = self.path(qid)
        write_durably(final, raw, self.tmp)
        return final

    def read(self, qid: str) -> bytes:
        try:
            return self.path(qid).read_bytes()
        except FileNotFoundError:
            raise QuarantineError(f"message {qid} is no longer in the spool", 410) from None

    def exists(self, qid: str) -> bool:
        return self.path(qid).exists()

    def remove(self, qid: str) -> bool:
        try:
            self.path(qid).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.root)
        return True

    def ids(self) -> Iterator[str]:
        for p in self.root.glob("*.eml"):
            if _ID_RE.match(p.stem):
                yield p.stem

    def clean_tmp(self, older_than: float = _DAY) -> int:
        cutoff = time.time() - older_than
        n = 0
        for p in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
        return n


# ---- the store side -------------------------------------------------------------------------


class QuarantineRepository(Protocol):
    """The ``quarantine`` table (see ``mailsift/store/migrations``)."""

    def add(self, entry: QuarantineEntry) -> None: ...

    def get(self, qid: str) -> QuarantineEntry | None: ...

    def query(self, q: QuarantineQuery) -> tuple[list[QuarantineEntry], int]: ...

    def transition(
        self, qid: str, from_statuses: Sequence[str], to_status: str, **fields: Any
    ) -> bool: ...

    def update(self, qid: str, **fields: Any) -> None: ...

    def expired(self, now: float, limit: int = 1000) -> list[str]: ...

    def remove(self, qid: str) -> bool: ...

    def counts(self) -> dict[str, int]: ...


DeliverFn = Callable[..., Any]
AuditFn = Callable[[str, str, str, dict[str, Any]], None]


class Quarantine:
    """Hold, list, review and release quarantined mail (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        service: Any = None,
        deliver: DeliverFn | None = None,
        repo: QuarantineRepository | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.spool = Spool(settings.quarantine_dir)
        self.repo: QuarantineRepository = repo if repo is not None else _repo_for(store)
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
        self.spool.write(qid, raw)
        try:
            self.repo.add(entry)
        except BaseException:
            self.spool.remove(qid)
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
        if not _ID_RE.match(qid or ""):
            raise NotFound(qid)
        entry = self.repo.get(qid)
        if entry is None or (user is not None and not entry.visible_to(user)):
            raise NotFound(qid)
        return entry

    def raw(self, qid: str) -> bytes:
        return self.spool.read(qid)

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
            data = self.spool.read(qid)
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
        self.spool.remove(qid)
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
        raw = self.spool.read(qid)
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
        """Remove expired entries and their spool files; return how many went."""
        now = self.clock() if now is None else now
        n = 0
        while True:
            ids = self.repo.expired(now)
            if not ids:
                break
            for qid in ids:
                self.spool.remove(qid)
                if self.repo.remove(qid):
                    n += 1
            if len(ids) < 1000:
                break
        self.spool.clean_tmp()
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
        from mailsift.store.base import ListEntry

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
        "rules": [
            {"name": s.name, "score": s.score, "description": s.description, "source": s.source}
            for s in verdict.rules
        ][:50],
        "tokens": [{"token": t.token, "weight": t.weight} for t in verdict.tokens][:30],
    }


def _error_text(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"{code} {msg}" if code else str(msg)
    return text[:500]


def _repo_for(store: Any) -> QuarantineRepository:
    repo = getattr(store, "quarantine", None)
    if repo is not None:
        return repo  # type: ignore[no-any-return]
    return SqlQuarantineRepository(store)


_COLUMNS = tuple(QuarantineEntry.__dataclass_fields__)
_JSON_COLUMNS = ("recipients", "reasons")
_UPDATABLE = frozenset(_COLUMNS) - {"id"}


class SqlQuarantineRepository:
    """The ``quarantine`` table through the store's ``execute``/``query`` (SQLite or
    PostgreSQL; ``?`` placeholders, epoch-float times, JSON as text)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def add(self, entry: QuarantineEntry) -> None:
        row = _to_row(entry)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.store.execute(f"INSERT INTO quarantine ({cols}) VALUES ({marks})", list(row.values()))

    def get(self, qid: str) -> QuarantineEntry | None:
        row = self.store.query_one("SELECT * FROM quarantine WHERE id = ?", (qid,))
        return entry_from_row(row) if row else None

    def query(self, q: QuarantineQuery) -> tuple[list[QuarantineEntry], int]:
        where: list[str] = []
        params: list[Any] = []
        if q.statuses:
            where.append(f"status IN ({', '.join('?' for _ in q.statuses)})")
            params.extend(q.statuses)
        if q.user:
            # recipients is a JSON list of lower-case addresses: match one element exactly
            where.append("recipients LIKE ? ESCAPE '\\'")
            params.append('%"' + _like_escape(q.user.lower()) + '"%')
        if q.recipient:
            where.append("recipients LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(q.recipient.lower()) + "%")
        if q.sender:
            where.append(
                "(LOWER(sender) LIKE ? ESCAPE '\\' OR LOWER(from_header) LIKE ? ESCAPE '\\')"
            )
            pat = "%" + _like_escape(q.sender.lower()) + "%"
            params.extend((pat, pat))
        if q.subject:
            where.append("LOWER(subject) LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(q.subject.lower()) + "%")
        for col, op, val in (
            ("score", ">=", q.min_score),
            ("score", "<=", q.max_score),
            ("created", ">=", q.since),
            ("created", "<", q.until),
        ):
            if val is not None:
                where.append(f"{col} {op} ?")
                params.append(float(val))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total_row = self.store.query_one(f"SELECT COUNT(*) AS n FROM quarantine{clause}", params)
        total = int(total_row["n"]) if total_row else 0
        order = f"{q.sort} {'DESC' if q.descending else 'ASC'}, id ASC"
        rows = self.store.query(
            f"SELECT * FROM quarantine{clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, q.limit, q.offset],
        )
        return [entry_from_row(r) for r in rows], total

    def transition(
        self, qid: str, from_statuses: Sequence[str], to_status: str, **fields: Any
    ) -> bool:
        sets, params = _sets({"status": to_status, **fields})
        marks = ", ".join("?" for _ in from_statuses)
        n = self.store.execute(
            f"UPDATE quarantine SET {sets} WHERE id = ? AND status IN ({marks})",
            [*params, qid, *from_statuses],
        )
        return int(n) == 1

    def update(self, qid: str, **fields: Any) -> None:
        sets, params = _sets(fields)
        self.store.execute(f"UPDATE quarantine SET {sets} WHERE id = ?", [*params, qid])

    def expired(self, now: float, limit: int = 1000) -> list[str]:
        rows = self.store.query(
            "SELECT id FROM quarantine WHERE expires <= ? ORDER BY expires LIMIT ?", (now, limit)
        )
        return [r["id"] for r in rows]

    def remove(self, qid: str) -> bool:
        return int(self.store.execute("DELETE FROM quarantine WHERE id = ?", (qid,))) == 1

    def counts(self) -> dict[str, int]:
        rows = self.store.query("SELECT status, COUNT(*) AS n FROM quarantine GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _to_row(entry: QuarantineEntry) -> dict[str, Any]:
    row = asdict(entry)
    for c in _JSON_COLUMNS:
        row[c] = json.dumps(row[c], separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return row


def _sets(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    bad = set(fields) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    params = [
        json.dumps(v, ensure_ascii=False) if k in _JSON_COLUMNS else v for k, v in fields.items()
    ]
    return ", ".join(f"{k} = ?" for k in fields), params


def entry_from_row(row: dict[str, Any]) -> QuarantineEntry:
    d = dict(row)
    d["recipients"] = _loads(d.get("recipients"), [])
    d["reasons"] = _loads(d.get("reasons"), {})
    fields: dict[str, Any] = {k: d.get(k) for k in _COLUMNS}
    for k in ("score", "probability", "created", "expires"):
        fields[k] = float(fields[k] or 0.0)
    fields["size"] = int(fields["size"] or 0)
    return QuarantineEntry(**fields)


def _loads(v: Any, default: Any) -> Any:
    if v is None:
        return default
    if isinstance(v, list | dict):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return default
