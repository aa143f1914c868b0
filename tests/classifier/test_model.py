"""SpamModel: fit / partial_fit / unlearn / predict, explanations, skops artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from mailsift.classifier.features import Sample, make_sample
from mailsift.classifier.model import KINDS, SpamModel, train_model
from mailsift.classifier.persistence import ModelLoadError
from mailsift.message import parse
from mailsift.pipeline.extract import samples_of
from tests.classifier.messages import PERSONAL, SPAMMY

TOY = [
    (Sample(("w:meeting", "w:agenda", "s:project"), ("st:size:1",)), 0),
    (Sample(("w:lunch", "w:thursday", "s:re"), ("st:size:0",)), 0),
    (Sample(("w:patch", "w:build", "s:re"), ("st:size:1",)), 0),
    (Sample(("w:viagra", "w:cheap", "s:free"), ("rule:HTML_ONLY", "st:size:0")), 1),
    (Sample(("w:casino", "w:win", "s:free"), ("rule:HTML_ONLY",)), 1),
    (Sample(("w:cheap", "w:pills", "s:offer"), ("rule:URL_IP",)), 1),
]


def _toy() -> tuple[list[Sample], np.ndarray]:
    return [s for s, _ in TOY * 5], np.array([y for _, y in TOY * 5])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_fits_and_separates(kind: str) -> None:
    samples, y = _toy()
    m = SpamModel(kind, n_features=2**16).fit(samples, y)
    p = m.predict_proba([s for s, _ in TOY])
    assert p.shape == (6,)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[:3].max() < p[3:].min()


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_moves_towards_label_and_unlearn_takes_back(kind: str) -> None:
    samples, y = _toy()
    m = SpamModel(kind, n_features=2**16).fit(samples, y)
    probe = Sample(("w:lunch", "w:cheap", "w:offer", "s:re"), ())
    before = float(m.predict_proba([probe])[0])
    for _ in range(3):
        m.partial_fit([probe], [1])
    after = float(m.predict_proba([probe])[0])
    assert after > before
    m.unlearn([probe], [1])
    assert float(m.predict_proba([probe])[0]) < after


def test_nb_unlearn_is_exact() -> None:
    samples, y = _toy()
    m = SpamModel("nb", n_features=2**16).fit(samples, y)
    probe = Sample(("w:lunch", "w:cheap", "w:offer"), ("st:size:0",))
    p0 = m.predict_proba([probe])
    m.partial_fit([probe], [1], sample_weight=[2.0])
    m.partial_fit([probe], [1], sample_weight=[-2.0])  # negative weight = unlearn
    assert np.allclose(m.predict_proba([probe]), p0)


def test_partial_fit_from_scratch() -> None:
    samples, y = _toy()
    m = SpamModel("logreg", n_features=2**16)
    m.partial_fit(samples, y)
    assert m.predict_proba(samples[:1]).shape == (1,)


def test_unfitted_and_bad_kind() -> None:
    with pytest.raises(ValueError):
        SpamModel("svm")
    with pytest.raises(RuntimeError):
        SpamModel("nb").predict_proba([TOY[0][0]])
    with pytest.raises(ValueError):
        SpamModel("nb").fit([TOY[0][0]], [0])


@pytest.mark.parametrize("kind", ["logreg", "nb"])
def test_explain_contributions_sum_to_log_odds(
    kind: str, corpus_messages, small_split, ruleset, test_settings
) -> None:
    _, raws, y = corpus_messages
    train, test = small_split
    samples = samples_of([raws[i] for i in train[::5]], test_settings, ruleset)
    m = SpamModel(kind, n_features=2**18).fit(samples, y[train[::5]])
    s = samples_of([raws[test[0]]], test_settings, ruleset)[0]
    full = m.explain(s, top=100000)
    assert len(full) > 20 and all(":" in c.token for c in full)
    assert abs(full[0].weight) >= abs(full[-1].weight)
    if kind == "logreg":
        intercept = float(m.lr_.intercept_[0])
    else:
        intercept = float(m.nb_.class_log_prior_[1] - m.nb_.class_log_prior_[0])
    total = sum(c.weight for c in full) + intercept
    assert total == pytest.approx(float(m.decision_function([s])[0]), rel=0.02, abs=0.1)


def test_explanation_tokens_are_meaningful(small_model: SpamModel) -> None:
    spam = small_model.explain(make_sample(parse(SPAMMY)), top=10)
    ham = small_model.explain(make_sample(parse(PERSONAL)), top=10)
    assert sum(c.weight for c in spam) > 0
    assert sum(c.weight for c in ham) < 0
    spam_tokens = {c.token for c in spam if c.weight > 0}
    assert spam_tokens & {
        "w:click",
        "bw:click_here",
        "w:free",
        "s:free",
        "u:ip",
        "w:money",
        "w:offer",
        "w:remove",
        "w:guaranteed",
        "st:html_only",
        "bw:mailing_list",
        "w:$9999",
        "bs:make_$$$",
        "w:dear",
        "bw:dear_friend",
    }


def test_save_load_round_trip(
    small_model: SpamModel, small_model_dir: Path, tmp_path: Path
) -> None:
    manifest = json.loads((small_model_dir / "manifest.json").read_text())
    assert manifest["kind"] == small_model.kind and manifest["sha256"]
    assert manifest["training_data"]["messages"] == 1500
    assert manifest["feature_set_version"] and manifest["n_features"] == 2**20
    samples = [make_sample(parse(PERSONAL)), make_sample(parse(SPAMMY))]
    out = small_model.save(tmp_path / "copy", {"metrics": {"auc": 0.5}})
    again = SpamModel.load(out)
    assert again.version == small_model.version != ""
    assert np.allclose(again.predict_proba(samples), small_model.predict_proba(samples))
    assert json.loads((out / "manifest.json").read_text())["metrics"] == {"auc": 0.5}


@pytest.mark.parametrize("serving", [False, True])
def test_tampered_artifact_is_refused(small_model_dir: Path, tmp_path: Path, serving: bool) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(small_model_dir, bad)
    data = bytearray((bad / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match the manifest"):
        SpamModel.load(bad, serving=serving)
    with pytest.raises(ModelLoadError, match="not a mailsift model folder"):
        SpamModel.load(tmp_path / "nowhere", serving=serving)


@pytest.mark.parametrize("serving", [False, True])
def test_untrusted_type_is_refused(tmp_path: Path, serving: bool) -> None:
    """A correctly hashed skops file holding an unexpected type is still refused (by the
    serving reader too, which builds no estimator)."""
    import hashlib

    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    samples, y = _toy()
    m = SpamModel("nb", n_features=2**16).fit(samples, y)
    d = m.save(tmp_path / "m")
    sio.dump({"nb": m.nb_, "lr": RandomForestClassifier(), "stack": None}, d / "model.skops")
    man = json.loads((d / "manifest.json").read_text())
    man["sha256"] = hashlib.sha256((d / "model.skops").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match="trusted list"):
        SpamModel.load(d, serving=serving)


def test_heldout_accuracy_floor(
    small_model: SpamModel, corpus_messages, small_split, ruleset, test_settings
) -> None:
    """A sanity floor on messages the small model never saw (not a benchmark)."""
    _, raws, y = corpus_messages
    _, test = small_split
    samples = samples_of([raws[i] for i in test], test_settings, ruleset)
    p = small_model.predict_proba(samples)
    auc = roc_auc_score(y[test], p)
    fpr, tpr, _ = roc_curve(y[test], p)
    assert auc > 0.98, auc
    assert tpr[fpr <= 0.01].max() > 0.8


def test_train_model_uses_settings_kind(test_settings) -> None:
    samples, y = _toy()
    m = train_model(samples, y, "cnb", test_settings)
    assert m.kind == "cnb" and m.vectorizer.n_features == test_settings.model.n_features


@pytest.mark.parametrize("binary", [True, False])
def test_row_vectors_match_what_partial_fit_learns(binary: bool) -> None:
    from mailsift.classifier.model import Hyper

    samples, y = _toy()
    m = SpamModel("blend", n_features=2**16, hyper=Hyper(nb_binary=binary)).fit(samples, y)
    probe = Sample(("w:lunch", "w:lunch", "w:cheap"), ("st:size:0",))
    cols, nb_vals, lr_vals = m.row_vectors(probe)
    before = m.nb_.feature_count_[1].copy()
    m.partial_fit([probe], [1])
    delta = m.nb_.feature_count_[1] - before
    assert np.allclose(delta[cols], nb_vals)
    assert np.isclose(delta.sum(), nb_vals.sum())
    assert np.isclose(np.linalg.norm(lr_vals[: len(lr_vals) - 1]), 1.0)


def test_predict_explain_matches_separate_calls(small_model: SpamModel) -> None:
    for raw in (PERSONAL, SPAMMY):
        s = make_sample(parse(raw))
        prob, tokens, _ = small_model.predict_explain(s, top=10)
        assert prob == pytest.approx(float(small_model.predict_proba([s])[0]), abs=1e-12)
        assert tokens == small_model.explain(s, top=10)


@pytest.mark.parametrize("kind", KINDS)
def test_single_message_path_matches_batch(
    kind: str, corpus_messages, small_split, ruleset, test_settings
) -> None:
    """predict_explain / decision_function on one sample (no sparse matrices) == the batch
    path on several samples, for every kind, and after in-place updates of the arrays."""
    _, raws, y = corpus_messages
    train, test = small_split
    samples = samples_of([raws[i] for i in train[::4]], test_settings, ruleset)
    m = SpamModel(kind, n_features=2**18).fit(samples, y[train[::4]])
    probe = samples_of([raws[i] for i in test[:12]], test_settings, ruleset)
    for step in range(2):
        batch = m.predict_proba(probe)
        zb = m.decision_function(probe)
        for s, p, z in zip(probe, batch, zb, strict=True):
            prob, _, _ = m.predict_explain(s, top=5)
            assert prob == pytest.approx(p, abs=1e-9)
            assert float(m.decision_function([s])[0]) == pytest.approx(z, rel=1e-9, abs=1e-9)
        # feedback-style in-place updates must be seen by the next call
        if m.nb_ is not None:
            m.nb_.feature_log_prob_[1] += 0.01 * np.sign(m.nb_.feature_log_prob_[1]) * step + 0.3
        if m.lr_ is not None:
            m.lr_.coef_[0] *= 1.5


def test_explanation_weights_of_rules_match_feature_weights(small_model: SpamModel) -> None:
    s = make_sample(parse(SPAMMY), ["HTML_ONLY"])
    _, contribs, factor = small_model.predict_explain(s, top=100000)
    by_name = {c.token: c.weight for c in contribs}
    w = small_model.feature_weights(["rule:HTML_ONLY"], nb_factor=factor)
    assert by_name["rule:HTML_ONLY"] == pytest.approx(float(w[0]), abs=1e-4)


def test_blend_has_a_rules_structure_model_and_it_survives_save_load(tmp_path: Path) -> None:
    from mailsift.classifier.model import Hyper

    samples, y = _toy()
    m = SpamModel("blend", n_features=2**16).fit(samples, y)
    assert m.meta_ is not None and m.stack_ is not None and m.stack_.coef_.shape == (1, 3)
    loaded = SpamModel.load(m.save(tmp_path / "m"))
    assert loaded.meta_ is not None
    assert np.allclose(loaded.predict_proba(samples), m.predict_proba(samples))
    w = loaded.feature_weights(["rule:HTML_ONLY", "w:cheap"], nb_factor=1.0)
    assert w.shape == (2,)
    plain = SpamModel("blend", n_features=2**16, hyper=Hyper(meta_c=0)).fit(samples, y)
    assert plain.meta_ is None and plain.stack_ is not None and plain.stack_.coef_.shape == (1, 2)


@pytest.mark.parametrize("kind", ["nb", "cnb", "blend"])
@pytest.mark.parametrize("serving", [False, True])
def test_tokens_no_training_message_held_are_no_naive_bayes_evidence(
    kind: str, serving: bool, tmp_path: Path
) -> None:
    samples, y = _toy()
    fitted = SpamModel(kind, n_features=2**16).fit(samples, y)
    base = Sample(("w:lunch", "w:cheap", "s:re"), ("st:size:0",))
    novel = Sample((*base.tokens, "w:zq-never-1", "w:zq-never-2", "w:zq-never-3"), base.meta)
    m = SpamModel.load(fitted.save(tmp_path / "m"), serving=serving)
    nb_b, nb_n = (m._nb_logit(*m._blocks([s])) for s in (base, novel))
    assert np.allclose(nb_b, nb_n)  # the batch path
    p_base, p_novel = m.predict_explain(base)[0], m.predict_explain(novel)[0]
    if kind != "blend":  # logreg sees the novel tokens too (they dilute the L2 norm)
        assert p_base == pytest.approx(p_novel, abs=1e-12)
    nbw, _, _ = m._weight_parts(["w:zq-never-1", "w:lunch"])
    assert nbw[0] == 0.0 and nbw[1] != 0.0
    # once learnt, a token is evidence
    m.partial_fit([Sample(("w:zq-never-1", "w:zq-never-2"), ())] * 3, [1, 1, 1])
    assert (m._nb_logit(*m._blocks([novel])) > m._nb_logit(*m._blocks([base]))).all()


def test_a_model_saved_before_unseen_tokens_were_neutral_keeps_its_behaviour(
    tmp_path: Path,
) -> None:
    samples, y = _toy()
    out = SpamModel("nb", n_features=2**16).fit(samples, y).save(tmp_path / "m")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["hyper"]["nb_unseen_neutral"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    old = SpamModel.load(out)
    assert old.hyper.nb_unseen_neutral is False
    base = Sample(("w:lunch", "w:cheap"), ())
    novel = Sample((*base.tokens, "w:zq-never-1"), ())
    assert not np.allclose(old.decision_function([base]), old.decision_function([novel]))
