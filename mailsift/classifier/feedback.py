"""Feedback learning: users' "spam" / "not spam" reports update the live model at once.

``Learner(scorer, store, settings)`` takes a report (``submit``) and:

1. **Rate caps** (``settings.feedback``): at most ``per_user_per_hour`` counted reports per
   user and ``per_source_per_hour`` per source (user / admin / trap / quarantine / api) in
   the last hour. A report over a cap is recorded (status ``rate_limited``) and teaches
   nothing.
2. **Dedupe** (atomic in the store, across processes): the model is taught a message (by its
   sha256 digest) once per label. The same message with the same label again - from the
   same user or from a thousand - is recorded (``duplicate``) and changes nothing. The
   opposite label later is a **relabel**: the earlier lesson is taken back, then the new one
   is learned (naive Bayes: exact count subtraction; the linear model: a corrective step
   towards the new label, since a past gradient step cannot be subtracted; repeated
   reports of *other* messages keep moving it).
3. **Learn log**: the decision is committed as an event in ``learn_events`` (together with
   the report, the reported message for the next full retrain and an audit record: who
   taught what, from where, when), then applied to the in-memory model. Every process
   applies every event in order (``sync``), so two API workers and the SMTP filter serve
   the same lessons; a restarted process replays the events its model does not contain yet
   (a retrained model contains the events up to its snapshot, see ``mailsift retrain``).
4. **Drift cap**: feedback alone may move any single weight at most ``max_drift`` (in the
   model's log-odds: in a blend, divided by the stacker's weight of that base model) away
   from the base model (the last full training). Updates beyond it are clipped and the
   report says ``drift_capped``: a flood of reports cannot rewrite the model; the next full
   retrain re-weighs the feedback against the whole corpus.

Updating the model (``settings.feedback.mode``):

- ``fast`` (default): a sparse in-place update of the weights the message touches, over the
  same features the scorer uses (``Scorer.sample``). Naive Bayes: the class feature counts
  of those columns grow by the message's counts, their log-probabilities are recomputed and
  the class row's normaliser shift is applied to the whole row (one vectorised add): the
  same numbers as ``MultinomialNB.partial_fit`` (tested); unlearning subtracts the same
  counts (exact). Logistic regression: one gradient
  step of the log loss on those columns, scaled so the message's own log-odds move by
  ``step * (p - y)``; unlearning is the same step towards the other label. The blend's
  stacker stays fixed. Cost: well under 5 ms per report (``bench/bench_feedback.py``).
- ``partial_fit``: ``SpamModel.partial_fit`` / ``SpamModel.unlearn`` (scikit-learn's own
  update; each call recomputes every weight, tens of ms with 2**20 features). A reference
  mode: the drift cap is enforced by the fast path only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mailsift.classifier.features import Sample
from mailsift.classifier.model import NB_LOGIT_SCALE, SpamModel
from mailsift.config import FeedbackSettings, Settings
from mailsift.store.base import FEEDBACK_SOURCES, FeedbackRecord, LearnEvent, Store
from mailsift.verdict import Label

log = logging.getLogger(__name__)

HOUR = 3600.0


class FeedbackError(ValueError):
    """A report that cannot be taken (bad label, unknown verdict, no message...)."""


@dataclass(slots=True)
class FeedbackResult:
    status: str  # learned | relabelled | duplicate | rate_limited | drift_capped
    label: str
    digest: str
    user: str
    source: str
    verdict_id: str | None = None
    feedback_id: int | None = None
    event_id: int | None = None
    detail: str = ""

    @property
    def learned(self) -> bool:
        return self.status in ("learned", "relabelled", "drift_capped")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["learned"] = self.learned
        return d


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


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
) -> tuple[FeedbackResult, LearnEvent | None]:
    """The store half of a report, in one transaction: rate caps, dedupe / relabel decision,
    the report row, the message kept for retraining, the learn event and the audit record.
    Processes holding a model apply the event (``Learner.sync``); ``mailsift feedback`` uses
    this alone (running services pick the event up within ``feedback.sync_interval``)."""
    try:
        lab = Label(str(getattr(label, "value", label)).lower())
    except ValueError as exc:
        raise FeedbackError(f"label must be 'spam' or 'ham', not {label!r}") from exc
    user = (user or "").strip()
    if not user:
        raise FeedbackError("feedback needs a user")
    if source not in FEEDBACK_SOURCES:
        raise FeedbackError(f"unknown feedback source {source!r} ({', '.join(FEEDBACK_SOURCES)})")
    if not raw:
        raise FeedbackError("feedback needs the message")
    fs = settings.feedback
    digest = digest or digest_of(raw)
    now = clock()
    res = FeedbackResult("", lab.value, digest, user, source, verdict_id)
    capped = _over_cap(store, fs, user, source, now)
    event: LearnEvent | None = None
    with store.transaction():
        if capped:
            res.status, res.detail = "rate_limited", capped
        else:
            store.feedback.keep_message(digest, raw)
            res.status, event = store.feedback.teach(digest, lab.value, float(fs.learn_weight))
            if event is None:
                res.detail = f"this message was already taught as {lab.value}"
        rec = FeedbackRecord(lab.value, user, digest, verdict_id, source, now, res.status)
        res.feedback_id = store.feedback.add(rec)
        store.audit.record(
            user,
            "feedback",
            verdict_id or digest,
            {"label": lab.value, "source": source, "status": res.status, "digest": digest},
        )
    res.event_id = event.event_id if event is not None else None
    log.info(
        "feedback user=%s source=%s label=%s digest=%s status=%s",
        user,
        source,
        lab.value,
        digest[:16],
        res.status,
    )
    return res, event


def _over_cap(store: Store, fs: FeedbackSettings, user: str, source: str, now: float) -> str:
    since = now - HOUR
    if store.feedback.count_since(since, user=user) >= fs.per_user_per_hour:
        return f"user {user} reached {fs.per_user_per_hour} reports per hour"
    if store.feedback.count_since(since, source=source) >= fs.per_source_per_hour:
        return f"source {source} reached {fs.per_source_per_hour} reports per hour"
    return ""


class OnlineUpdater:
    """Sparse in-place updates of a SpamModel's naive Bayes counts and linear weights, with
    every touched weight kept within ``max_drift`` of the base model (see module docstring).
    """

    def __init__(self, model: SpamModel, max_drift: float, step: float) -> None:
        self.max_drift = max_drift
        self.step = step
        self.rebase(model)

    @staticmethod
    def supports(model: SpamModel) -> bool:
        nb_ok = not model.uses_nb or (
            model.nb_ is not None and not getattr(model.nb_, "norm", False)
        )
        lr_ok = not model.uses_lr or (model.lr_ is not None and model.lr_.coef_.shape[0] == 1)
        return nb_ok and lr_ok

    def rebase(self, model: SpamModel) -> None:
        """Take ``model`` as the base the drift is measured from (after a full training)."""
        self.model = model
        self.complement = model.kind == "cnb"  # ComplementNB's formulas (else MultinomialNB)
        # the cap is in the model's log-odds: in a blend, the stacker scales each base model
        stack = getattr(model, "stack_", None)
        nb_scale, lr_scale = 1.0, 1.0
        if model.kind == "blend" and stack is not None:
            # NB log-odds enter as arcsinh(z / NB_LOGIT_SCALE): its slope is at most 1
            nb_scale = abs(float(stack.coef_[0, 0])) / NB_LOGIT_SCALE or 1.0
            lr_scale = abs(float(stack.coef_[0, 1])) or 1.0
        self.nb_cap = self.max_drift / nb_scale
        self.lr_cap = self.max_drift / lr_scale
        self.base_lr: _Baseline | None = None
        self.base_lr_intercept = 0.0
        self.base_nb: _Baseline | None = None
        self.nb_tot = np.zeros(2)
        lr = model.lr_
        if model.uses_lr and lr is not None:
            self.base_lr = _Baseline(lambda cols: lr.coef_[0, cols])
        nb = model.nb_
        if model.uses_nb and nb is not None:
            self.nb_tot = nb.feature_count_.sum(axis=1).astype(float)
            self.base_nb = _Baseline(self._nb_ratio)

    # ---- updates ---------------------------------------------------------------------------
    def learn(self, sample: Sample, y: int, weight: float = 1.0) -> bool:
        """Teach ``sample`` with label ``y``; True when the drift cap clipped the update."""
        return self._update(sample, y, weight, unlearn=False)

    def unlearn(self, sample: Sample, y: int, weight: float = 1.0) -> bool:
        """Take back an earlier ``learn(sample, y)``."""
        return self._update(sample, y, weight, unlearn=True)

    def vectors(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(columns, naive Bayes values, linear-model values) of one sample: the row each base
        model sees in ``fit`` (``SpamModel.row_vectors``), without 2**20-wide matrices."""
        return self.model.row_vectors(sample)

    def _update(self, sample: Sample, y: int, weight: float, unlearn: bool) -> bool:
        m = self.model
        cols, nb_vals, lr_vals = self.vectors(sample)
        clipped = False
        if m.uses_nb and m.nb_ is not None:
            clipped |= self._nb(cols, nb_vals, y, weight, unlearn)
        if m.uses_lr and m.lr_ is not None:
            target = 1 - y if unlearn else y
            clipped |= self._lr(cols, lr_vals, target, weight)
        m.n_learned_ += 1
        return clipped

    def _nb(self, cols: np.ndarray, vals: np.ndarray, y: int, w: float, unlearn: bool) -> bool:
        nb = self.model.nb_
        assert nb is not None
        fc = nb.feature_count_
        if self.base_nb is not None:
            self.base_nb.record(cols)  # before the first change of a column
        old_norms = self._nb_norms()
        before = fc[y, cols].copy()
        if unlearn:
            fc[y, cols] = np.maximum(before - w * vals, 0.0)
            nb.class_count_[y] = max(nb.class_count_[y] - w, 1.0)
        else:
            fc[y, cols] = before + w * vals
            nb.class_count_[y] += w
        self.nb_tot[y] += float((fc[y, cols] - before).sum())
        clipped = self._nb_clip(cols)
        self._nb_shift_rows(old_norms, self._nb_norms())
        self._nb_refresh(cols)
        if not self.complement:
            nb._update_class_log_prior()
        return clipped

    def _nb_norms(self) -> np.ndarray:
        """Log normaliser of each class row of feature_log_prob_ (scikit-learn's formulas:
        MultinomialNB log(sum fc[c] + a n); binary ComplementNB log(sum fc[1-c] + a n))."""
        nb = self.model.nb_
        assert nb is not None
        an = float(nb.alpha) * nb.feature_count_.shape[1]
        tot = self.nb_tot[::-1] if self.complement else self.nb_tot
        return np.asarray(np.log(tot + an))

    def _nb_shift_rows(self, old: np.ndarray, new: np.ndarray) -> None:
        """A class total changed: every log-probability of that row moves by the same amount
        (one vectorised add per changed row, ~1 ms)."""
        nb = self.model.nb_
        assert nb is not None
        sign = 1.0 if self.complement else -1.0
        for c in (0, 1):
            if new[c] != old[c]:
                nb.feature_log_prob_[c] += sign * (new[c] - old[c])

    def _nb_refresh(self, cols: np.ndarray) -> None:
        """Recompute the touched columns exactly from their counts."""
        nb = self.model.nb_
        assert nb is not None
        a = float(nb.alpha)
        fc, flp, norms = nb.feature_count_, nb.feature_log_prob_, self._nb_norms()
        if self.complement:
            assert nb.feature_all_ is not None
            nb.feature_all_[cols] = fc[0, cols] + fc[1, cols]
            for c in (0, 1):
                flp[c, cols] = norms[c] - np.log(fc[1 - c, cols] + a)
        else:
            for c in (0, 1):
                flp[c, cols] = np.log(fc[c, cols] + a) - norms[c]

    def _nb_ratio(self, cols: np.ndarray) -> np.ndarray:
        """The count part of each column's NB weight: log(fc1 + a) - log(fc0 + a) (both NB
        kinds; the class normalisers add the same constant to every column)."""
        nb = self.model.nb_
        assert nb is not None
        a, fc = float(nb.alpha), nb.feature_count_
        return np.asarray(np.log(fc[1, cols] + a) - np.log(fc[0, cols] + a))

    def _nb_clip(self, cols: np.ndarray) -> bool:
        """Keep each touched NB weight within the cap of the base by shrinking the count
        that pushed it past."""
        if self.base_nb is None:
            return False
        nb = self.model.nb_
        assert nb is not None
        a, fc = float(nb.alpha), nb.feature_count_
        w = self._nb_ratio(cols)
        base = self.base_nb[cols]
        over = w - (base + self.nb_cap)
        under = (base - self.nb_cap) - w
        hi, lo = over > 1e-9, under > 1e-9
        if not (hi.any() or lo.any()):
            return False
        for c, sel, excess in ((1, hi, over), (0, lo, under)):
            cc = cols[sel]
            before = fc[c, cc].copy()
            fc[c, cc] = np.maximum((before + a) * np.exp(-excess[sel]) - a, 0.0)
            self.nb_tot[c] += float((fc[c, cc] - before).sum())
        return True

    def _lr(self, cols: np.ndarray, vals: np.ndarray, y: int, w: float) -> bool:
        lr = self.model.lr_
        assert lr is not None
        coef = lr.coef_
        if self.base_lr is not None:
            self.base_lr.record(cols)  # before the first change of a column
        z = float(coef[0, cols] @ vals) + float(lr.intercept_[0])
        p = _sigmoid(z)
        norm2 = float(vals @ vals) or 1.0
        coef[0, cols] -= (self.step * w * (p - y) / norm2) * vals
        if self.base_lr is None:
            return False
        lo = self.base_lr[cols] - self.lr_cap
        hi = self.base_lr[cols] + self.lr_cap
        cur = coef[0, cols]
        if ((cur < lo) | (cur > hi)).any():
            coef[0, cols] = np.clip(cur, lo, hi)
            return True
        return False


