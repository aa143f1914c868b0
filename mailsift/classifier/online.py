"""Online learning math over a fitted :class:`~mailsift.classifier.model.SpamModel`: no store.

- :class:`OnlineUpdater`: a trusted lesson (``settings.feedback.mode == "fast"``, the
  default) is a sparse in-place update of the weights the message touches, over the same
  features the scorer uses (``Scorer.sample``). Naive Bayes: the class feature counts of
  those columns grow by the message's counts, their log-probabilities are recomputed and
  the class row's normaliser shift is applied to the whole row (one vectorised add): the
  same numbers as ``MultinomialNB.partial_fit`` (tested); unlearning subtracts the same
  counts (exact). Logistic regression: one gradient step of the log loss on those columns,
  scaled so the message's own log-odds move by ``step * (p - y)``; unlearning is the same
  step towards the other label. The blend's stacker stays fixed. Cost: well under 5 ms per
  report (``bench/bench_feedback.py``). An optional per-weight cap (``max_drift``) keeps each
  touched weight near the base model; it is off by default: it bounds no message's
  log-odds, and it stunted honest learning. The other mode, ``partial_fit``, is
  ``SpamModel.partial_fit`` / ``SpamModel.unlearn`` (scikit-learn's own update; each call
  recomputes every weight, tens of ms with 2**20 features).
- :class:`FeedbackLayers`: the additive log-odds corrections users' lessons add on top of
  the model (a global one, budgeted per reporter, and one per user); the scorer reads them.
- :func:`campaign_bands`: min-hash bands of a message's body words, so that copies of one
  campaign (another nonce, greeting or Message-ID) count as reports of the same thing.
- :class:`CorpusLearner`: a trusted lesson per message over precomputed samples, for the
  online evaluation protocol and the benches.

Who teaches what, the rate caps and the learn log are :mod:`mailsift.learning.feedback`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mailsift.classifier.features import Sample
from mailsift.classifier.model import NB_LOGIT_SCALE, SpamModel
from mailsift.config import Settings


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


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
