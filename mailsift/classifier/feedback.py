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

Updating the model's arrays (trusted lessons; ``settings.feedback.mode``):

- ``fast`` (default): a sparse in-place update of the weights the message touches, over the
  same features the scorer uses (``Scorer.sample``). Naive Bayes: the class feature counts
  of those columns grow by the message's counts, their log-probabilities are recomputed and
  the class row's normaliser shift is applied to the whole row (one vectorised add): the
  same numbers as ``MultinomialNB.partial_fit`` (tested); unlearning subtracts the same
  counts (exact). Logistic regression: one gradient step of the log loss on those columns,
  scaled so the message's own log-odds move by ``step * (p - y)``; unlearning is the same
  step towards the other label. The blend's stacker stays fixed. Cost: well under 5 ms per
  report (``bench/bench_feedback.py``). An optional per-weight cap (``max_drift``) keeps each
  touched weight near the base model; it is off by default: it bounds no message's
  log-odds, and it stunted honest learning.
- ``partial_fit``: ``SpamModel.partial_fit`` / ``SpamModel.unlearn`` (scikit-learn's own
  update; each call recomputes every weight, tens of ms with 2**20 features).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mailsift.classifier.features import Sample
from mailsift.classifier.model import NB_LOGIT_SCALE, SpamModel
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


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


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


# ---- near-duplicate bands ----------------------------------------------------------------------

_MH_BANDS, _MH_ROWS = 10, 5  # 50 min-hashes; J=0.8 copies share a band 98% of the time
_MH_PRIME = (1 << 31) - 1  # a Mersenne prime above the 2**20 column range
_rng = np.random.default_rng(0x5EED)
_MH_A = _rng.integers(1, 1 << 31, _MH_BANDS * _MH_ROWS, dtype=np.int64)
_MH_B = _rng.integers(0, 1 << 31, _MH_BANDS * _MH_ROWS, dtype=np.int64)
_MIN_WORDS = 8


def campaign_bands(sample: Sample, columns: Callable[[Sequence[str]], np.ndarray]) -> list[str]:
    """Min-hash bands of a message's distinct body words (``w:`` tokens, number shapes
    already folded by the features): two copies of one campaign whose words overlap by
    Jaccard 0.8 share a band 98% of the time, two messages at 0.3 about 2%. A message with
    fewer than 8 body words has one band: its words (or its whole token set) exactly."""
    words = sorted({t for t in sample.tokens if t.startswith("w:")})
    if len(words) < _MIN_WORDS:
        key = "\n".join(words or sorted(set(sample.tokens)))
        return ["x:" + hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=10).hexdigest()]
    x = np.unique(columns(words)).astype(np.int64)
    # (a*x + b) mod p with x < 2**20, a, b < 2**31: no overflow in int64
    mins = ((_MH_A[:, None] * x[None, :] + _MH_B[:, None]) % _MH_PRIME).min(axis=1)
    out = []
    for i in range(_MH_BANDS):
        band = mins[i * _MH_ROWS : (i + 1) * _MH_ROWS].tobytes()
        out.append(f"{i}:" + hashlib.blake2b(band, digest_size=10).hexdigest())
    return out


def encode_cols(cols: np.ndarray) -> bytes:
    return np.asarray(cols, dtype="<i8").tobytes()


def decode_cols(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype="<i8")


# ---- additive corrections: users' corroborated lessons and users' own lessons ------------------


