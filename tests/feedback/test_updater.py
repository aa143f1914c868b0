"""OnlineUpdater: the fast path updates exactly what the model's own matrices say."""

from __future__ import annotations

import numpy as np

from mailsift.classifier.model import SpamModel
from mailsift.classifier.online import CorpusLearner, OnlineUpdater, corpus_learner


def _load(fb_model_dir) -> SpamModel:  # type: ignore[no-untyped-def]
    return SpamModel.load(fb_model_dir)


def test_vectors_match_the_model_matrices(fb_model_dir, fb_scorer, campaign) -> None:
    model = _load(fb_model_dir)
    up = OnlineUpdater(model, 3.0, 2.0)
    sample = fb_scorer.sample(campaign(1))
    cols, nb_vals, lr_vals = up.vectors(sample)
    xt, xm = model.vectorizer.transform_blocks([sample])
    nb_x, lr_x = model._nb_x(xt, xm), model._lr_x(xt, xm)
    order = np.argsort(cols)
    assert np.array_equal(cols[order], np.sort(nb_x.indices))
    dense_nb = np.zeros(nb_x.shape[1])
    dense_nb[nb_x.indices] = nb_x.data
    dense_lr = np.zeros(lr_x.shape[1])
    dense_lr[lr_x.indices] = lr_x.data
    assert np.allclose(dense_nb[cols], nb_vals)
    assert np.allclose(dense_lr[cols], lr_vals)


def test_nb_counts_match_sklearn_partial_fit(fb_model_dir, fb_scorer, campaign) -> None:
    fast, ref = _load(fb_model_dir), _load(fb_model_dir)
    up = OnlineUpdater(fast, max_drift=1e9, step=2.0)
    samples = [fb_scorer.sample(campaign(n)) for n in range(3)]
    for s in samples:
        up.learn(s, 1)
        ref.partial_fit([s], [1])
    assert np.allclose(fast.nb_.feature_count_, ref.nb_.feature_count_)
    assert np.allclose(fast.nb_.class_count_, ref.nb_.class_count_)
    # and so do the log-probabilities the model predicts with, in every column
    assert np.allclose(fast.nb_.feature_log_prob_, ref.nb_.feature_log_prob_, atol=1e-9)
    assert np.allclose(fast.nb_.class_log_prior_, ref.nb_.class_log_prior_)
    # unlearning is exact: back to the base counts
    base = _load(fb_model_dir)
    for s in samples:
        up.unlearn(s, 1)
    assert np.allclose(fast.nb_.feature_count_, base.nb_.feature_count_)
    assert np.allclose(fast.nb_.feature_log_prob_, base.nb_.feature_log_prob_)


def test_linear_step_moves_the_message_by_step(fb_model_dir, fb_scorer, campaign) -> None:
    model = _load(fb_model_dir)
    up = OnlineUpdater(model, max_drift=1e9, step=2.0)
    s = fb_scorer.sample(campaign(1))
    cols, _, lr_vals = up.vectors(s)
    z0 = float(model.lr_.coef_[0, cols] @ lr_vals + model.lr_.intercept_[0])
    p0 = 1 / (1 + np.exp(-z0))
    up.learn(s, 1)
    z1 = float(model.lr_.coef_[0, cols] @ lr_vals + model.lr_.intercept_[0])
    assert np.isclose(z1 - z0, 2.0 * (1 - p0))
    up.unlearn(s, 1)  # a step towards ham
    z2 = float(model.lr_.coef_[0, cols] @ lr_vals + model.lr_.intercept_[0])
    assert z2 < z1


def test_corpus_learner_for_online_evaluation(fb_model_dir, fb_scorer, campaign) -> None:
    from mailsift.config import load_settings

    model = _load(fb_model_dir)
    learner = corpus_learner(model, load_settings())
    assert isinstance(learner, CorpusLearner) and learner.model is model
    s = fb_scorer.sample(campaign("x"))
    p0 = float(model.predict_proba([s])[0])
    learner.learn(s, 1)
    assert float(learner.model.predict_proba([s])[0]) > p0
