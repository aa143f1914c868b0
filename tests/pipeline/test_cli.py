"""`mailsift train / evaluate / evaluate --online / models / corpus` end to end (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailsift.pipeline.corpus import index_corpus
from mailsift.pipeline.evaluate import evaluate_online
from mailsift.pipeline.split import time_order
from tests.pipeline.conftest import drift_corpus, make_settings

MAILSIFT = str(Path(sys.executable).parent / "mailsift")


def _env(tmp: Path, corpus: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MAILSIFT_PATHS__VAR_DIR": str(tmp / "var"),
            "MAILSIFT_PATHS__MODELS_DIR": str(tmp / "models"),
            "MAILSIFT_CORPUS": str(corpus),
            "MAILSIFT_RULES__USE_STOCK": "false",
            "MAILSIFT_RULES__CACHE_DIR": str(tmp / "rules-cache"),
            "MAILSIFT_MODEL__N_FEATURES": str(2**16),
            "MAILSIFT_TRAIN__N_JOBS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    env.pop("MAILSIFT_CONFIG", None)
    env.pop("MAILSIFT_MODEL", None)
    return env


def _run(
    args: list[str], env: dict[str, str], cwd: Path, ok: bool = True
) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [MAILSIFT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """Run `mailsift ARGS` in this process (typer's runner) with the given environment."""
    from typer.testing import CliRunner

    from mailsift.cli import app
    from mailsift.config import get_settings

    def run(args: list[str], env: dict[str, str], code: int = 0):
        for k, v in env.items():
            if k.startswith(("MAILSIFT_", "MLFLOW_")):
                monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        res = CliRunner().invoke(app, args, catch_exceptions=False)
        assert res.exit_code == code, res.output
        return res

    yield run
    get_settings.cache_clear()


def test_cli_train_default_evaluate_models(tmp_path: Path, small_corpus: Path, cli) -> None:
    env = _env(tmp_path, small_corpus)
    # the console script, as `make run` calls it
    assert _run(["models", "serving"], env, tmp_path, ok=False).returncode == 1
    p = _run(["train", "--default", "--model", "nb", "--json"], env, tmp_path)
    res = json.loads(p.stdout)
    assert res["model_dir"] == str(tmp_path / "models" / "default")
    assert res["registered_version"] == "1" and res["promotion"]["promoted"] is True
    assert res["metrics"]["one_minus_roca_pct"] >= 0
    monkeypatch_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        served = cli(["models", "serving"], env).stdout.strip()
        assert served == str((tmp_path / "models" / "default").resolve())

        ev = json.loads(cli(["evaluate", "--corpus", str(small_corpus), "--json"], env).stdout)
        assert ev["n"] == 80 and ev["n_spam"] == 27
        for key in (
            "roc_auc",
            "one_minus_roca_pct",
            "recall_at_fpr_0.001",
            "recall_at_fpr_0.01",
            "fpr",
            "fnr",
            "confusion",
            "messages_per_s",
        ):
            assert key in ev
        assert ev["model"] == served

        plain = cli(["evaluate", "-c", str(small_corpus), "--model", res["model_dir"]], env)
        assert "1-ROCA%" in plain.stdout and "recall@0.1%FPR" in plain.stdout

        rows = json.loads(cli(["models", "list", "--json"], env).stdout)
        assert rows[0]["version"] == "1" and rows[0]["aliases"] == ["champion"]
        show = json.loads(cli(["models", "show", "champion"], env).stdout)
        assert show["manifest"]["kind"] == "nb"

        # a second run, promoted through the gate on the corpus
        out = cli(
            ["train", "-c", str(small_corpus), "-m", "nb", "--out", str(tmp_path / "m2")], env
        )
        assert "registered version 2" in out.stdout
        pr = cli(["models", "promote", "2", "--corpus", str(small_corpus)], env)
        assert "v2: promoted" in pr.stdout and "one_minus_roca_pct" in pr.stdout

        idx = json.loads(cli(["corpus", "index", str(small_corpus)], env).stdout)
        assert idx["messages"] == 80 and idx["spam"] == 27
    finally:
        os.chdir(monkeypatch_cwd)


def test_cli_errors_are_clear(tmp_path: Path, small_corpus: Path, cli) -> None:
    env = _env(tmp_path, small_corpus)
    r = cli(["train", "--corpus", str(tmp_path / "missing")], env, code=2)
    assert "does not exist" in r.stderr
    r = cli(["corpus", "fetch", "--dest", str(tmp_path / "dl")], env, code=2)
    assert "cannot download" in r.stderr  # this machine is offline


def test_online_feedback_learns_a_new_campaign(tmp_path: Path) -> None:
    corpus = drift_corpus(tmp_path / "drift")
    settings = make_settings(tmp_path, corpus)
    df = time_order(index_corpus(corpus))
    res = evaluate_online(df, settings, kind="nb", warmup=0.3)
    assert res.warmup == 36 and len(res.labels) == 84
    # the new campaign's vocabulary is unknown to the static model; feedback learns it
    assert res.with_feedback.roc_auc >= res.without_feedback.roc_auc
    assert res.with_feedback.fnr < res.without_feedback.fnr / 4
    assert res.with_feedback.accuracy > res.without_feedback.accuracy
    d = res.to_dict()
    assert d["protocol"] == "warm-up + feedback" and d["learner"]


def test_cli_online_is_trec_immediate_feedback(tmp_path: Path, cli) -> None:
    """Every message in date order, duplicates kept, no warm-up; from nothing or a model."""
    corpus = drift_corpus(tmp_path / "drift", n=60)
    for i, f in enumerate(sorted((corpus / "ham").iterdir())[:3]):  # exact copies: kept
        shutil.copy(f, corpus / "ham" / f"copy-{i}.eml")
    env = _env(tmp_path, corpus)
    r = cli(["evaluate", "--online", "-c", str(corpus)], env, code=2)
    assert "--base-model" in r.output
    p = cli(["evaluate", "--online", "-c", str(corpus), "--empty", "--json"], env)
    d = json.loads(p.stdout)
    assert d["protocol"] == "trec-immediate-feedback" and d["warmup_messages"] == 0
    assert d["evaluated_messages"] == 63 and d["start"] == "empty"
    assert d["without_feedback"] is None and d["with_feedback"]["roc_auc"] > 0.8
    cli(["train", "-c", str(corpus), "-m", "nb", "--out", str(tmp_path / "m")], env)
    p = cli(
        ["evaluate", "--online", "-c", str(corpus), "--base-model", str(tmp_path / "m"), "--json"],
        env,
    )
    d = json.loads(p.stdout)
    assert d["evaluated_messages"] == 63 and d["start"] == "model"
    assert d["with_feedback"]["one_minus_roca_pct"] <= d["without_feedback"]["one_minus_roca_pct"]


@pytest.mark.parametrize("arg", ["eggs:/tmp"])
def test_unknown_label_prefix_is_a_path(arg: str) -> None:
    from mailsift.pipeline.corpus import CorpusError, parse_spec

    with pytest.raises(CorpusError, match="does not exist"):
        parse_spec(arg)
