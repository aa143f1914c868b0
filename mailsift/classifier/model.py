"""SpamModel: hashed features -> spam probability, with incremental learning and explanations.

Kinds (``settings.model.kind``):

* ``nb``: multinomial naive Bayes; each token counts once per message (``Hyper.nb_binary``,
  a Graham-style "seen in the message" count), rule / symbol / structure features 0/1;
  additive smoothing ``alpha = 0.003``. Counts can be subtracted, so
  :meth:`SpamModel.unlearn` removes a message exactly (the label-flip path).
* ``cnb``: complement naive Bayes (Rennie et al. 2003) over the same features.
* ``logreg``: logistic regression trained by SGD (``SGDClassifier(loss="log_loss")``, several
  epochs in ``fit``, one step per message in ``partial_fit``). The token block is
  L2-normalised per message (like TF-IDF), the rule / symbol / structure block stays 0/1.
* ``blend`` (default): NB, logreg and a third logistic regression over the rule / symbol /
  structure block alone, joined by a three-input logistic regression (the stacker). NB
  log-odds are huge (hundreds): they enter the stacker as ``arcsinh(z / 10)``, which keeps
  their sign and ranking but stops one over-confident NB vote from drowning the others.
  ``partial_fit`` updates NB and logreg; the stacker and the rules/structure model stay
  fixed until the next full fit.

What makes the blend hold up on mail from sites and years it was not trained on (each
choice measured on the generalisation protocol, :mod:`mailsift.pipeline.generalise`;
figures in ``docs/experiments.md``):

* **The rules start from SpamAssassin's scores.** Given ``rule_priors`` (rule -> score, the
  stock scores fitted by SpamAssassin on very large many-site corpora), the rules/structure
  model takes the score sum as one input and learns per-feature corrections, each clipped to
  ``Hyper.rule_bound`` score points, or ``Hyper.stock_rule_bound`` (tighter) for the stock
  rules' scores, fitted on far more mail than any training set here; the learned scale is
  folded back into the rule columns, so a rule the training mail never hit still weighs in
  proportion to its score, and one it hit stays within a few points of its score.
* **Out-of-source stacking and calibration.** With ``groups`` (the source of each training
  message, :func:`mailsift.pipeline.sources.stacker_groups`), the stacker is fitted on each
  source's predictions from base models trained on the other sources, so it weighs the base
  models by how they travel, not by how they fit their own mail. The same predictions give
  the thresholds (:func:`calibrate_thresholds`: at most 1 % / 0.3 % / 0.05 % of that ham
  tagged / held / rejected) and the out-of-fold figures the promotion gate compares.
* **Source-balanced weights** (:func:`mailsift.pipeline.sources.source_weights`): a small
  archive of one kind of mail (newsletters) is not drowned by a large one of another.

Label flip: naive Bayes unlearns the wrong label exactly, then learns the right one. A linear
model cannot subtract a past gradient step: :meth:`SpamModel.unlearn` on ``logreg`` takes a
step with the opposite label instead (the weight it had moved is pushed back towards, and
past, where the corrected label wants it); repeated feedback keeps moving it the right way.

One message (the scorer: :meth:`SpamModel.predict_explain`, :meth:`SpamModel.feature_weights`,
and ``decision_function`` / ``predict_proba`` of a single sample) takes a fast path: each
distinct feature string is hashed once, the fitted weights of the sample's own columns are
gathered and summed; no sparse matrix is built. It reads the fitted arrays on every call
(in-place feedback updates count at once) and gives the batch path's numbers (tested).

The model's parts live beside it: :mod:`mailsift.classifier.persistence` writes and reads
the artifacts (``model.skops`` + a ``manifest.json`` holding its sha256; skops with an
explicit list of trusted types, never pickle), :mod:`mailsift.classifier.serving` holds the
fitted arrays a serving process scores with instead of the scikit-learn estimators
(``load(..., serving=True)``), and :mod:`mailsift.classifier.online` updates the fitted arrays
in place from single lessons.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from mailsift.classifier import persistence
from mailsift.classifier.features import (
    DEFAULT_N_META,
    FEATURE_SET_VERSION,
    HashedSample,
    Sample,
    Vectorizer,
    hash_columns,
)
from mailsift.classifier.persistence import MODEL_FILE, ModelLoadError
from mailsift.classifier.serving import ServingLinear, ServingNB
from mailsift.config import ModelSettings, Settings
from mailsift.verdict import TokenContribution

if TYPE_CHECKING:  # scikit-learn and scipy.sparse: imported where a model is fitted or
    # several samples are scored at once, not to serve one message at a time
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import ComplementNB, MultinomialNB

KINDS = ("nb", "cnb", "logreg", "blend")

LOGIT_CLIP = 30.0
NB_LOGIT_SCALE = 10.0  # naive Bayes log-odds are large: scaled before the stacker
META_CLIP = 30.0  # rules/structure-only model log-odds, clipped before the stacker
PRIOR_UNIT = 5.0  # rule score sums enter the rules/structure model in units of 5 points
# calibrated thresholds are never below these (calibration only makes them stricter)
CALIBRATION_FLOOR = {"spam": 0.5, "hold": 0.9, "reject": 0.995}
CALIBRATION_MIN_HAM = 50  # a source's own calibration counts from this many ham messages


@dataclass(frozen=True, slots=True)
class Hyper:
    """Hyper-parameters (fixed per kind; chosen on the measurements in docs/experiments.md)."""

    nb_alpha: float = 0.0003
    lr_alpha: float = 3e-6
    lr_epochs: int = 15
    lr_average: bool = False
    nb_binary: bool = True  # NB counts a token once per message (else log1p of its count)
    nb_squash: bool = True  # blend: arcsinh of the NB log-odds before the stacker
    # NB: a token the training mail never held is no evidence (Graham's "unknown token"
    # rule). scikit-learn's smoothing gives every unseen column the same log ratio, the
    # class sizes' (+1.08 per token towards spam trained on the SpamAssassin corpus), so
    # mail from another era, full of words the corpus never had, drifts towards spam
    nb_unseen_neutral: bool = True
    # value of a rule / symbol / structure feature for logreg (tokens are L2-normalised, so
    # their values are ~0.05: at 1.0 the ~2,500 stock-rule features crowd the tokens out)
    meta_scale: float = 0.12
    stack_folds: int = 3
    # blend: C of a third base model, a logistic regression over the rule / symbol /
    # structure block alone (0 = none); the stacker weighs it next to NB and logreg
    meta_c: float = 0.01
    # blend, when the rules' own scores are given (``rule_priors``): the rules/structure model
    # starts from them (one learned scale for SpamAssassin's score sum) and learns per-feature
    # corrections. A rule's correction is clipped to +-``rule_bound`` score points (times the
    # learned scale, so the bound keeps its size next to the prior whatever the scale); a
    # column with no score (structure features, symbols) to +-``prior_bound`` log-odds
    prior_bound: float = 1.0
    rule_bound: float = 2.0
    # the bound for rules whose score is SpamAssassin's own (``stock_rules``: fitted by its
    # perceptron on mass-checks of many sites' mail), tighter than for hand-set scores
    stock_rule_bound: float = 0.5
    # blend: the share of out-of-source ham (see ``fit``'s ``groups``) the calibrated
    # thresholds let through, pooled and of each source (``per_source_thresholds``): tagged
    # spam, held, rejected
    calibrate_tag: float = 0.01
    calibrate_hold: float = 0.003
    calibrate_reject: float = 0.0005


def _nonnegative_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None, c: float = 1.0
) -> LogisticRegression:
    """A logistic regression (L2, ``C = c``, free intercept) whose coefficients are kept at
    or above zero: a stacker input is evidence for spam in proportion to its own log-odds,
    never against it. Without the bound, out-of-source folds that hold one class each (a
    mailing list's ham, a phishing collection) let the stacker fit "which source" and turn
    a base model's sign around (docs/experiments.md)."""
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    w = w * (len(y) / w.sum())
    sign = 2.0 * np.asarray(y, dtype=float) - 1.0
    k = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta[:k] + theta[k]
        m = -sign * z
        ll = np.logaddexp(0.0, m)
        g = w * (-sign) * _sigmoid(m)
        value = float(w @ ll) + 0.5 / c * float(theta[:k] @ theta[:k])
        grad = np.concatenate([x.T @ g + theta[:k] / c, [g.sum()]])
        return value, grad

    res = minimize(
        loss,
        np.zeros(k + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * k + [(None, None)],
    )
    lr = LogisticRegression(C=c)
    lr.coef_ = res.x[:k].reshape(1, -1)
    lr.intercept_ = res.x[k:].copy()
    lr.classes_ = np.array([0, 1])
    lr.n_features_in_ = k
    lr.n_iter_ = np.array([res.nit], dtype=np.int32)
    return lr


def calibrate_thresholds(
    ham_p: np.ndarray, weights: np.ndarray | None, hyper: Hyper
) -> dict[str, float]:
    """Probability thresholds that let through at most the configured (weighted) share of
    the given ham: each sits halfway, in log-odds, between the highest ham probability it
    must let through and the next one above, and never below ``CALIBRATION_FLOOR`` (the
    probabilities are calibrated: below 0.5 a message is more likely ham than spam)."""
    p = np.asarray(ham_p, dtype=float)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(-p, kind="stable")
    p, w = p[order], w[order]
    share = np.cumsum(w) / max(float(w.sum()), 1e-12)
    logit = np.log(np.clip(p, 1e-12, 1 - 1e-12) / np.clip(1 - p, 1e-12, 1))
    out: dict[str, float] = {}
    floor = 0.0
    for name, target in (
        ("spam", hyper.calibrate_tag),
        ("hold", hyper.calibrate_hold),
        ("reject", hyper.calibrate_reject),
    ):
        above = int(np.searchsorted(share, target, side="right"))  # ham allowed above
        if above >= len(p):
            z = float(logit[-1]) - 1.0
        elif above == 0:
            z = float(logit[0]) + 1.0
        else:
            z = (float(logit[above - 1]) + float(logit[above])) / 2.0
        # in order: hold never below tag, reject never below hold; none at certainty
        t = max(float(_sigmoid(np.array([z]))[0]), floor, CALIBRATION_FLOOR[name])
        out[name] = round(min(t, 0.999999), 6)
        floor = out[name]
    return out


def per_source_thresholds(
    pooled: dict[str, float], p: np.ndarray, y: np.ndarray, groups: np.ndarray, hyper: Hyper
) -> dict[str, float]:
    """``pooled`` raised where one source's ham needs it: each threshold is at least the one
    :func:`calibrate_thresholds` gives for the out-of-source ham of every source with
    ``CALIBRATION_MIN_HAM`` ham or more. The shares the thresholds promise are for mail from a
    source the model never saw; calibrated on all out-of-source ham pooled, they hold for the
    average source and let through several times more of a hard one (trained on every
    corpus, the 2025 newsletters predicted without their corpus had 4.3% tagged and 2.0% held
    at the pooled thresholds; docs/experiments.md)."""
    out = dict(pooled)
    for g in sorted(set(groups[y == 0].tolist())):
        ham = (groups == g) & (y == 0)
        if ham.sum() >= CALIBRATION_MIN_HAM:
            own = calibrate_thresholds(p[ham], None, hyper)
            out = {k: max(v, own[k]) for k, v in out.items()}
    return out


def _oof_metrics(
    y: np.ndarray, p: np.ndarray, thresholds: dict[str, float], out_of_source: bool
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    ham, spam = p[y == 0], p[y == 1]
    out: dict[str, Any] = {
        "out_of_source": out_of_source,
        "one_minus_roca_pct": float(100.0 * (1.0 - roc_auc_score(y, p))),
    }
    for name, t in thresholds.items():
        out[f"ham_at_{name}"] = float(np.mean(ham >= t))
        out[f"spam_at_{name}"] = float(np.mean(spam >= t))
    for target in (0.001, 0.01):
        k = int(np.floor(target * len(ham)))
        cut = np.sort(ham)[::-1][k] if k < len(ham) else -np.inf
        out[f"recall_at_fpr_{target:g}"] = float(np.mean(spam > cut))
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -LOGIT_CLIP * 2, LOGIT_CLIP * 2))))


