"""``SpamModel.load(..., serving=True)``: the fitted arrays read from model.skops without
skops or scikit-learn give the estimators' numbers, take the fast feedback path's in-place
updates, and turn back into estimators (with those updates) when the model trains further."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.features import Sample, make_sample
from mailsift.classifier.model import KINDS, SpamModel
from mailsift.classifier.online import OnlineUpdater
from mailsift.classifier.persistence import ModelLoadError
from mailsift.classifier.serving import ServingLinear, ServingNB
from mailsift.message import parse
from tests.classifier.messages import PERSONAL, SPAMMY

TOY = [
    (Sample(("w:meeting", "w:agenda", "s:project", "w:agenda"), ("st:size:1",)), 0),
    (Sample(("w:lunch", "w:thursday", "s:re"), ("st:size:0",)), 0),
    (Sample(("w:patch", "w:build", "s:re"), ("st:size:1", "rule:X")), 0),
    (Sample(("w:viagra", "w:cheap", "s:free"), ("rule:HTML_ONLY", "st:size:0")), 1),
    (Sample(("w:casino", "w:win", "s:free", "w:win"), ("rule:HTML_ONLY",)), 1),
    (Sample(("w:cheap", "w:pills", "s:offer"), ("rule:URL_IP",)), 1),
]
NEW = Sample(("w:cheap", "w:meeting", "w:unseen", "s:free"), ("rule:URL_IP", "st:size:1"))


def _toy_dir(kind: str, tmp_path: Path) -> Path:
    samples = [s for s, _ in TOY * 5]
    y = np.array([y for _, y in TOY * 5])
    return SpamModel(kind, n_features=2**16).fit(samples, y).save(tmp_path / kind)


def _arrays(m: SpamModel) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in ("nb_", "lr_", "stack_", "meta_"):
        part = getattr(m, name)
        if part is None:
            continue
        for attr in ("feature_count_", "class_count_", "feature_log_prob_", "class_log_prior_"):
            if hasattr(part, attr):
                out[f"{name}{attr}"] = np.array(getattr(part, attr))
        for attr in ("coef_", "intercept_", "feature_all_"):
            if getattr(part, attr, None) is not None:
                out[f"{name}{attr}"] = np.array(getattr(part, attr))
    return out


def _same_arrays(a: SpamModel, b: SpamModel) -> None:
    xa, xb = _arrays(a), _arrays(b)
    assert xa.keys() == xb.keys() and xa
    for k in xa:
        assert np.array_equal(xa[k], xb[k]), k


@pytest.mark.parametrize("kind", KINDS)
def test_serving_load_gives_the_estimators_numbers(kind: str, tmp_path: Path) -> None:
    d = _toy_dir(kind, tmp_path)
    full, lite = SpamModel.load(d), SpamModel.load(d, serving=True)
    assert isinstance(lite.nb_, ServingNB) == lite.uses_nb
    assert isinstance(lite.lr_, ServingLinear) == lite.uses_lr
    assert type(full.nb_).__module__.startswith("sklearn") or full.nb_ is None
    assert lite.version == full.version
    _same_arrays(full, lite)
    samples = [s for s, _ in TOY] + [NEW]
    assert np.array_equal(lite.decision_function(samples), full.decision_function(samples))
    for s in samples:
        p_full, top_full, f_full = full.predict_explain(s, top=5)
        assert lite.predict_explain(s, top=5) == (p_full, top_full, f_full)
        assert np.array_equal(lite.decision_function([s]), full.decision_function([s]))
    names = ["rule:HTML_ONLY", "rule:URL_IP", "st:size:1"]
    assert np.array_equal(lite.feature_weights(names), full.feature_weights(names))


def test_serving_load_of_the_trained_model_on_corpus_samples(small_model_dir: Path) -> None:
    full, lite = SpamModel.load(small_model_dir), SpamModel.load(small_model_dir, serving=True)
    assert full.kind == "blend" and isinstance(lite.meta_, ServingLinear)
    samples = [make_sample(parse(raw)) for raw in (PERSONAL, SPAMMY)]
    assert np.array_equal(lite.predict_proba(samples), full.predict_proba(samples))
    for s in samples:
        assert lite.predict_explain(s) == full.predict_explain(s)


@pytest.mark.parametrize("kind", ["blend", "cnb"])
def test_fast_feedback_on_serving_arrays_matches_the_estimators(kind: str, tmp_path: Path) -> None:
    d = _toy_dir(kind, tmp_path)
    full, lite = SpamModel.load(d), SpamModel.load(d, serving=True)
    assert OnlineUpdater.supports(full) and OnlineUpdater.supports(lite)
    uf, ul = (OnlineUpdater(m, max_drift=5.0, step=2.0) for m in (full, lite))
    for upd in (uf, ul):
        upd.learn(NEW, 0)
        upd.learn(TOY[0][0], 1)
        upd.unlearn(TOY[0][0], 1)
    _same_arrays(full, lite)
    assert full.predict_explain(NEW) == lite.predict_explain(NEW)
    assert lite.predict_proba([NEW])[0] != SpamModel.load(d).predict_proba([NEW])[0]


def test_training_further_turns_serving_arrays_back_into_estimators(tmp_path: Path) -> None:
    d = _toy_dir("blend", tmp_path)
    full, lite = SpamModel.load(d), SpamModel.load(d, serving=True)
    for m in (full, lite):  # in-place updates first: the estimators must take them over
        OnlineUpdater(m, max_drift=5.0, step=2.0).learn(NEW, 0)
    updated = lite.nb_.feature_count_  # type: ignore[union-attr]
    lite.partial_fit([NEW], [1])
    full.partial_fit([NEW], [1])
    assert type(lite.nb_).__name__ == "MultinomialNB"
    assert type(lite.lr_).__name__ == "SGDClassifier"
    assert type(lite.stack_).__name__ == "LogisticRegression"
    _same_arrays(full, lite)
    assert lite.nb_.feature_count_ is updated  # type: ignore[union-attr]  # the same array
    lite.unlearn([NEW], [1])
    full.unlearn([NEW], [1])
    _same_arrays(full, lite)


def test_saving_a_serving_model_keeps_its_feedback(tmp_path: Path) -> None:
    d = _toy_dir("nb", tmp_path)
    lite = SpamModel.load(d, serving=True)
    OnlineUpdater(lite, max_drift=5.0, step=2.0).learn(NEW, 1)
    before = lite.predict_proba([NEW])[0]
    again = SpamModel.load(lite.save(tmp_path / "saved"))
    _same_arrays(lite, again)
    assert again.predict_proba([NEW])[0] == before


def test_a_file_changed_after_a_serving_load_is_not_trained_on(tmp_path: Path) -> None:
    d = _toy_dir("nb", tmp_path)
    lite = SpamModel.load(d, serving=True)
    _toy_dir("logreg", tmp_path / "other")
    shutil.copy(tmp_path / "other" / "logreg" / "model.skops", d / "model.skops")
    with pytest.raises(ModelLoadError, match="does not match the manifest"):
        lite.partial_fit([NEW], [1])


def test_scoring_the_serving_model_imports_no_scikit_learn_skops_or_scipy(
    small_model_dir: Path, test_settings
) -> None:
    """What an API worker and the SMTP filter run: load the serving model, score, learn
    from feedback on the fast path; scikit-learn (~70 MB of RSS per worker, via
    scipy.stats), skops and scipy (scipy.sparse: ~13 MB) are never imported."""
    code = f"""
