"""train(): MLflow run (params, metrics, plots, held-out index, model), registration,
the promotion gate (worse refused, equal/better promoted, decision logged), serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mailsift.classifier.model import SpamModel
from mailsift.pipeline import registry
from mailsift.pipeline.corpus import index_corpus
from mailsift.pipeline.evaluate import evaluate_model_dir
from mailsift.pipeline.extract import extract
from mailsift.pipeline.train import train
from tests.pipeline import fixtures as F
from tests.pipeline.conftest import make_settings


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path):
    tmp = tmp_path_factory.mktemp("reg")
    settings = make_settings(tmp, small_corpus)
    first = train([small_corpus], "nb", None, settings, promote=True)
    return tmp, settings, first


def _client(settings) -> MlflowClient:
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def test_train_logs_a_full_mlflow_run(env) -> None:
    tmp, settings, r = env
    assert r.split["split"] == "time" and r.split["test_messages"] == 16
    assert (r.model_dir / "manifest.json").is_file() and (r.model_dir / "model.skops").is_file()
    assert r.model_dir.parent == settings.paths.models_dir
    model = SpamModel.load(r.model_dir)
    assert model.version == r.model_version
    manifest = json.loads((r.model_dir / "manifest.json").read_text())
    assert manifest["training_data"]["messages"] == 80
    run = _client(settings).get_run(r.run_id)
    assert run.data.params["kind"] == "nb" and run.data.params["split"] == "time"
    assert run.data.metrics["one_minus_roca_pct"] == pytest.approx(r.metrics.one_minus_roca_pct)
    assert "recall_at_fpr_0.001" in run.data.metrics and "fit_s" in run.data.metrics
    arts = {a.path for a in _client(settings).list_artifacts(r.run_id)}
    assert {"plots", "heldout", "model", "train_result.json"} <= arts
    plots = {a.path for a in _client(settings).list_artifacts(r.run_id, "plots")}
    assert plots == {"plots/roc.png", "plots/precision_recall.png"}
    d = mlflow.artifacts.download_artifacts(
        run_id=r.run_id,
        artifact_path="plots/roc.png",
        tracking_uri=settings.mlflow_tracking_uri,
        dst_path=str(tmp / "dl"),
    )
    assert Path(d).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.registered_version == "1"
    assert (
        r.promotion is not None and r.promotion.promoted and r.promotion.reason == "no champion yet"
    )
    assert registry.resolve_serving_model_dir(settings) == r.model_dir.resolve()


def test_the_smtp_filter_serves_the_champion_without_importing_mlflow(env) -> None:
    """``serve smtp`` asks the registry for the champion in a child process, as the API
    workers do: the filter serves the champion, and MLflow (with the pandas it imports)
    never enters its own process."""
    import subprocess
    import sys

    from mailsift.process import settings_env

    _, settings, r = env
    code = (
        "import sys\n"
        "from mailsift.commands.smtp import build_server\n"
        "from mailsift.config import get_settings\n"
        "server = build_server(get_settings())\n"
        "print(server.scoring.service.model_version, "
        "'mlflow' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [r.model_version, "False", "False"]


def test_equal_model_is_promoted_worse_is_not(env, tmp_path: Path, small_corpus: Path) -> None:
    _, settings, _first = env
    # same data, same kind, same seed: an equal model passes the held-out gate
    again = train([small_corpus], "nb", tmp_path / "again", settings)
    res = registry.promote(settings, again.registered_version)
    assert res.promoted, res.reason
    assert all(c["ok"] for c in res.checks)
    assert {c["metric"] for c in res.checks} == {
        "one_minus_roca_pct",
        "recall_at_fpr_0.001",
        "oos_one_minus_roca_pct",  # naive Bayes alone keeps no out-of-source figures: skipped
    }
    assert str(registry.champion_version(settings).version) == again.registered_version

    # labels swapped: a model that learnt spam as ham, gated on the true corpus
    swapped = tmp_path / "swapped"
    F.labelled(
        swapped, [("ham" if lb == "spam" else "spam", m) for lb, m in F.make_messages(20, 30)]
    )
    bad = train([swapped], "nb", tmp_path / "bad", settings)
    truth = index_corpus(small_corpus)
    res = registry.promote(
        settings,
        bad.registered_version,
        evaluator=lambda d: evaluate_model_dir(d, truth, settings).flat(),
    )
    assert not res.promoted and "worse than champion" in res.reason
    assert res.challenger["one_minus_roca_pct"] > res.champion["one_minus_roca_pct"]
    assert str(registry.champion_version(settings).version) == again.registered_version

    # the decisions are logged: a promotion run per decision, and a tag on each version
    client = _client(settings)
    mv = client.get_model_version(settings.mlflow.registered_model, bad.registered_version)
    assert mv.tags["promotion"].startswith("rejected")
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`mailsift.kind` = 'promotion'")
    decisions = {r.data.tags["model_version"]: r.data.tags["decision"] for r in runs}
    assert decisions[bad.registered_version] == "rejected"
    assert decisions[again.registered_version] == "promoted"
    rejected = next(r for r in runs if r.data.tags["model_version"] == bad.registered_version)
    assert rejected.data.metrics["promoted"] == 0.0
    assert "challenger_one_minus_roca_pct" in rejected.data.metrics
    rows = registry.list_versions(settings)
    assert [r["version"] for r in rows][:1] == [bad.registered_version]
    assert (
        "champion" in next(r for r in rows if r["version"] == again.registered_version)["aliases"]
    )


def test_serving_falls_back_to_artifacts_then_default(tmp_path: Path, small_corpus: Path) -> None:
    settings = make_settings(tmp_path, small_corpus)
    assert registry.resolve_serving_model_dir(settings) is None  # nothing yet, no store made
    assert not (tmp_path / "var" / "mlflow.db").exists()
    r = train([small_corpus], "nb", tmp_path / "m1", settings, promote=True)
    shutil.rmtree(r.model_dir)  # local folder gone: the registry's artifacts are fetched
    got = registry.resolve_serving_model_dir(settings)
    assert got is not None and got.is_relative_to(tmp_path / "var")
    assert SpamModel.load(got).version == r.model_version
    other = make_settings(tmp_path / "other")
    assert registry.resolve_serving_model_dir(other) is None
    shutil.copytree(got, other.default_model_dir)
    assert registry.resolve_serving_model_dir(other) == other.default_model_dir


def test_a_champion_from_an_older_feature_set_is_passed_over_and_replaced(
    tmp_path: Path, small_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade that changed the feature set: serving falls back to the default
    model instead of failing, and the next trained version replaces the old champion."""
    from mailsift.classifier import model as model_mod

    settings = make_settings(tmp_path, small_corpus)
    current = model_mod.FEATURE_SET_VERSION
    with monkeypatch.context() as m:  # a model written by an older mailsift
        m.setattr(model_mod, "FEATURE_SET_VERSION", "0-older")
        old = train([small_corpus], "nb", tmp_path / "old", settings, promote=True)
    assert json.loads((old.model_dir / "manifest.json").read_text())["feature_set_version"] == (
        "0-older"
    )
    assert str(registry.champion_version(settings).version) == old.registered_version
    why = registry.incompatibility(old.model_dir)
    assert why is not None and "0-older" in why and current in why
    assert registry.resolve_serving_model_dir(settings) is None  # no usable default either
    shutil.copytree(old.model_dir, settings.default_model_dir)
    # the default folder is as stale as the champion: nothing is servable (`make run` then
    # trains a new default instead of starting a server that cannot load it)
    assert registry.resolve_serving_model_dir(settings) is None
    with pytest.raises(registry.NoModelError):
        registry.serving_model_dir(settings)

    new = train([small_corpus], "nb", tmp_path / "new", settings, promote=True)
    assert new.promotion is not None and new.promotion.promoted
    assert new.promotion.reason.startswith(f"champion v{old.registered_version} cannot be served")
    assert new.promotion.challenger  # still scored on its held-out split, and logged
    assert str(registry.champion_version(settings).version) == new.registered_version
    assert SpamModel.load(registry.resolve_serving_model_dir(settings)).version == (
        new.model_version
    )