class FeedbackLayers:
    """Two additive log-odds corrections on top of the model, over its joined columns
    (``SpamModel.row_vectors``; every column 0/1 here):

    - ``global``: the sum of corroborated users' lessons. ``spent[r]`` is the L1 norm
      charged to reporter ``r``; no charge goes past ``budget``, so the part of any
      message's log-odds owed to one reporter is at most ``budget``.
    - per user: that user's own lessons (a sparse column -> delta map), applied when the
      user receives the message.

    Reads are lock-free (a score sees a lesson whole or not at all per column); writes
    come from the learner under its lock."""

    def __init__(self, width: int, budget: float) -> None:
        self.width = width
        self.budget = budget
        self.g: np.ndarray | None = None  # allocated on the first global lesson
        self.spent: dict[str, float] = {}
        self.users: dict[str, dict[int, float]] = {}

    def reset_global(self) -> None:
        """A retrained model contains the global lessons so far: start over (budgets too)."""
        self.g = None
        self.spent = {}

    @property
    def active(self) -> bool:
        return self.g is not None or bool(self.users)

    def add_global(self, cols: np.ndarray, amount: float, reporters: Sequence[str]) -> float:
        """Spread ``amount`` log-odds over ``cols``, charged to ``reporters`` in proportion
        to what is left of their budgets; returns the amount applied (less when budgets ran
        out)."""
        reporters = list(dict.fromkeys(reporters))
        if not len(cols) or not reporters or amount == 0.0:
            return 0.0
        left = {r: max(self.budget - self.spent.get(r, 0.0), 0.0) for r in reporters}
        total_left = sum(left.values())
        applied = math.copysign(min(abs(amount), total_left), amount)
        if applied == 0.0:
            return 0.0
        for r, room in left.items():
            self.spent[r] = self.spent.get(r, 0.0) + abs(applied) * room / total_left
        if self.g is None:
            self.g = np.zeros(self.width)
        np.add.at(self.g, cols, applied / len(cols))
        return applied

    def add_user(self, user: str, cols: np.ndarray, delta: float) -> None:
        d = self.users.setdefault(user, {})
        for c in cols.tolist():
            d[c] = d.get(c, 0.0) + delta

    def global_offset(self, cols: np.ndarray) -> float:
        g = self.g
        return float(g[cols].sum()) if g is not None and len(cols) else 0.0

    def user_offset(self, user: str, cols: np.ndarray) -> float:
        d = self.users.get(user)
        if not d:
            return 0.0
        get = d.get
        return float(sum(get(c, 0.0) for c in cols.tolist()))

    def recipients_offset(self, recipients: Iterable[str], cols: np.ndarray) -> float:
        """The personal correction for a message with these recipients: a single
        recipient's own; with several, the part all of them agree on (the smallest push
        when all push the same way, else none), as a recipient's sender list counts only
        when every recipient's list says so."""
        rcpts = list(dict.fromkeys(r.strip().lower() for r in recipients if r))
        if not rcpts or not self.users:
            return 0.0
        offs = [self.user_offset(r, cols) for r in rcpts]
        if all(o > 0 for o in offs):
            return min(offs)
        if all(o < 0 for o in offs):
            return max(offs)
        return 0.0

    def has_user(self, recipients: Iterable[str]) -> bool:
        users = self.users
        return bool(users) and any(r.strip().lower() in users for r in recipients)


class OnlineUpdater:
    """Sparse in-place updates of a SpamModel's naive Bayes counts and linear weights (see
    the module docstring); with ``max_drift``, every touched weight is kept within that
    distance (log-odds) of the base model.
    """

    def __init__(self, model: SpamModel, max_drift: float | None = None, step: float = 2.0) -> None:
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
        cap = self.max_drift
        self.nb_cap = cap / nb_scale if cap is not None else np.inf
        self.lr_cap = cap / lr_scale if cap is not None else np.inf
        self.base_lr: _Baseline | None = None
        self.base_nb: _Baseline | None = None
        self.nb_tot = np.zeros(2)
        lr = model.lr_
        if model.uses_lr and lr is not None and cap is not None:
            self.base_lr = _Baseline(lambda cols: lr.coef_[0, cols])
        nb = model.nb_
        if model.uses_nb and nb is not None:
            self.nb_tot = nb.feature_count_.sum(axis=1).astype(float)
            if cap is not None:
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


class CorpusLearner:
    """Immediate feedback over precomputed samples, without a store: ``mailsift evaluate
    --online`` (``mailsift.pipeline.evaluate``) and the benches. A trusted reporter's
    lesson, through the same update as the live path (``settings.feedback.mode``)."""

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