class _Baseline:
    """The base model's value of each weight (the drift cap's reference), recorded when
    feedback first changes it: until then a weight still holds its base value. The same
    answers as a full copy of the weight vector, without two 2**20-wide copies per process.
    """

    def __init__(self, current: Callable[[np.ndarray], np.ndarray]) -> None:
        self._current = current
        self._vals: dict[int, float] = {}

    def record(self, cols: np.ndarray) -> None:
        """Call before changing ``cols``: keeps the value of those not changed before."""
        vals = self._vals
        new = [c for c in cols.tolist() if c not in vals]
        if new:
            now = self._current(np.asarray(new, dtype=np.int64)).tolist()
            vals.update(zip(new, now, strict=True))

    def __getitem__(self, cols: np.ndarray) -> np.ndarray:
        cols = np.asarray(cols, dtype=np.int64)
        out = np.asarray(self._current(cols), dtype=float).copy()
        vals = self._vals
        for i, c in enumerate(cols.tolist()):
            v = vals.get(c)
            if v is not None:
                out[i] = v
        return out

    def __len__(self) -> int:
        return len(self._vals)


class Learner:
    """Guarded incremental learning from feedback (see the module docstring)."""

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
        self.updater: OnlineUpdater | None = None
        self._model: SpamModel | None = None
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
    ) -> FeedbackResult:
        """Record one report and, unless capped or a duplicate, teach the live model.

        ``digest``: the message's sha256 when ``raw`` is a truncated copy (a kept sample)."""
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
        )
        if event is not None:
            if sample is not None:
                self._remember(res.digest, sample)
            clipped = self.sync(report_event=event.event_id)
            if clipped:
                res.status = "drift_capped"
                res.detail = (
                    f"update clipped: feedback may move a weight at most {self.fs.max_drift}"
                )
                if res.feedback_id is not None:
                    self.store.feedback.set_status(res.feedback_id, "drift_capped")
            elif event.unlearn:
                res.detail = f"relabelled: took back {event.unlearn}, learned {res.label}"
        return res

    # ---- applying the learn log ------------------------------------------------------------
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
        """Apply every learn event this process has not applied yet, in order. Returns True
        when applying ``report_event`` hit the drift cap."""
        with self._sync_lock:
            return self._sync_locked(report_event)

    def _sync_locked(self, report_event: int | None) -> bool:
        clipped_report = False
        if self.scorer.model is not self._model:
            self.rebase()
        self._last_sync = time.monotonic()
        while True:
            events = self.store.feedback.events_after(self.applied_event_id, limit=500)
            if not events:
                break
            for ev in events:
                clipped = self._apply(ev)
                if ev.event_id == report_event:
                    clipped_report = clipped
                self.applied_event_id = ev.event_id
        return clipped_report

    def _apply(self, ev: LearnEvent) -> bool:
        sample = self._sample_for(ev.digest)
        if sample is None:
            log.warning("learn event %s: message %s not in the store", ev.event_id, ev.digest[:16])
            return False
        return self.apply_sample(sample, ev.label, ev.weight, unlearn=ev.unlearn)

    def apply_sample(
        self, sample: Sample, label: str, weight: float = 1.0, unlearn: str | None = None
    ) -> bool:
        """Teach one sample now (no store): the core update; True when clipped."""
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


class CorpusLearner:
    """Immediate feedback over precomputed samples, without a store: the learner
    ``mailsift evaluate --online`` (``mailsift.pipeline.evaluate``) and the bench use. Same
    update as the live path (``settings.feedback.mode``), same drift cap."""

    name = "feedback.Learner"

    def __init__(self, model: SpamModel, settings: Settings) -> None:
        fs = settings.feedback
        self.model = model
        self.weight = float(fs.learn_weight)
        self.updater = (
            OnlineUpdater(model, fs.max_drift, fs.step)
            if fs.mode == "fast" and OnlineUpdater.supports(model)
            else None
        )
        self.clipped = 0

    def learn(self, sample: Sample, label: int) -> None:
        if self.updater is not None:
            self.clipped += self.updater.learn(sample, int(label), self.weight)
        else:
            self.model.partial_fit([sample], [int(label)], sample_weight=[self.weight])


def corpus_learner(model: SpamModel, settings: Settings) -> CorpusLearner:
    return CorpusLearner(model, settings)