def _row_l2_normalise(x: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its L2 norm (rows of zeros stay zero); a new matrix."""
    import scipy.sparse as sp

    x = sp.csr_matrix(x, copy=True)
    if x.nnz:
        sq = np.add.reduceat(x.data**2, x.indptr[:-1]) if x.shape[0] else np.zeros(0)
        counts = np.diff(x.indptr)
        sq[counts == 0] = 1.0
        x.data /= np.repeat(np.sqrt(sq), counts)
    return x


class _Priors(NamedTuple):
    scores: np.ndarray  # a rule's score on its hashed column (0 elsewhere)
    bounds: np.ndarray  # the bound of each column's learned correction, in log-odds
    # the bound in score points of each rule's column (times the learned scale), NaN where
    # the column holds no rule (then ``bounds`` holds)
    points: np.ndarray


@dataclass(slots=True)
class _Row:
    """One hashed sample and what the fitted arrays say about its columns."""

    h: HashedSample
    z: float  # log-odds of spam
    factor: float  # NB squash factor (blend), else 1
    norm: float  # L2 norm of the token block (logreg's view)
    nbd: np.ndarray | None  # NB log-odds weight per column (tokens then meta), unscaled
    lrw: np.ndarray | None  # logreg weight per column (tokens then meta), unscaled
    mw: np.ndarray | None  # rules/structure model weight per meta column (blend), unscaled


class SpamModel:
    """A probabilistic spam classifier over :class:`~mailsift.classifier.features.Sample`."""

    def __init__(
        self,
        kind: str = "blend",
        n_features: int = 2**20,
        n_meta: int = DEFAULT_N_META,
        seed: int = 42,
        hyper: Hyper | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.seed = seed
        self.hyper = hyper or Hyper()
        self.vectorizer = Vectorizer(n_features, n_meta)
        # scikit-learn estimators, or (a model loaded with ``serving=True``) their fitted
        # arrays alone: ServingNB / ServingLinear (see :meth:`load`)
        self.nb_: MultinomialNB | ComplementNB | ServingNB | None = None
        self.lr_: SGDClassifier | ServingLinear | None = None
        self.stack_: LogisticRegression | ServingLinear | None = None
        self.meta_: LogisticRegression | ServingLinear | None = None  # blend: rules/structure
        self._source: tuple[Path, str] | None = None  # (model.skops, its sha256) when loaded
        self.version = ""
        self.manifest: dict[str, Any] = {}
        self.n_learned_ = 0  # partial_fit / unlearn updates since the last full fit
        # blend, set by fit: thresholds calibrated on out-of-fold ham ({"spam", "hold",
        # "reject"} probabilities) and the out-of-fold figures ({"one_minus_roca_pct", ...,
        # "out_of_source": bool}); saved in the manifest
        self.thresholds_: dict[str, float] | None = None
        self.oof_metrics_: dict[str, Any] | None = None

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, kind: str | None, settings: ModelSettings | Settings) -> SpamModel:
        ms = settings.model if isinstance(settings, Settings) else settings
        return cls(kind or ms.kind, n_features=ms.n_features, seed=ms.seed)

    @property
    def uses_nb(self) -> bool:
        return self.kind in ("nb", "cnb", "blend")

    @property
    def uses_lr(self) -> bool:
        return self.kind in ("logreg", "blend")

    @property
    def uses_meta(self) -> bool:
        return self.kind == "blend" and self.hyper.meta_c > 0

    def _new_nb(self) -> MultinomialNB | ComplementNB:
        from sklearn.naive_bayes import ComplementNB, MultinomialNB

        if self.kind == "cnb":
            return ComplementNB(alpha=self.hyper.nb_alpha)
        return MultinomialNB(alpha=self.hyper.nb_alpha)

    def _new_lr(self) -> SGDClassifier:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss="log_loss",
            alpha=self.hyper.lr_alpha,
            max_iter=self.hyper.lr_epochs,
            tol=None,
            class_weight=None,
            average=self.hyper.lr_average,
            random_state=self.seed,
        )

    # ---- matrices --------------------------------------------------------------------------
    def _blocks(self, samples: Sequence[Sample]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        return self.vectorizer.transform_blocks(samples)

    def _nb_tokens(self, xt: sp.csr_matrix) -> sp.csr_matrix:
        if not self.hyper.nb_binary:
            return xt
        import scipy.sparse as sp

        xb = sp.csr_matrix(xt, copy=True)
        xb.data[:] = 1.0
        return xb

    def _nb_x(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> sp.csr_matrix:
        import scipy.sparse as sp

        return sp.hstack([self._nb_tokens(xt), xm], format="csr")

    def _lr_x(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> sp.csr_matrix:
        import scipy.sparse as sp

        return sp.hstack([_row_l2_normalise(xt), xm * self.hyper.meta_scale], format="csr")

    def row_vectors(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(columns, naive Bayes values, logreg values) of one sample in the joined space:
        exactly the row ``fit`` / ``partial_fit`` give each base model (NB: 0/1 or log1p
        tokens, meta 0/1; logreg: L2-normalised tokens, meta x ``meta_scale``). For code
        that updates the fitted arrays in place (mailsift.classifier.online)."""
        h = self.vectorizer.hash_sample(sample)
        cols = np.concatenate([h.cols, h.mcols + self.vectorizer.n_features])
        ones = np.ones(len(h.mcols))
        tok_nb = np.ones(len(h.cols)) if self.hyper.nb_binary else h.vals
        nb_vals = np.concatenate([tok_nb, ones])
        norm = float(np.sqrt(h.vals @ h.vals)) or 1.0
        lr_vals = np.concatenate([h.vals / norm, ones * self.hyper.meta_scale])
        return cols, nb_vals, lr_vals

    # ---- fitting ---------------------------------------------------------------------------
    def fit(
        self,
        samples: Sequence[Sample],
        y: Sequence[int] | np.ndarray,
        *,
        sample_weight: Sequence[float] | np.ndarray | None = None,
        groups: Sequence[str] | np.ndarray | None = None,
        rule_priors: dict[str, float] | None = None,
        stock_rules: Collection[str] = (),
    ) -> SpamModel:
        """Fit on all samples.

        ``sample_weight``: per-message weights (e.g. :func:`source_weights`). ``groups``: the
        source of each message; the blend's stacker is then fitted on predictions for each
        source made by base models trained on the other sources (out-of-source, not
        shuffled folds of the same mail), so it weighs the base models by how they travel.
        ``rule_priors``: rule name -> score (SpamAssassin's scores) for the blend's
        rules/structure model to start from; ``stock_rules``: those of them whose score is
        SpamAssassin's (their corrections bounded by ``Hyper.stock_rule_bound``).
        """
        y = np.asarray(y, dtype=np.int64)
        if len(set(y.tolist())) < 2:
            raise ValueError("training needs both spam and ham messages")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        xt, xm = self._blocks(samples)
        prior = self._priors(rule_priors, stock_rules) if rule_priors and self.uses_meta else None
        g = None if groups is None else np.asarray(groups)
        if self.kind == "blend":
            self.stack_ = self._fit_stacker(xt, xm, y, w, g, prior)
        self._fit_base(xt, xm, y, w, prior)
        self.n_learned_ = 0
        return self

    def _priors(self, rule_priors: dict[str, float], stock_rules: Collection[str]) -> _Priors:
        """Rule scores, and the bound of each column's learned correction, laid out over the
        meta block's hashed columns."""
        names = sorted(rule_priors)
        cols = hash_columns(["rule:" + n for n in names], self.vectorizer.n_meta)
        vec = np.zeros(self.vectorizer.n_meta)
        np.add.at(vec, cols, np.array([rule_priors[n] for n in names], dtype=float))
        bounds = np.full(self.vectorizer.n_meta, self.hyper.prior_bound)
        points = np.full(self.vectorizer.n_meta, np.nan)
        points[cols] = self.hyper.rule_bound
        stock = set(stock_rules)
        points[cols[[n in stock for n in names]]] = self.hyper.stock_rule_bound
        return _Priors(vec, bounds, points)

    def _fit_base(
        self,
        xt: sp.csr_matrix,
        xm: sp.csr_matrix,
        y: np.ndarray,
        w: np.ndarray | None = None,
        prior: _Priors | None = None,
    ) -> None:
        if self.uses_nb:
            self.nb_ = self._new_nb().fit(self._nb_x(xt, xm), y, sample_weight=w)
        if self.uses_lr:
            self.lr_ = self._new_lr().fit(self._lr_x(xt, xm), y, sample_weight=w)
        if self.uses_meta:
            self.meta_ = self._fit_meta(xm, y, w, prior)

    def _fit_meta(
        self, xm: sp.csr_matrix, y: np.ndarray, w: np.ndarray | None, prior: _Priors | None
    ) -> LogisticRegression:
        """The rules/structure model. With rule priors, the rules' score sum is one more
        input, scaled to SpamAssassin's ``required_score`` of 5; its learned coefficient
        is then folded into the rule columns (prior x scale + correction), so the fitted
        model is one linear function over the meta block like the one without priors. Each
        correction is clipped to its column's bound (``_priors``)."""
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=self.hyper.meta_c, solver="liblinear")
        if prior is None:
            return lr.fit(xm, y, sample_weight=w)
        import scipy.sparse as sp

        total = np.asarray(xm @ prior.scores).reshape(-1, 1) / PRIOR_UNIT
        lr.fit(sp.hstack([xm, sp.csr_matrix(total)], format="csr"), y, sample_weight=w)
        scale = lr.coef_[0, -1] / PRIOR_UNIT
        # a rule's bound in points becomes log-odds at the learned scale: with the scale at
        # 0.3 log-odds a point, a fixed bound of 0.5 log-odds would let a few thousand
        # messages of one site turn a 1-point spam rule into ham evidence
        rules = ~np.isnan(prior.points)
        bounds = prior.bounds.copy()
        bounds[rules] = prior.points[rules] * abs(scale)
        corr = np.clip(lr.coef_[0, :-1], -bounds, bounds)
        lr.coef_ = (corr + scale * prior.scores).reshape(1, -1)
        lr.n_features_in_ = xm.shape[1]
        return lr

    def _fit_stacker(
        self,
        xt: sp.csr_matrix,
        xm: sp.csr_matrix,
        y: np.ndarray,
        w: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        prior: _Priors | None = None,
    ) -> LogisticRegression:
        """Out-of-fold base log-odds -> a 2- (3-) input logistic regression (calibrated).
        With ``groups`` of at least two sources, each source is predicted by base models
        trained on the others; else stratified folds."""
        from sklearn.model_selection import StratifiedKFold

        oof = np.zeros((len(y), 3 if self.uses_meta else 2))
        splits: list[tuple[np.ndarray, np.ndarray]] = []
        if groups is not None and len(set(groups.tolist())) >= 2:
            for gname in sorted(set(groups.tolist())):
                te = np.flatnonzero(groups == gname)
                tr = np.flatnonzero(groups != gname)
                if len(set(y[tr].tolist())) == 2:
                    splits.append((tr, te))
        covered = np.zeros(len(y), dtype=bool)
        for _, te in splits:
            covered[te] = True
        out_of_source = bool(splits) and bool(covered.all())
        if not out_of_source:
            folds = StratifiedKFold(self.hyper.stack_folds, shuffle=True, random_state=self.seed)
            splits = list(folds.split(np.zeros(len(y)), y))
        for tr, te in splits:
            self._fit_base(xt[tr], xm[tr], y[tr], None if w is None else w[tr], prior)
            oof[te] = self._base_logits(xt[te], xm[te])
        stack = _nonnegative_logistic(oof, y, w)
        p = _sigmoid(oof @ stack.coef_[0] + stack.intercept_[0])
        self.thresholds_ = calibrate_thresholds(
            p[y == 0], None if w is None else w[y == 0], self.hyper
        )
        if out_of_source:
            assert groups is not None
            self.thresholds_ = per_source_thresholds(self.thresholds_, p, y, groups, self.hyper)
        self.oof_metrics_ = _oof_metrics(y, p, self.thresholds_, out_of_source)
        return stack

    def partial_fit(
        self,
        samples: Sequence[Sample],
        y: Sequence[int] | np.ndarray,
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> SpamModel:
        """Learn more messages on top of what is known (feedback). Works from scratch too."""
        y = np.asarray(y, dtype=np.int64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        if (w < 0).any():
            neg = w < 0
            self.unlearn([s for s, n in zip(samples, neg, strict=True) if n], y[neg], -w[neg])
            keep = ~neg
            samples = [s for s, k in zip(samples, keep, strict=True) if k]
            y, w = y[keep], w[keep]
            if not len(y):
                return self
        self._ensure_estimators()
        xt, xm = self._blocks(samples)
        classes = np.array([0, 1])
        if self.uses_nb:
            nb = cast("MultinomialNB | ComplementNB | None", self.nb_) or self._new_nb()
            self.nb_ = nb.partial_fit(self._nb_x(xt, xm), y, classes=classes, sample_weight=w)
        if self.uses_lr:
            lr = cast("SGDClassifier | None", self.lr_) or self._new_lr()
            self.lr_ = lr.partial_fit(self._lr_x(xt, xm), y, classes=classes, sample_weight=w)
        self.n_learned_ += len(y)
        return self

    def unlearn(
        self,
        samples: Sequence[Sample],
        y: Sequence[int] | np.ndarray,
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> SpamModel:
        """Take back messages learnt with label ``y`` (naive Bayes: exact count subtraction;
        logreg: a step with the opposite label, see the module docstring)."""
        y = np.asarray(y, dtype=np.int64)
        w = np.ones(len(y)) if sample_weight is None else np.abs(np.asarray(sample_weight, float))
        if not len(y):
            return self
        self._ensure_estimators()
        xt, xm = self._blocks(samples)
        if self.uses_nb and self.nb_ is not None:
            nb = cast("MultinomialNB | ComplementNB", self.nb_)
            x = self._nb_x(xt, xm)
            for cls in (0, 1):
                mask = y == cls
                if not mask.any():
                    continue
                counts = np.asarray(x[mask].T @ w[mask]).ravel()
                nb.feature_count_[cls] = np.maximum(nb.feature_count_[cls] - counts, 0.0)
                nb.class_count_[cls] = max(nb.class_count_[cls] - w[mask].sum(), 1.0)
            if self.kind == "cnb":
                nb.feature_all_ = nb.feature_count_.sum(axis=0)
            nb._update_feature_log_prob(nb.alpha)
            nb._update_class_log_prior()
        if self.uses_lr and self.lr_ is not None:
            cast("SGDClassifier", self.lr_).partial_fit(
                self._lr_x(xt, xm), 1 - y, classes=np.array([0, 1]), sample_weight=w
            )
        self.n_learned_ += len(y)
        return self

    # ---- prediction ------------------------------------------------------------------------
    # Predictions are computed from the fitted arrays directly (row vectors, no transposed
    # copy of a (2, n_features) matrix per call): the same formulas as scikit-learn's
    # predict_joint_log_proba / decision_function, ~50x faster for one message, and they see
    # in-place updates of feature_log_prob_ / coef_ (mailsift.classifier.online) at once.
    def _nb_logit(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> np.ndarray:
        nb = self.nb_
        assert nb is not None
        n = self.vectorizer.n_features
        d = self._nb_delta(nb)
        xt = self._nb_tokens(xt)
        z = xt @ d[:n] + xm @ d[n:]
        if self.kind != "cnb":  # MultinomialNB (ComplementNB's prior plays no part)
            z = z + (nb.class_log_prior_[1] - nb.class_log_prior_[0])
        return np.asarray(z, dtype=float).ravel()

    def _nb_delta(self, nb: Any, cols: np.ndarray | None = None) -> np.ndarray:
        """NB's per-column log ratio (spam over ham) of ``cols`` (all columns if None), zero
        for columns no training message held when ``Hyper.nb_unseen_neutral``."""
        flp, fc = nb.feature_log_prob_, nb.feature_count_
        at = slice(None) if cols is None else cols
        d = flp[1, at] - flp[0, at]
        if self.hyper.nb_unseen_neutral:
            d[(fc[0, at] + fc[1, at]) == 0] = 0.0
        return d

    def _lr_logit(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> np.ndarray:
        lr = self.lr_
        assert lr is not None
        n = self.vectorizer.n_features
        w = lr.coef_[0]
        z = _row_l2_normalise(xt) @ w[:n] + (xm @ w[n:]) * self.hyper.meta_scale
        return np.asarray(z + lr.intercept_[0], dtype=float).ravel()

    def _nb_scaled(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> np.ndarray:
        """NB log-odds as the blend's stacker takes them, before the squash."""
        return np.clip(self._nb_logit(xt, xm), -500, 500) / NB_LOGIT_SCALE

    def _meta_logit(self, xm: sp.csr_matrix) -> np.ndarray:
        m = self.meta_
        assert m is not None
        z = xm @ m.coef_[0] + m.intercept_[0]
        return np.clip(np.asarray(z, dtype=float).ravel(), -META_CLIP, META_CLIP)

    def _base_logits(self, xt: sp.csr_matrix, xm: sp.csr_matrix) -> np.ndarray:
        nb = self._nb_scaled(xt, xm)
        if self.hyper.nb_squash:
            nb = np.arcsinh(nb)
        lr = np.clip(self._lr_logit(xt, xm), -100, 100)
        if self.meta_ is not None:
            return np.column_stack([nb, lr, self._meta_logit(xm)])
        return np.column_stack([nb, lr])

    def decision_function(self, samples: Sequence[Sample]) -> np.ndarray:
        """Log-odds of spam for each sample."""
        self._check_fitted()
        if len(samples) == 1:  # one message (the scorer): no sparse matrices
            row = self._row(self.vectorizer.hash_sample(samples[0]))
            return np.array([row.z])
        xt, xm = self._blocks(samples)
        if self.kind == "blend":
            assert self.stack_ is not None
            base = self._base_logits(xt, xm)
            return np.asarray(base @ self.stack_.coef_[0] + self.stack_.intercept_[0])
        if self.uses_nb:
            return self._nb_logit(xt, xm)
        return self._lr_logit(xt, xm)

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        """Spam probability (0..1) for each sample."""
        if not len(samples):
            return np.zeros(0)
        return _sigmoid(self.decision_function(samples))

    def _check_fitted(self) -> None:
        missing = (self.uses_nb and self.nb_ is None) or (self.uses_lr and self.lr_ is None)
        if missing or (self.kind == "blend" and self.stack_ is None):
            raise RuntimeError("model is not trained: call fit() first")

    # ---- explanation -----------------------------------------------------------------------
    def _weight_parts(
        self, features: Sequence[str], cols: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(naive Bayes, logreg, rules/structure model) log-odds weight of each feature per
        unit of its value in that model's view, already scaled by the stacker for ``blend``
        (the third is zero for tokens and for kinds without that model)."""
        self._check_fitted()
        if cols is None:
            cols = self.vectorizer.column_of(features)
        nbw = np.zeros(len(cols))
        lrw = np.zeros(len(cols))
        if self.uses_nb:
            assert self.nb_ is not None
            nbw = self._nb_delta(self.nb_, cols)  # (CNB stores -log complement: same sign)
            if self.kind == "blend":
                nbw = nbw * self._stack_coef(0) / NB_LOGIT_SCALE
        if self.uses_lr:
            assert self.lr_ is not None
            lrw = self.lr_.coef_[0, cols] * (self._stack_coef(1) if self.kind == "blend" else 1.0)
        mw = np.zeros(len(cols))
        if self.meta_ is not None:
            n = self.vectorizer.n_features
            is_meta = cols >= n
            mw[is_meta] = self.meta_.coef_[0, cols[is_meta] - n] * self._stack_coef(2)
        return nbw, lrw, mw

    def feature_weights(
        self,
        features: Sequence[str],
        sample: Sample | None = None,
        *,
        nb_factor: float | None = None,
    ) -> np.ndarray:
        """Log-odds weight of each feature when present with value 1 (rule / symbol weights);
        with ``sample`` (or its ``nb_factor``), as it counts in that sample (the blend
        squashes NB log-odds)."""
        nbw, lrw, mw = self._weight_parts(features)
        if nb_factor is None and sample is not None:
            nb_factor = self._nb_squash_factor(sample)
        return nbw * (nb_factor or 1.0) + lrw * self.hyper.meta_scale + mw

    def _squash_factor(self, nb_scaled: float) -> float:
        if self.kind != "blend" or not self.hyper.nb_squash or abs(nb_scaled) < 1e-9:
            return 1.0
        return math.asinh(nb_scaled) / nb_scaled

    def _nb_squash_factor(self, sample: Sample) -> float:
        """arcsinh(z) / z for this sample's scaled NB log-odds z (1 when not squashed): the
        factor that keeps per-feature NB contributions summing to what the stacker sees."""
        if self.kind != "blend" or not self.hyper.nb_squash:
            return 1.0
        return self._row(self.vectorizer.hash_sample(sample)).factor

    # ---- one message: the fast path ---------------------------------------------------------
    # The scorer's path. One hashing pass (Vectorizer.hash_sample), then the weights of the
    # sample's own columns are gathered from the fitted arrays (a fancy index per array) and
    # summed: no sparse matrix, no 2**20-wide row. The arrays are read on every call, so
    # in-place updates (mailsift.classifier.online) count at once. Same numbers as the
    # batch path (decision_function on several samples) up to float rounding (tested).
    def _row(self, h: HashedSample) -> _Row:
        n = self.vectorizer.n_features
        k = len(h.cols)
        row_cols = np.concatenate([h.cols, h.mcols + n])
        nb_z = lr_z = 0.0
        nbd = lrw = None
        if self.uses_nb:
            nb = self.nb_
            assert nb is not None
            nbd = self._nb_delta(nb, row_cols)
            tok = nbd[:k].sum() if self.hyper.nb_binary else nbd[:k] @ h.vals
            nb_z = float(tok + nbd[k:].sum())
            if self.kind != "cnb":
                nb_z += float(nb.class_log_prior_[1] - nb.class_log_prior_[0])
        norm = float(np.sqrt(h.vals @ h.vals)) or 1.0
        if self.uses_lr:
            lr = self.lr_
            assert lr is not None
            lrw = lr.coef_[0, row_cols]
            lr_z = float(
                (lrw[:k] @ (h.vals / norm) + lrw[k:].sum() * self.hyper.meta_scale)
                + lr.intercept_[0]
            )
        factor = 1.0
        mw = None
        if self.kind == "blend":
            assert self.stack_ is not None
            nb_s = min(max(nb_z, -500.0), 500.0) / NB_LOGIT_SCALE
            c = self.stack_.coef_[0].tolist()
            nb_in = math.asinh(nb_s) if self.hyper.nb_squash else nb_s
            lr_in = min(max(lr_z, -100.0), 100.0)
            z = nb_in * c[0] + lr_in * c[1] + float(self.stack_.intercept_[0])
            if self.meta_ is not None:
                mw = self.meta_.coef_[0, h.mcols]
                m_z = float(mw.sum() + self.meta_.intercept_[0])
                z += min(max(m_z, -META_CLIP), META_CLIP) * c[2]
            if self.hyper.nb_squash:
                factor = self._squash_factor(nb_s)
        else:
            z = nb_z if self.uses_nb else lr_z
        return _Row(h, z, factor, norm, nbd, lrw, mw)

    def predict_explain(
        self, sample: Sample, top: int = 10
    ) -> tuple[float, list[TokenContribution], float]:
        """(spam probability, top contributions, NB squash factor) of one sample, hashing it
        once (the scorer's path; same results as predict_proba + explain)."""
        self._check_fitted()
        row = self._row(self.vectorizer.hash_sample(sample))
        z = min(max(row.z, -2 * LOGIT_CLIP), 2 * LOGIT_CLIP)
        return 1.0 / (1.0 + math.exp(-z)), self._explain_row(row, top), row.factor

    def _stack_coef(self, i: int) -> float:
        assert self.stack_ is not None
        return float(self.stack_.coef_[0, i])

    def explain(self, sample: Sample, top: int = 10) -> list[TokenContribution]:
        """The features that pushed this sample's log-odds most (either way).

        A contribution is weight x value in each base model's view (logreg sees the token
        block L2-normalised, NB may see 0/1), summed over the base models (scaled by the
        stacker for ``blend``, NB part by the squash factor): the sample's log-odds are the sum
        of all contributions plus intercepts (exactly, unless two of its features share a
        hashed column).
        """
        self._check_fitted()
        return self._explain_row(self._row(self.vectorizer.hash_sample(sample)), top)

    def _explain_row(self, row: _Row, top: int) -> list[TokenContribution]:
        h = row.h
        n_tok, n_meta = len(h.tokens), len(h.meta)
        if not n_tok + n_meta:
            return []
        pos = np.concatenate([h.token_pos, h.meta_pos + len(h.cols)])
        contrib = np.zeros(n_tok + n_meta)
        if row.nbd is not None:
            nbw = row.nbd[pos]
            if self.kind == "blend":
                nbw = nbw * (self._stack_coef(0) / NB_LOGIT_SCALE)
            if not self.hyper.nb_binary:
                nbw[:n_tok] *= h.token_values
            contrib += nbw * row.factor
        if row.lrw is not None:
            lrw = row.lrw[pos]
            if self.kind == "blend":
                lrw = lrw * self._stack_coef(1)
            lrw[:n_tok] *= h.token_values / row.norm
            lrw[n_tok:] *= self.hyper.meta_scale
            contrib += lrw
        if row.mw is not None:
            contrib[n_tok:] += row.mw[h.meta_pos] * self._stack_coef(2)
        k = min(top, len(contrib))
        mag = np.abs(contrib)
        idx = np.argpartition(-mag, k - 1)[:k] if k < len(contrib) else np.arange(k)
        order = idx[np.argsort(-mag[idx], kind="stable")]
        feats = h.tokens, h.meta
        return [
            TokenContribution(
                feats[0][i] if i < n_tok else feats[1][i - n_tok], round(float(contrib[i]), 4)
            )
            for i in order.tolist()
        ]

    # ---- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"nb": self.nb_, "lr": self.lr_, "stack": self.stack_, "meta": self.meta_}

    def _ensure_estimators(self) -> None:
        """Make the base models scikit-learn estimators again (``fit``, ``partial_fit``,
        ``unlearn`` and ``save`` need them). A model loaded with ``serving=True`` holds
        only their fitted arrays: the estimators are read from the same file (its hash
        checked again) and take over the arrays as they are now, in-place feedback updates
        included (the arrays themselves, not copies)."""
        state = self._state()
        if not any(isinstance(v, ServingNB | ServingLinear) for v in state.values()):
            return
        if self._source is None:  # pragma: no cover - serving parts come only from load
            raise RuntimeError("a serving model without its file cannot be trained further")
        path, digest = self._source
        full = persistence.load_estimators(persistence.read_verified(path, digest)[0], path)
        for name, part in state.items():
            est = full.get(name)
            if isinstance(part, ServingNB | ServingLinear):
                if est is None or type(est).__name__ not in part.KINDS:
                    raise ModelLoadError(f"{path}: {name!r} differs from the loaded model")
                for attr in part.ARRAYS:
                    if getattr(part, attr) is not None:
                        setattr(est, attr, getattr(part, attr))
                state[name] = est
        self.nb_, self.lr_, self.stack_, self.meta_ = (
            state["nb"],
            state["lr"],
            state["stack"],
            state["meta"],
        )

    def save(self, directory: str | Path, extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write model.skops + manifest.json into ``directory`` (created; files replaced;
        :mod:`mailsift.classifier.persistence`)."""
        self._check_fitted()
        self._ensure_estimators()
        d = Path(directory)
        digest = persistence.write_state(self._state(), d)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.version = f"{self.kind}-{stamp}-{digest[:12]}"
        manifest: dict[str, Any] = {
            **(extra_manifest or {}),
            "format": 1,
            "version": self.version,
            "kind": self.kind,
            "sha256": digest,
            "file": MODEL_FILE,
            "n_features": self.vectorizer.n_features,
            "n_meta": self.vectorizer.n_meta,
            "feature_set_version": FEATURE_SET_VERSION,
            "seed": self.seed,
            "hyper": _hyper_dict(self.hyper),
            "incremental_updates": self.n_learned_,
            "thresholds": self.thresholds_,
            "out_of_fold": self.oof_metrics_,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.manifest = manifest
        persistence.write_manifest(d, manifest)
        return d

    @classmethod
    def load(cls, directory: str | Path, *, serving: bool = False) -> SpamModel:
        """Load a saved model, verifying the manifest hash and the types in the file
        (:mod:`mailsift.classifier.persistence`), and refusing one trained on another
        feature set.

        ``serving=True`` (the scorer, the API workers, the SMTP filter) reads only the fitted
        arrays the scorer and the fast feedback path use (:class:`ServingNB`,
        :class:`ServingLinear`) straight from the file's ``.npy`` members, without skops
        or scikit-learn: importing scikit-learn costs a worker ~70 MB (it imports
        ``scipy.stats``) and skops ~15 MB more. Predictions are the same numbers; training
        further (``partial_fit``, ``unlearn``, ``save``) loads the estimators first."""
        d = Path(directory)
        manifest, fpath = persistence.read_manifest(d)
        data, digest = persistence.read_verified(fpath, manifest.get("sha256"))
        if manifest.get("feature_set_version") != FEATURE_SET_VERSION:
            raise ModelLoadError(
                f"{d}: trained on feature set {manifest.get('feature_set_version')!r}, this "
                f"mailsift uses {FEATURE_SET_VERSION!r}: retrain the model"
            )
        state = persistence.load_serving(data, fpath) if serving else None
        if state is None:  # not asked, or a part the serving reader does not take
            state = persistence.load_estimators(data, fpath)
        # a model saved before a Hyper field existed keeps the behaviour it was trained with
        hyper = Hyper(**{"nb_unseen_neutral": False, **manifest.get("hyper", {})})
        model = cls(
            manifest.get("kind", "blend"),
            n_features=int(manifest["n_features"]),
            n_meta=int(manifest.get("n_meta", DEFAULT_N_META)),
            seed=int(manifest.get("seed", 42)),
            hyper=hyper,
        )
        model.nb_, model.lr_, model.stack_ = state.get("nb"), state.get("lr"), state.get("stack")
        model.meta_ = state.get("meta")
        model._check_fitted()
        model._source = (fpath, digest)
        model.version = str(manifest.get("version", digest[:12]))
        model.manifest = manifest
        model.thresholds_ = manifest.get("thresholds")
        model.oof_metrics_ = manifest.get("out_of_fold")
        return model


def _hyper_dict(h: Hyper) -> dict[str, Any]:
    return {k: getattr(h, k) for k in h.__dataclass_fields__}


def train_model(
    samples: Sequence[Sample],
    y: Sequence[int] | np.ndarray,
    kind: str | None,
    settings: Settings | ModelSettings,
    *,
    sample_weight: Sequence[float] | np.ndarray | None = None,
    groups: Sequence[str] | np.ndarray | None = None,
    rule_priors: dict[str, float] | None = None,
    stock_rules: Collection[str] = (),
) -> SpamModel:
    """Build a model of ``kind`` (default: settings.model.kind) and fit it on all samples
    (see :meth:`SpamModel.fit` for the keyword arguments)."""
    return SpamModel.build(kind, settings).fit(
        samples,
        y,
        sample_weight=sample_weight,
        groups=groups,
        rule_priors=rule_priors,
        stock_rules=stock_rules,
    )