def test_extra_messages_join_training(tmp_path: Path, small_corpus: Path) -> None:
    settings = make_settings(tmp_path, small_corpus)
    extra = [(F.message(500 + i, "spam"), "spam") for i in range(5)]
    r = train([small_corpus], "nb", tmp_path / "m", settings, extra=extra, register=False)
    assert r.extra_messages == 5 and r.run_id is None
    manifest = json.loads((r.model_dir / "manifest.json").read_text())
    assert manifest["training_data"]["extra_messages"] == 5


def test_parallel_extraction_matches_serial(tmp_path: Path, small_corpus: Path) -> None:
    settings = make_settings(tmp_path, small_corpus)
    df = index_corpus(small_corpus)
    serial = extract(df, settings, n_jobs=1)
    assert extract(df, settings, n_jobs=2) == serial
    # time order is not storage order: samples still come back in the index's order
    shuffled = df.sample(frac=1.0, random_state=1)
    cache: dict = {}
    got = extract(shuffled.iloc[:30], settings, cache=cache)
    assert len(cache) == 30
    assert extract(shuffled, settings, cache=cache) == [serial[i] for i in shuffled.index]
    assert len(cache) == len(df) and got == [serial[i] for i in shuffled.index[:30]]


def test_gate_compares_out_of_source_figures_too() -> None:
    metrics = ["-one_minus_roca_pct", "-oos_one_minus_roca_pct"]
    champion = {"one_minus_roca_pct": 0.05, "oos_one_minus_roca_pct": 1.0}
    # better on its own corpus's held-out mail, worse on mail from other sources: refused
    fits_own = {"one_minus_roca_pct": 0.03, "oos_one_minus_roca_pct": 1.4}
    passed, checks = registry.gate(fits_own, champion, metrics)
    assert not passed and [c["ok"] for c in checks] == [True, False]
    travels = {"one_minus_roca_pct": 0.05, "oos_one_minus_roca_pct": 0.8}
    assert registry.gate(travels, champion, metrics)[0]
    # a challenger without out-of-source figures cannot show it travels as well
    passed, checks = registry.gate({"one_minus_roca_pct": 0.01}, champion, metrics)
    assert not passed and checks[1]["challenger"] is None
    # a champion without them (an older model) has nothing to compare: that check is skipped
    passed, checks = registry.gate(travels, {"one_minus_roca_pct": 0.05}, metrics)
    assert passed and checks[1]["skipped"]


