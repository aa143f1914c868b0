"""Feedback learning: users' "spam" / "not spam" reports, learned so that no single reporter
can steer what everyone else receives.

Whose lesson is it (``Learner.submit``):

- **A trusted reporter** (an admin key, a key with the ``trusted`` scope, the quarantine's
  admins, ``mailsift feedback`` at the shell, sources in ``feedback.trusted_sources`` such
  as a spam trap, the online evaluator) teaches the model itself at once: the learn event
  updates the model's arrays (naive Bayes counts, linear weights; below). No rate cap.
- **A user** (a key bound to one user, a user's quarantine action, a learn pipe) teaches
  two things:

  1. *Their own mail*, at once and fully: a personal correction (``user_lessons``), a
     log-odds delta spread evenly over the columns of the reported message, sized so that
     the message, scored for that user, lands at ``user_spam_probability`` (or
     ``user_ham_probability``) at least. Their near-duplicates follow (they share most
     columns). Applied when that user is the message's recipient (with several recipients,
     only the part every recipient's correction agrees on). Their sender lists stay as
     they are (``trusted`` / ``untrusted`` win over everything).
  2. *Everyone*, only through corroboration: the report is a vote on the message's campaign
     (min-hash bands of its body words: copies sent to other users with another nonce,
     greeting or Message-ID share a band). When ``corroborate`` distinct reporters (of
     distinct domains with ``corroborate_domains``), net of those who say the opposite,
     say the same of the campaign within ``vote_days``, the report becomes a global lesson
     (a learn event of layer ``global``): an additive log-odds correction over the
     message's columns that moves it ``global_margin`` past ``thresholds.spam``, charged
     to the agreeing reporters. Each reporter's charges are capped by ``reporter_budget``:
     the L1 norm of everything one reporter's lessons added, so no message's log-odds
     (a sum over its features, each 0/1 here) can move more than that because of one
     reporter. Votes older than ``vote_days`` lapse (unconfirmed lessons decay); a full
     retrain folds the global lessons into the model and renews the budgets.

- **Rate caps**: at most ``per_user_per_hour`` counted reports per reporter in the last hour;
  a report over it is recorded (``rate_limited``) and teaches nothing. Every reporter has
  a bucket of its own: one reporter's flood locks out nobody else.
- **Learn log**: every decision is committed in the store (the report, the reported
  message for the next full retrain, the audit record, the event) before it is applied;
  every process replays the logs (``learn_events``, ``user_lessons``) in order (``sync``),
  so API workers and the SMTP filter serve the same lessons, and a restarted process
  catches up.

Updating the model's arrays for a trusted lesson (``settings.feedback.mode``: the sparse
in-place ``fast`` update, or ``partial_fit``) and the additive corrections of users'
lessons are :mod:`mailsift.classifier.online`: math over the model, with no store.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mailsift.classifier.features import Sample
from mailsift.classifier.model import SpamModel
from mailsift.classifier.online import FeedbackLayers, OnlineUpdater, campaign_bands, logit
from mailsift.config import FeedbackSettings, Settings
from mailsift.store.base import FEEDBACK_SOURCES, FeedbackRecord, LearnEvent, Store, UserLesson
from mailsift.verdict import Label

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0


class FeedbackError(ValueError):
    """A report that cannot be taken (bad label, unknown verdict, no message...)."""


@dataclass(slots=True)
class FeedbackResult:
    # learned | relabelled | personal | duplicate | contested | budget_capped | rate_limited
    # | drift_capped (a trusted lesson clipped by the optional max_drift)
    status: str
    label: str
    digest: str
    user: str
    source: str
    verdict_id: str | None = None
    feedback_id: int | None = None
    event_id: int | None = None
    detail: str = ""
    reporter: str = ""
    scope: str = ""  # "global": everyone learned it; "personal": the user's own mail only
    votes: int = 0  # reporters (domains) agreeing on the campaign, net of disagreeing ones
    update_ms: float = 0.0  # time spent changing the in-memory model / corrections for it

    @property
    def learned(self) -> bool:
        return self.status in ("learned", "relabelled", "personal", "budget_capped", "drift_capped")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["learned"] = self.learned
        return d


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _label(label: Label | str) -> Label:
    try:
        return Label(str(getattr(label, "value", label)).lower())
    except ValueError as exc:
        raise FeedbackError(f"label must be 'spam' or 'ham', not {label!r}") from exc


def _check(label: Label | str, user: str, raw: bytes, source: str) -> tuple[Label, str]:
    lab = _label(label)
    user = (user or "").strip()
    if not user:
        raise FeedbackError("feedback needs a user")
    if source not in FEEDBACK_SOURCES:
        raise FeedbackError(f"unknown feedback source {source!r} ({', '.join(FEEDBACK_SOURCES)})")
    if not raw:
        raise FeedbackError("feedback needs the message")
    return lab, user


def domain_of(reporter: str) -> str:
    """The domain a reporter speaks from (an address's domain; a key or name: itself)."""
    r = reporter.strip().lower()
    return r.rpartition("@")[2] if "@" in r else r


def record_report(
    store: Store,
    settings: Settings,
    label: Label | str,
    user: str,
    raw: bytes,
    *,
    verdict_id: str | None = None,
    source: str = "user",
    digest: str | None = None,
    clock: Callable[[], float] = time.time,
    reporter: str | None = None,
) -> tuple[FeedbackResult, LearnEvent | None]:
    """The store half of a **trusted** report, in one transaction: dedupe / relabel
    decision, the report row, the message kept for retraining, the learn event and the
    audit record. Processes holding a model apply the event (``Learner.sync``);
    ``mailsift feedback`` (an operator at the shell) uses this alone (running services pick
    the event up within ``feedback.sync_interval``)."""
    lab, user = _check(label, user, raw, source)
    fs = settings.feedback
    digest = digest or digest_of(raw)
    reporter = (reporter or user).strip()
    now = clock()
    res = FeedbackResult("", lab.value, digest, user, source, verdict_id, reporter=reporter)
    res.scope = "global"
    event: LearnEvent | None = None
    with store.transaction():
        store.feedback.keep_message(digest, raw)
        res.status, event = store.feedback.teach(digest, lab.value, float(fs.learn_weight))
        if event is None:
            res.detail = f"this message was already taught as {lab.value}"
        rec = FeedbackRecord(lab.value, user, digest, verdict_id, source, now, res.status)
        rec.reporter = reporter
        res.feedback_id = store.feedback.add(rec)
        store.audit.record(
            reporter,
            "feedback",
            verdict_id or digest,
            {
                "label": lab.value,
                "source": source,
                "status": res.status,
                "digest": digest,
                "user": user,
                "trusted": True,
            },
        )
    res.event_id = event.event_id if event is not None else None
    log.info(
        "feedback trusted reporter=%s source=%s label=%s digest=%s status=%s",
        reporter,
        source,
        lab.value,
        digest[:16],
        res.status,
    )
    return res, event


def encode_cols(cols: np.ndarray) -> bytes:
    return np.asarray(cols, dtype="<i8").tobytes()


def decode_cols(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype="<i8")


class Learner:
    """Learning from reports, per reporter and per user (see the module docstring)."""

    def __init__(
        self,
        scorer: Any,
        store: Store,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.settings = settings
        self.fs = settings.feedback
        self.clock = clock
        self._lock: threading.Lock = getattr(scorer, "_lock", None) or threading.Lock()
        self._sync_lock = threading.Lock()
        self._samples: OrderedDict[str, Sample] = OrderedDict()
        self._last_sync = 0.0
        self.applied_event_id = 0
        self.applied_lesson_id = 0  # users' own lessons survive retrains: always from 0
        self.updater: OnlineUpdater | None = None
        self._model: SpamModel | None = None
        model: SpamModel = scorer.model
        self.layers = FeedbackLayers(
            model.vectorizer.n_features + model.vectorizer.n_meta, self.fs.reporter_budget
        )
        if hasattr(scorer, "layers"):
            scorer.layers = self.layers
        self._last_applied = 0.0  # the amount the last global event applied
        self._report_applied: dict[int, float] = {}  # ... for a report's own event
        self._report_update_s = 0.0  # time applying a report's own event and lessons
        self.rebase()

    # ---- model state -----------------------------------------------------------------------
    def rebase(self) -> None:
        """Take the scorer's current model as the base (after load or reload): it contains
        the learn events up to its retrain snapshot (0 for a model trained without them)."""
        with self._lock:
            model: SpamModel = self.scorer.model
            self._model = model
            use_fast = self.fs.mode == "fast" and OnlineUpdater.supports(model)
            self.updater = (
                OnlineUpdater(model, self.fs.max_drift, self.fs.step) if use_fast else None
            )
            snap = self.store.feedback.retrain_event_id(model.version) if model.version else None
            self.applied_event_id = snap or 0
            self.layers.reset_global()

    def trusted_source(self, source: str) -> bool:
        return source in self.fs.trusted_sources

    # ---- reports ---------------------------------------------------------------------------
    def submit(
        self,
        label: Label | str,
        user: str,
        raw: bytes,
        *,
        verdict_id: str | None = None,
        source: str = "user",
        sample: Sample | None = None,
        digest: str | None = None,
        reporter: str | None = None,
        trusted: bool | None = None,
        via: str | None = None,
    ) -> FeedbackResult:
        """Record one report and learn from it: globally at once when ``trusted`` (default:
        whether ``source`` is one of ``feedback.trusted_sources``), else for ``user``'s own
        mail at once and for everyone once corroborated. ``reporter``: who speaks (rate
        caps, votes, budgets; default ``user``). ``via``: the mail server that relayed a
        user's report (a delegate key, spamd): all its votes count as one domain. ``digest``: the message's sha256 when
        ``raw`` is a truncated copy (a kept sample)."""
        if trusted is None:
            trusted = self.trusted_source(source)
        if trusted:
            res, event = record_report(
                self.store,
                self.settings,
                label,
                user,
                raw,
                verdict_id=verdict_id,
                source=source,
                digest=digest,
                clock=self.clock,
                reporter=reporter,
            )
            if event is not None:
                # the features first: the update time is the model's, not the parser's
                self._remember(res.digest, sample or self.scorer.sample(raw))
                clipped = self.sync(report_event=event.event_id)
                res.update_ms = round(self._report_update_s * 1000.0, 3)
                if clipped:
                    res.status = "drift_capped"
                    res.detail = f"update clipped at max_drift {self.fs.max_drift}"
                    if res.feedback_id is not None:
                        self.store.feedback.set_status(res.feedback_id, res.status)
                elif event.unlearn:
                    res.detail = f"relabelled: took back {event.unlearn}, learned {res.label}"
            return res
        return self._submit_user(
            label, user, raw, verdict_id, source, sample, digest, reporter, via
        )

    def _submit_user(
        self,
        label: Label | str,
        user: str,
        raw: bytes,
        verdict_id: str | None,
        source: str,
        sample: Sample | None,
        digest: str | None,
        reporter: str | None,
        via: str | None = None,
    ) -> FeedbackResult:
        lab, user = _check(label, user, raw, source)
        user = user.lower()
        reporter = (reporter or user).strip().lower()
        fs = self.fs
        digest = digest or digest_of(raw)
        now = self.clock()
        res = FeedbackResult("", lab.value, digest, user, source, verdict_id, reporter=reporter)
        y = 1 if lab is Label.SPAM else 0
        capped = _over_cap(self.store, fs, reporter, now)
        event = None
        lesson = 0.0
        if not capped:
            if sample is None:
                sample = self.scorer.sample(raw)
            self._remember(digest, sample)
            model: SpamModel = self.scorer.model
            cols = np.unique(model.row_vectors(sample)[0])
            z_model = float(model.decision_function([sample])[0])
            z_global = z_model + self.layers.global_offset(cols)
            z_user = z_global + self.layers.user_offset(user, cols)
            target = logit(fs.user_spam_probability if y else fs.user_ham_probability)
            need = target - z_user
            lesson = need if (need > 0) == bool(y) else 0.0
            bands = campaign_bands(sample, model.vectorizer.token_columns)
        with self.store.transaction():
            if capped:
                res.status, res.detail = "rate_limited", capped
            elif self.store.feedback.reported(reporter, digest, lab.value):
                res.status = "duplicate"
                res.detail = f"{reporter} reported this message as {lab.value} before"
            else:
                fb = self.store.feedback
                fb.keep_message(digest, raw)
                res.status, res.scope = "personal", "personal"
                if lesson:
                    fb.add_user_lesson(
                        user, digest, lab.value, encode_cols(cols), lesson / len(cols)
                    )
                domain = f"via:{via}" if via else domain_of(reporter)
                fb.add_vote(reporter, domain, digest, lab.value, bands)
                agree, res.votes = self._corroboration(bands, lab.value, now)
                if res.votes >= fs.corroborate:
                    margin = fs.global_margin if y else -fs.global_margin
                    # the threshold in force: configured, else the model's calibrated one
                    spam_at = self.settings.thresholds.resolved(model.thresholds_).spam
                    want = logit(spam_at) + margin - z_global
                    amount = want if (want > 0) == bool(y) else 0.0
                    status, event = fb.teach(
                        digest,
                        lab.value,
                        float(fs.learn_weight),
                        layer="global",
                        reporters=agree,
                        cols=encode_cols(cols),
                        amount=amount,
                    )
                    if event is not None:
                        res.status, res.scope = "learned", "global"
                    elif status == "contested":
                        res.detail = "a trusted lesson says otherwise"
            rec = FeedbackRecord(lab.value, user, digest, verdict_id, source, now, res.status)
            rec.reporter = reporter
            res.feedback_id = self.store.feedback.add(rec)
            self.store.audit.record(
                reporter,
                "feedback",
                verdict_id or digest,
                {
                    "label": lab.value,
                    "source": source,
                    "status": res.status,
                    "digest": digest,
                    "user": user,
                    "votes": res.votes,
                },
            )
        if res.status not in ("rate_limited", "duplicate"):
            self.sync(report_event=event.event_id if event is not None else None)
            res.update_ms = round(self._report_update_s * 1000.0, 3)
            if event is not None:
                res.event_id = event.event_id
                applied = self._report_applied.pop(event.event_id, event.amount)
                if abs(applied) + 1e-9 < abs(event.amount):
                    res.status = "budget_capped"
                    res.detail = (
                        f"the reporters' budgets allowed {abs(applied):.2f} of "
                        f"{abs(event.amount):.2f} log-odds"
                    )
                    if res.feedback_id is not None:
                        self.store.feedback.set_status(res.feedback_id, res.status)
            if not res.detail:
                res.detail = (
                    f"learned for {user}; {res.votes} of {fs.corroborate} reporters agree"
                    if res.scope == "personal"
                    else f"learned for everyone: {res.votes} reporters agree"
                )
        log.info(
            "feedback reporter=%s user=%s source=%s label=%s digest=%s status=%s votes=%d",
            reporter,
            user,
            source,
            lab.value,
            digest[:16],
            res.status,
            res.votes,
        )
        return res

    def _corroboration(self, bands: Sequence[str], label: str, now: float) -> tuple[list[str], int]:
        """(reporters agreeing with ``label`` on this campaign, net count): distinct
        reporters (or their distinct domains with ``corroborate_domains``) agreeing minus
        those saying the opposite, among the votes of the last ``vote_days``."""
        votes = self.store.feedback.votes(bands, now - self.fs.vote_days * DAY)
        key = (lambda v: v.domain) if self.fs.corroborate_domains else (lambda v: v.reporter)
        pro = {key(v) for v in votes if v.label == label}
        con = {key(v) for v in votes if v.label != label}
        agree = sorted({v.reporter for v in votes if v.label == label})
        return agree, len(pro) - len(con)

    # ---- applying the learn logs -----------------------------------------------------------
    def maybe_sync(self) -> None:
        """Apply other processes' events, at most every ``sync_interval`` seconds; never
        waits (a score goes on with the current model while another thread syncs)."""
        if time.monotonic() - self._last_sync < self.fs.sync_interval:
            return
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            self._sync_locked(None)
        finally:
            self._sync_lock.release()

    def sync(self, report_event: int | None = None) -> bool:
        """Apply every learn event and user lesson this process has not applied yet, in
        order. Returns True when applying ``report_event`` hit the optional drift cap."""
        with self._sync_lock:
            self._report_update_s = 0.0
            return self._sync_locked(report_event)

    def _sync_locked(self, report_event: int | None) -> bool:
        clipped_report = False
        if self.scorer.model is not self._model:
            self.rebase()
        self._last_sync = time.monotonic()
        fb = self.store.feedback
        while True:
            events = fb.events_after(self.applied_event_id, limit=500)
            if not events:
                break
            for ev in events:
                t = time.perf_counter()
                clipped = self._apply(ev)
                if ev.event_id == report_event:
                    self._report_update_s += time.perf_counter() - t
                    clipped_report = clipped
                    if ev.layer == "global":
                        self._report_applied[ev.event_id] = self._last_applied
                self.applied_event_id = ev.event_id
        while True:
            lessons = fb.user_lessons_after(self.applied_lesson_id, limit=1000)
            if not lessons:
                break
            for les in lessons:
                t = time.perf_counter()
                self._apply_lesson(les)
                self._report_update_s += time.perf_counter() - t
                self.applied_lesson_id = les.lesson_id
        return clipped_report

    def _apply_lesson(self, les: UserLesson) -> None:
        with self._lock:
            self.layers.add_user(les.user, decode_cols(les.cols), les.delta)

    def _apply(self, ev: LearnEvent) -> bool:
        if ev.layer == "global":
            with self._lock:
                self._last_applied = self.layers.add_global(
                    decode_cols(ev.cols), ev.amount, ev.reporters
                )
            return False
        sample = self._sample_for(ev.digest)
        if sample is None:
            log.warning("learn event %s: message %s not in the store", ev.event_id, ev.digest[:16])
            return False
        return self.apply_sample(sample, ev.label, ev.weight, unlearn=ev.unlearn)

    def apply_sample(
        self, sample: Sample, label: str, weight: float = 1.0, unlearn: str | None = None
    ) -> bool:
        """Teach one sample to the model's arrays now (no store): the core update of a
        trusted lesson; True when the optional drift cap clipped it."""
        y = 1 if label == Label.SPAM.value else 0
        with self._lock:
            if self.updater is not None:
                clipped = False
                if unlearn is not None:
                    clipped |= self.updater.unlearn(sample, 1 if unlearn == "spam" else 0, weight)
                clipped |= self.updater.learn(sample, y, weight)
                return clipped
            model: SpamModel = self.scorer.model
            if unlearn is not None:
                model.unlearn([sample], [1 if unlearn == "spam" else 0], [weight])
            model.partial_fit([sample], [y], sample_weight=[weight])
            return False

    def _sample_for(self, digest: str) -> Sample | None:
        s = self._samples.get(digest)
        if s is not None:
            return s
        raw = self.store.feedback.message(digest)
        if raw is None:
            return None
        s = self.scorer.sample(raw)
        self._remember(digest, s)
        return s

    def _remember(self, digest: str, sample: Sample) -> None:
        self._samples[digest] = sample
        self._samples.move_to_end(digest)
        while len(self._samples) > 256:
            self._samples.popitem(last=False)


def _over_cap(store: Store, fs: FeedbackSettings, reporter: str, now: float) -> str:
    if store.feedback.count_since(now - HOUR, reporter=reporter) >= fs.per_user_per_hour:
        return f"{reporter} reached {fs.per_user_per_hour} reports per hour"
    return ""
