"""The store's interfaces: small Protocols, the records they carry, and the SQL plumbing.

Repositories (one Protocol each, one SQL implementation shared by every backend):

- ``store.verdicts``  every scored message (id, time, digest, recipients, score, action,
  model version, rule hits) and, for a bounded time, the message sample needed to learn from
  a verdict id later (the raw message, zlib-compressed; see ``VerdictRepo.sample``).
- ``store.feedback``  every "spam"/"not spam" report (who, when, which message, which label,
  from which source), the messages reported (kept for the next full retrain), the learning
  state per message digest (what the live model has been taught) and the learn-event log
  every process replays onto its in-memory model.
- ``store.lists``     sender lists: per-user ``trusted``/``untrusted`` and global
  ``allow``/``block`` entries (addresses, ``*@domain``, domains, IPs and CIDR blocks).
- ``store.audit``     an append-only trail of who did what (feedback, list edits, releases).
- ``store.sessions``  the web UI's login sessions (by the sha256 of their cookie) and its
  failed logins (for the login throttle).
- ``store.auth_failures`` failed SMTP AUTH attempts, shared by every filter process and
  node (``mailsift.store.failures``: the same ``FailureLog`` as the UI's failed logins).
- ``store.quarantine`` the held messages' entries (``mailsift.store.quarantine``: records,
  query, SQL); the raw messages are in the quarantine's spool.
- ``store.api_keys``  the HTTP API's keys (only the sha256 of each token;
  ``mailsift.store.api_keys``).
- ``store.stats``     the dashboard's counts over verdicts and feedback
  (``mailsift.store.stats``).
- ``store.greylist``  the SQL greylist backend's triplets and client pass counts
  (``mailsift.store.greylist``; the greylist normally has a store of its own).
- ``store.accounts``  the mail accounts (SMTP AUTH, web UI logins, mailboxes): argon2id
  hashes and flags (``mailsift.store.accounts``).
- ``store.generations`` the serving model's generation every node polls
  (``mailsift.store.generations``).

Backends (``mailsift.store.sqlite``, ``mailsift.store.postgres``) only provide connections:
``SqlStore`` (``mailsift.store.sql``) runs the same SQL on both. SQL is written with ``?`` placeholders; the
PostgreSQL backend translates them (and escapes ``%``) for psycopg. Times are float epoch
seconds (UTC), booleans are integers 0/1, JSON is stored as text: the same on both dialects.

The store owns every table and every query: other areas call the repositories above (a
new table means a migration, ``mailsift.store.migrations``, and a repository here).
``store.execute`` / ``store.query`` / ``store.query_one`` / ``store.transaction()`` are the
plumbing the repositories are written with (tests also use them to look at rows).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mailsift.store.accounts import AccountRepo
    from mailsift.store.api_keys import ApiKeyRepo
    from mailsift.store.generations import GenerationRepo
    from mailsift.store.greylist import SqlGreylistRepo
    from mailsift.store.quarantine import QuarantineRepo
    from mailsift.store.stats import StatsRepo

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any]
Row = dict[str, Any]

LIST_KINDS = ("trusted", "untrusted", "allow", "block")
USER_LIST_KINDS = ("trusted", "untrusted")
GLOBAL_LIST_KINDS = ("allow", "block")
FEEDBACK_SOURCES = ("user", "admin", "trap", "quarantine", "api")


class StoreError(Exception):
    """A store operation failed (bad URL, unreachable database, failed migration...)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (refused, timed out, connection lost, no
    pooled connection free in time): a temporary condition, answered 503 / 451."""


# ---- records -------------------------------------------------------------------------------


@dataclass(slots=True)
class VerdictRecord:
    verdict_id: str
    digest: str
    score: float
    probability: float
    action: str
    model_version: str = ""
    created: float = field(default_factory=time.time)
    recipients: tuple[str, ...] = ()
    sender: str = ""  # envelope MAIL FROM, else the header From address
    client_ip: str = ""
    rules: list[tuple[str, float]] = field(default_factory=list)  # (name, score) hits
    list_decision: str | None = None
    reason: str = ""


@dataclass(slots=True)
class FeedbackRecord:
    label: str  # "spam" | "ham"
    user: str
    digest: str
    verdict_id: str | None = None
    source: str = "user"
    created: float = field(default_factory=time.time)
    status: str = "accepted"  # learned, personal, duplicate, relabelled, rate_limited ...
    feedback_id: int | None = None
    reporter: str = ""  # who spoke (rate caps, votes, budgets); "" : the user


@dataclass(frozen=True, slots=True)
class LearnedState:
    """What the live model has been taught about one message (one row per digest)."""

    digest: str
    label: str
    weight: float
    updated: float
    layer: str = "model"


@dataclass(frozen=True, slots=True)
class LearnEvent:
    """One entry of the learn log every process applies to its in-memory model, in order.

    ``label`` is what to learn; ``unlearn`` (when set) is the label taught earlier that the
    model must take back first (a relabel). ``weight`` scales the update.

    ``layer`` "model": a trusted lesson, learned by the model's arrays. "global": users'
    corroborated lesson, ``amount`` log-odds spread over ``cols`` (the message's columns)
    and charged to the budgets of ``reporters``.
    """

    event_id: int
    digest: str
    label: str
    unlearn: str | None
    weight: float
    created: float
    layer: str = "model"
    reporters: tuple[str, ...] = ()
    cols: bytes | None = None
    amount: float = 0.0


@dataclass(frozen=True, slots=True)
class UserLesson:
    """A user's own lesson: ``delta`` log-odds added to each of ``cols`` when that user's
    mail is scored."""

    lesson_id: int
    user: str
    digest: str
    label: str
    cols: bytes
    delta: float
    created: float


@dataclass(frozen=True, slots=True)
class Vote:
    """A user's report counted towards corroboration."""

    reporter: str
    domain: str
    label: str


@dataclass(frozen=True, slots=True)
class ListEntry:
    kind: str  # trusted | untrusted | allow | block
    pattern: str  # "user@example.com", "*@example.com", "example.com", "192.0.2.0/24"
    owner: str = ""  # recipient address for trusted/untrusted, "" for global lists
    created: float = 0.0
    added_by: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    actor: str
    action: str  # "feedback", "lists.add", "lists.remove", "quarantine.release", ...
    target: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class WebSession:
    """One logged-in browser of the web UI."""

    session_sha256: str  # sha256 of the cookie value (the value itself is never stored)
    user: str
    csrf: str  # the token every state-changing form posts back
    credential: str  # fingerprint of the account's password hash at login
    created: float
    expires: float
    client_ip: str = ""


# ---- repository protocols ------------------------------------------------------------------


@runtime_checkable
class VerdictRepo(Protocol):
    def add(self, rec: VerdictRecord, sample: bytes | None = None) -> None:
        """Record a verdict (and optionally the raw message to learn from later). Durable
        (committed) when it returns."""

    def add_many(self, items: Sequence[tuple[VerdictRecord, bytes | None]]) -> None:
        """Record several verdicts (each with its optional sample) in one transaction: all
        are committed when it returns, or none (it raises)."""

    def get(self, verdict_id: str) -> VerdictRecord | None: ...

    def by_digest(self, digest: str, limit: int = 20) -> list[VerdictRecord]: ...

    def recent(
        self, limit: int = 100, since: float | None = None, action: str | None = None
    ) -> list[VerdictRecord]: ...

    def count_by_action(self, since: float | None = None) -> dict[str, int]: ...

    def sample(self, verdict_id: str) -> bytes | None:
        """The raw message kept with a verdict (None once purged or never kept)."""

    def purge_samples(self, before: float) -> int: ...

    def purge(self, before: float) -> int: ...


@runtime_checkable
class FeedbackRepo(Protocol):
    def add(self, rec: FeedbackRecord) -> int:
        """Record one report (every report, whatever its status); returns its id."""

    def set_status(self, feedback_id: int, status: str) -> None: ...

    def recent(self, limit: int = 100, user: str | None = None) -> list[FeedbackRecord]: ...

    def count_since(
        self,
        since: float,
        user: str | None = None,
        source: str | None = None,
        reporter: str | None = None,
    ) -> int:
        """Reports that counted against the rate caps (status not rate_limited) since
        ``since``, optionally of one user, one source or one reporter."""

    def reported(self, reporter: str, digest: str, label: str) -> bool:
        """Whether ``reporter`` reported this message with this label before (and it
        counted: not rate-limited)."""

    def keep_message(self, digest: str, raw: bytes) -> None:
        """Keep a reported message (compressed) for the next full retrain."""

    def message(self, digest: str) -> bytes | None: ...

    def learned(self, digest: str) -> LearnedState | None: ...

    def teach(
        self,
        digest: str,
        label: str,
        weight: float,
        *,
        layer: str = "model",
        reporters: Sequence[str] = (),
        cols: bytes | None = None,
        amount: float = 0.0,
    ) -> tuple[str, LearnEvent | None]:
        """Decide and record atomically (across processes) what teaching ``label`` for
        ``digest`` means: "learned" (first time), "relabelled" (the event says to unlearn
        the earlier label first) or "duplicate" (already taught: no event). A "global"
        lesson (users') never overrides an earlier lesson of the other label: "contested",
        no event; only a trusted ("model") lesson relabels."""

    def add_user_lesson(
        self, user: str, digest: str, label: str, cols: bytes, delta: float
    ) -> int: ...

    def user_lessons_after(self, lesson_id: int, limit: int = 1000) -> list[UserLesson]: ...

    def add_vote(
        self, reporter: str, domain: str, digest: str, label: str, bands: Sequence[str]
    ) -> None: ...

    def votes(self, bands: Sequence[str], since: float) -> list[Vote]:
        """Distinct (reporter, domain, label) of the votes since ``since`` whose message
        shares a band with ``bands``."""

    def purge_votes(self, before: float) -> int: ...

    def events_after(self, event_id: int, limit: int = 1000) -> list[LearnEvent]: ...

    def last_event_id(self) -> int: ...

    def training_set(self) -> Iterator[tuple[str, str, bytes]]:
        """(digest, label, raw) of every message the model has been taught, latest label."""

    def record_retrain(
        self, model_version: str, last_event_id: int, promoted: bool, detail: dict[str, Any]
    ) -> None: ...

    def retrain_event_id(self, model_version: str) -> int | None:
        """The last learn event a retrained model already contains (None: not a retrain)."""


@runtime_checkable
class ListRepo(Protocol):
    def add(self, entry: ListEntry) -> bool:
        """Add an entry; False when it was already there."""

    def remove(self, kind: str, pattern: str, owner: str = "") -> bool: ...

    def entries(self, kind: str | None = None, owner: str | None = None) -> list[ListEntry]: ...

    def version(self) -> int:
        """A counter bumped by every change (for caches in every process)."""


@runtime_checkable
class AuditRepo(Protocol):
    def record(
        self, actor: str, action: str, target: str = "", detail: dict[str, Any] | None = None
    ) -> None: ...

    def recent(
        self, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEvent]: ...


@runtime_checkable
class FailureRepo(Protocol):
    """Failed logins of one kind (``mailsift.store.failures.FailureLog``)."""

    def record_failure(self, client_ip: str, user: str, when: float | None = None) -> None: ...

    def failures(self, since: float, client_ip: str | None = None, user: str | None = None) -> int:
        """Failed logins since ``since``: of one address and/or one account, or in all."""

    def clear_failures(self, client_ip: str, user: str) -> int:
        """Forget the failures of one (address, account) pair (after it logged in)."""

    def purge_failures(self, before: float) -> int: ...


@runtime_checkable
class SessionRepo(FailureRepo, Protocol):
    """Web UI sessions, and the UI's failed logins."""

    def create(self, session: WebSession) -> None: ...

    def get(self, session_sha256: str, now: float | None = None) -> WebSession | None:
        """The session, unless it does not exist or has expired."""

    def delete(self, session_sha256: str) -> bool: ...

    def delete_user(self, user: str) -> int:
        """End every session of ``user``; returns how many there were."""

    def purge(self, now: float | None = None) -> int:
        """Delete expired sessions; returns how many."""


class Tx(Protocol):
    """A transaction handle: the same calls as the store, inside one atomic unit."""

    def execute(self, sql: str, params: Params = ()) -> int: ...

    def query(self, sql: str, params: Params = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Params = ()) -> Row | None: ...


@runtime_checkable
class Store(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def url(self) -> str: ...

    @property
    def verdicts(self) -> VerdictRepo: ...

    @property
    def feedback(self) -> FeedbackRepo: ...

    @property
    def lists(self) -> ListRepo: ...

    @property
    def audit(self) -> AuditRepo: ...

    @property
    def sessions(self) -> SessionRepo: ...

    @property
    def quarantine(self) -> QuarantineRepo: ...

    @property
    def api_keys(self) -> ApiKeyRepo: ...

    @property
    def stats(self) -> StatsRepo: ...

    @property
    def greylist(self) -> SqlGreylistRepo: ...

    @property
    def accounts(self) -> AccountRepo: ...

    @property
    def generations(self) -> GenerationRepo: ...

    @property
    def auth_failures(self) -> FailureRepo: ...

    def execute(self, sql: str, params: Params = ()) -> int: ...

    def query(self, sql: str, params: Params = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Params = ()) -> Row | None: ...

    def transaction(self) -> AbstractContextManager[Tx]: ...

    def lock(self, name: str) -> None:
        """Inside ``transaction()``: hold a named cross-process lock until it ends."""

    def migrate(self) -> list[int]: ...

    def applied_migrations(self) -> list[int]: ...

    def probe(self) -> None:
        """One round trip to the database; raises when it cannot be reached."""

    def ping(self) -> bool:
        """``probe`` as a boolean."""

    def close(self) -> None: ...


# ---- helpers shared by the implementations -------------------------------------------------


def compress(raw: bytes) -> bytes:
    # level 1: a verdict's sample is written on every scoring request and read rarely; on
    # corpus mail it costs 94 us a message against level 6's 143 us, for 6% more bytes
    return zlib.compress(raw, 1)


def decompress(blob: bytes | memoryview | None) -> bytes | None:
    if blob is None:
        return None
    return zlib.decompress(bytes(blob))


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def dumps(obj: Any) -> str:
    # json.dumps with these options would build a new JSONEncoder per call
    return _ENCODER.encode(obj)


def loads(text: str | None, default: Any = None) -> Any:
    if not text:
        return default
    return json.loads(text)
