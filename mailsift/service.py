"""ScoringService: the one place that ties the scorer, the store, the sender lists and the
feedback learner together. The HTTP API, the SMTP filter and the quarantine all call it.

- ``score(raw, envelope=None, symbols=()) -> Verdict``: applies the pending learn events of
  other processes (at most every ``feedback.sync_interval`` s), scores (rules + model), applies
  the sender lists (``StoreListPolicy``: trusted / allow win, block / untrusted force spam),
  and records the verdict durably (id, time, digest, recipients, sender, client IP, score,
  probability, action, model version, rule hits, list decision). The verdict is committed
  before ``score`` returns: an answered verdict survives a crash. A store failure raises
  ``StoreError`` (callers answer 4xx tempfail / 503).
- ``feedback(label, user, verdict_id=None, raw=None, source="user", *, reporter=None,
  trusted=None) -> FeedbackResult``: a report about a scored message (by verdict id) or
  any raw message. ``user``: whose mail it is (their own corrections); ``reporter``: who
  speaks (rate caps, corroboration votes, budgets; default ``user``); ``trusted``: a
  global lesson at once (default: ``source`` in ``feedback.trusted_sources``); ``via``: the
  mail server that relayed a user's report (its votes count as one domain). See
  ``mailsift.learning.feedback`` for who teaches what.
- ``reload_model(model_dir=None)``: load the serving model (champion) again and swap it in
  without dropping a request in flight; feedback learned since its snapshot is replayed.

Learning from a verdict id needs the message: with ``feedback.keep_samples`` (default) the
raw message of every verdict is kept in the store, zlib-compressed (``verdict_samples``),
truncated to ``feedback.sample_max_bytes``, for ``feedback.sample_days`` days
(``mailsift retrain --purge-samples`` / ``ScoringService.purge_samples`` drop older ones).
A reported message itself is kept for good (``feedback_messages``): the next full retrain
learns from it. Without a kept sample, feedback must carry the raw message.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailsift.config import Settings
from mailsift.message import address_of
from mailsift.store import Store, StoreError, VerdictRecord, open_store_for
from mailsift.store.lists import StoreListPolicy
from mailsift.store.verdicts import find_verdict
from mailsift.verdict import Envelope, Label, Symbol, Verdict

if TYPE_CHECKING:
    from mailsift.learning.feedback import FeedbackError, FeedbackResult

log = logging.getLogger(__name__)

__all__ = ["FeedbackError", "FeedbackResult", "ScoringService", "kept_message", "known_verdict"]


def __getattr__(name: str) -> Any:
    # FeedbackError / FeedbackResult on first use: the learner imports the model (scikit-learn),
    # which an API worker imports only once it has set up its process (mailsift.api.app)
    if name in ("FeedbackError", "FeedbackResult"):
        from mailsift.learning import feedback

        return getattr(feedback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HEADER_SCAN_BYTES = 64 * 1024


def known_verdict(store: Store, verdict_id: str) -> VerdictRecord:
    """The stored verdict ``verdict_id``; FeedbackError when there is none."""
    from mailsift.learning.feedback import FeedbackError  # lazily: see __getattr__

    rec = find_verdict(store.verdicts, verdict_id)
    if rec is None:
        raise FeedbackError(f"unknown verdict {verdict_id}")
    return rec


def kept_message(store: Store, rec: VerdictRecord, hint: str = "") -> bytes:
    """The message a verdict was given for, as kept: the verdict's own sample, else the copy
    kept for feedback under its digest. FeedbackError (its text ending in ``hint``) when
    neither is kept any more."""
    from mailsift.learning.feedback import FeedbackError  # lazily: see __getattr__

    raw = store.verdicts.sample(rec.verdict_id) or store.feedback.message(rec.digest)
    if raw is None:
        raise FeedbackError(f"the message of verdict {rec.verdict_id} is no longer kept{hint}")
    return raw


class ScoringService:
    """``model_resolver(settings)``: where the serving model is (default:
    ``mailsift.pipeline.registry.serving_model_dir``, which asks the MLflow registry in this
    process); used at start and by ``reload_model()``."""

    def __init__(
        self,
        settings: Settings,
        scorer: Any = None,
        store: Store | None = None,
        model_resolver: Callable[[Settings], Path] | None = None,
    ) -> None:
        from mailsift.learning.feedback import Learner

        self.settings = settings
        self.model_resolver = model_resolver
        self._own_store = store is None
        self.store: Store = store or open_store_for(settings)
        self.lists = StoreListPolicy(self.store)
        if scorer is None:
            from mailsift.classifier.scorer import Scorer
            from mailsift.pipeline.registry import serving_model_dir

            scorer_settings = settings
            if model_resolver is not None and settings.model.path is None:
                where = model_resolver(settings)
                scorer_settings = settings.model_copy(
                    update={"model": settings.model.model_copy(update={"path": where})}
                )
            scorer = Scorer.from_model_dir(
                serving_model_dir(scorer_settings), scorer_settings, list_policy=self.lists
            )
        elif getattr(scorer, "list_policy", None) is None:
            scorer.list_policy = self.lists
        self.scorer = scorer
        self.learner = Learner(scorer, self.store, settings)
        self.learner.sync()  # feedback the loaded model does not contain yet

    @property
    def model_version(self) -> str:
        return str(self.scorer.model_version)

    # ---- scoring ---------------------------------------------------------------------------
    def score(
        self,
        raw: bytes | str,
        envelope: Envelope | None = None,
        symbols: Sequence[Symbol] = (),
    ) -> Verdict:
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        verdict = self.evaluate(data, envelope, symbols)
        self.record(verdict, data, envelope)
        return verdict

    def evaluate(
        self, raw: bytes, envelope: Envelope | None = None, symbols: Sequence[Symbol] = ()
    ) -> Verdict:
        """The first half of ``score``: the verdict, not yet recorded (the caller must
        ``record`` it before answering; the API runs the two on different threads)."""
        try:
            self.learner.maybe_sync()
        except Exception as exc:  # a store hiccup must not stop scoring with the current model
            log.warning("feedback sync failed: %s", exc)
        verdict: Verdict = self.scorer.score(raw, envelope, symbols)
        return verdict

    def record(self, verdict: Verdict, raw: bytes, envelope: Envelope | None = None) -> None:
        """Store a verdict (and the message sample) durably; raises StoreError on failure."""
        rec, sample = self.verdict_record(verdict, raw, envelope)
        try:
            self.store.verdicts.add(rec, sample)
        except Exception as exc:
            raise StoreError(f"could not record verdict {verdict.verdict_id}: {exc}") from exc

    def verdict_record(
        self, verdict: Verdict, raw: bytes, envelope: Envelope | None = None
    ) -> tuple[VerdictRecord, bytes | None]:
        """The row ``record`` stores for a verdict, and the sample kept with it (None when
        ``feedback.keep_samples`` is off): for a caller that writes verdicts in batches of
        its own (``store.verdicts.add_many``)."""
        env = envelope or Envelope()
        fs = self.settings.feedback
        rec = VerdictRecord(
            verdict_id=verdict.verdict_id,
            digest=verdict.digest,
            score=float(verdict.score),
            probability=float(verdict.probability),
            action=verdict.action.value,
            model_version=verdict.model_version,
            created=time.time(),
            recipients=tuple(r.lower() for r in env.rcpt_to),
            sender=(env.mail_from or header_from(raw) or "").lower(),
            client_ip=env.client_ip or "",
            rules=[(s.name, float(s.score)) for s in verdict.rules],
            list_decision=verdict.list_decision,
            reason=verdict.reason,
        )
        sample = raw[: fs.sample_max_bytes] if fs.keep_samples else None
        return rec, sample

    def verdict(self, verdict_id: str) -> VerdictRecord | None:
        """The stored verdict; a recent id not stored yet is waited for (``find_verdict``)."""
        return find_verdict(self.store.verdicts, verdict_id)

    # ---- feedback --------------------------------------------------------------------------
    def feedback(
        self,
        label: Label | str,
        user: str,
        verdict_id: str | None = None,
        raw: bytes | str | None = None,
        source: str = "user",
        *,
        reporter: str | None = None,
        trusted: bool | None = None,
        via: str | None = None,
    ) -> FeedbackResult:
        """Teach that a message is spam or ham (see the module docstring). ``via``: the
        mail server (a delegate key, the spamd front end) that relayed a user's report:
        every vote relayed by it counts as one domain."""
        from mailsift.learning.feedback import FeedbackError  # lazily: see __getattr__

        digest: str | None = None
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if verdict_id is not None:
            rec = known_verdict(self.store, verdict_id)
            if raw is None:
                raw = kept_message(self.store, rec, hint=": send it raw")
                digest = rec.digest
        if raw is None:
            raise FeedbackError("feedback needs a verdict id or the raw message")
        return self.learner.submit(
            label,
            user,
            raw,
            verdict_id=verdict_id,
            source=source,
            digest=digest,
            reporter=reporter,
            trusted=trusted,
            via=via,
        )

    # ---- model -----------------------------------------------------------------------------
    def reload_model(self, model_dir: str | Path | None = None) -> str:
        """Load the serving model (or ``model_dir``) and swap it in; returns its version."""
        from mailsift.classifier.model import SpamModel
        from mailsift.pipeline.registry import serving_model_dir

        resolve = self.model_resolver or serving_model_dir
        model = SpamModel.load(model_dir or resolve(self.settings), serving=True)
        self.scorer.replace_model(model)
        self.learner.sync()  # rebases the learner and replays newer feedback
        log.info("model reloaded: %s", model.version)
        return str(model.version)

    def purge_samples(self, older_than_days: float | None = None) -> int:
        fs = self.settings.feedback
        days = fs.sample_days if older_than_days is None else older_than_days
        self.store.feedback.purge_votes(time.time() - fs.vote_days * 86400.0)  # lapsed votes
        return self.store.verdicts.purge_samples(time.time() - days * 86400.0)

    def ready(self) -> bool:
        return self.scorer.model is not None and self.store.ping()

    def close(self) -> None:
        if self._own_store:
            self.store.close()


_FROM_RE = re.compile(rb"^from[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def header_from(raw: bytes) -> str:
    """The From address of a message's header block (cheap: headers only, never raises)."""
    head = raw[:_HEADER_SCAN_BYTES]
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = head.find(sep)
        if i >= 0:
            head = head[:i]
            break
    try:
        m = _FROM_RE.search(head)
        if m is None:
            return ""
        value = m.group(1).decode("ascii", "replace").strip()
        return address_of(value) if value else ""
    except Exception:
        return ""