def test_gate_skips_held_out_figures_a_refit_model_was_fitted_on(tmp_path: Path) -> None:
    metrics = ["-one_minus_roca_pct", "recall_at_fpr_0.001", "-oos_one_minus_roca_pct"]
    # both refit on all their mail: the held-out split is in-sample for both (a perfect
    # champion there says nothing); the out-of-source figures decide
    champion = {
        "one_minus_roca_pct": 0.0,
        "recall_at_fpr_0.001": 1.0,
        "oos_one_minus_roca_pct": 1.4,
        registry.IN_SAMPLE: 1.0,
    }
    better = {
        "one_minus_roca_pct": 0.002,
        "recall_at_fpr_0.001": 0.99,
        "oos_one_minus_roca_pct": 1.3,
        registry.IN_SAMPLE: 1.0,
    }
    passed, checks = registry.gate(better, champion, metrics)
    assert passed and [bool(c.get("skipped")) for c in checks] == [True, True, False]
    worse = {**better, "oos_one_minus_roca_pct": 1.5}
    passed, checks = registry.gate(worse, champion, metrics)
    assert not passed and [c["ok"] for c in checks] == [True, True, False]
    # one side in-sample is enough: a refit champion against a challenger that held out
    plain = {k: v for k, v in better.items() if k != registry.IN_SAMPLE}
    assert registry.gate(plain, champion, metrics)[0]
    # neither: held-out figures count as before
    plain_champion = {k: v for k, v in champion.items() if k != registry.IN_SAMPLE}
    assert not registry.gate(plain, plain_champion, metrics)[0]
    # in-sample and no out-of-source figures on either side: nothing shows it is no worse
    bare = ["-one_minus_roca_pct", "recall_at_fpr_0.001"]
    passed, checks = registry.gate(better, champion, bare)
    assert not passed and checks[-1]["metric"] == "out-of-source figures"
    no_oos = {k: v for k, v in champion.items() if not k.startswith("oos_")}
    assert not registry.gate(better, no_oos, metrics)[0]
    # the mark comes from the manifest
    (tmp_path / "manifest.json").write_text('{"refit_on_all": true}')
    assert registry.refit_on_all(tmp_path)
    (tmp_path / "manifest.json").write_text('{"refit_on_all": false}')
    assert not registry.refit_on_all(tmp_path)
    assert not registry.refit_on_all(tmp_path / "missing")


def test_out_of_source_figures_come_from_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        '{"out_of_fold": {"out_of_source": true, "one_minus_roca_pct": 1.5, "ham_at_spam": 0.01}}'
    )
    assert registry.out_of_source(tmp_path) == {
        "oos_one_minus_roca_pct": 1.5,
        "oos_ham_at_spam": 0.01,
    }
    # shuffled folds of the same mail are no out-of-source figures
    (tmp_path / "manifest.json").write_text(
        '{"out_of_fold": {"out_of_source": false, "one_minus_roca_pct": 0.1}}'
    )
    assert registry.out_of_source(tmp_path) == {}