import sys
from mailsift.config import load_settings
from mailsift.classifier.scorer import Scorer
from mailsift.classifier.online import OnlineUpdater
from mailsift.pipeline.registry import serving_model_dir
s = load_settings(model={{"path": {str(small_model_dir)!r}}},
                  rules={{"use_stock": False, "cache_dir": {str(test_settings.rules.cache_dir)!r}}})
sc = Scorer.from_model_dir(serving_model_dir(s), s)
v = sc.score({SPAMMY!r})
OnlineUpdater(sc.model, max_drift=5.0, step=2.0).learn(sc.sample({PERSONAL!r}), 0)
print(v.probability > 0.5, sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "skops", "scipy"}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True []"


def test_a_part_the_serving_reader_does_not_know_is_loaded_as_an_estimator(
    tmp_path: Path,
) -> None:
    """An NB with fixed class priors (mailsift never fits one) is not one the serving
    arrays stand in for: that part comes back as scikit-learn's estimator, same numbers."""
    import hashlib

    import skops.io as sio

    d = _toy_dir("nb", tmp_path)
    m = SpamModel.load(d)
    m.nb_.class_prior = [0.5, 0.5]  # type: ignore[union-attr]
    sio.dump(m._state(), d / "model.skops")
    man = json.loads((d / "manifest.json").read_text())
    man["sha256"] = hashlib.sha256((d / "model.skops").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    lite = SpamModel.load(d, serving=True)
    assert type(lite.nb_).__name__ == "MultinomialNB"
    assert lite.predict_explain(NEW) == SpamModel.load(d).predict_explain(NEW)
