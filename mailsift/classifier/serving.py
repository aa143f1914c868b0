"""The fitted arrays of a model's base estimators, without scikit-learn.

A serving process (the scorer in an API worker, the SMTP filter, spamd) reads and updates
only a few arrays of each estimator: naive Bayes counts and log-probabilities, linear
coefficients and intercepts. :class:`ServingNB` and :class:`ServingLinear` hold exactly
those arrays, read from the model file by :func:`mailsift.classifier.persistence.load_serving`,
so that a serving process never imports scikit-learn (~70 MB of RSS per process through
``scipy.stats``) or skops (~15 MB more). :class:`~mailsift.classifier.model.SpamModel`
scores with them through the same formulas as with the estimators (same numbers, tested),
the fast feedback path (:mod:`mailsift.classifier.online`) updates them in place, and
training further turns them back into estimators that take over the current arrays
(``SpamModel._ensure_estimators``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ServingNB:
    """The fitted arrays of a ``MultinomialNB`` / ``ComplementNB``, as the scorer and the
    fast feedback path (:mod:`mailsift.classifier.online`) read and update them in place;
    ``_update_class_log_prior`` is scikit-learn's formula (``fit_prior``, no ``class_prior``)."""

    KINDS = ("MultinomialNB", "ComplementNB")
    ARRAYS = (
        "classes_",
        "class_count_",
        "feature_count_",
        "feature_log_prob_",
        "class_log_prior_",
        "feature_all_",
    )
    __slots__ = (
        "alpha",
        "class_count_",
        "class_log_prior_",
        "classes_",
        "feature_all_",
        "feature_count_",
        "feature_log_prob_",
        "fit_prior",
        "norm",
    )
    classes_: np.ndarray
    class_count_: np.ndarray
    feature_count_: np.ndarray
    feature_log_prob_: np.ndarray
    class_log_prior_: np.ndarray
    feature_all_: np.ndarray | None  # ComplementNB only

    def __init__(self, attrs: dict[str, Any], complement: bool) -> None:
        self.alpha = float(attrs["alpha"])
        self.fit_prior = bool(attrs.get("fit_prior", True))
        self.norm = bool(attrs.get("norm", False))
        for name in self.ARRAYS:
            value = attrs.get(name)
            if not isinstance(value, np.ndarray) and (name != "feature_all_" or complement):
                raise ValueError(f"naive Bayes without {name}")
            setattr(self, name, value)

    def _update_class_log_prior(self) -> None:
        n = len(self.classes_)
        if self.fit_prior:
            with np.errstate(divide="ignore"):  # a class not seen yet: log(0), as sklearn
                log_count = np.log(self.class_count_)
            self.class_log_prior_ = log_count - np.log(self.class_count_.sum())
        else:
            self.class_log_prior_ = np.full(n, -np.log(n))


class ServingLinear:
    """The fitted arrays of an ``SGDClassifier`` / ``LogisticRegression`` (binary)."""

    KINDS = ("SGDClassifier", "LogisticRegression")
    ARRAYS = ("classes_", "coef_", "intercept_")
    __slots__ = ARRAYS
    classes_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray

    def __init__(self, attrs: dict[str, Any]) -> None:
        for name in self.ARRAYS:
            if not isinstance(attrs.get(name), np.ndarray):
                raise ValueError(f"linear model without {name}")
            setattr(self, name, attrs[name])
