"""`mailsift score`: files, directories, `-`, JSON lines, unreadable paths, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.classifier.messages import GTUBE_MESSAGE, PERSONAL

ROOT = Path(__file__).resolve().parents[2]


def run_inproc(args: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path | None = None):
    """The same command in this process (typer's runner): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from mailsift.cli import app

    monkeypatch.setenv("MAILSIFT_RULES__USE_STOCK", "false")
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, ["score", *args], catch_exceptions=False)


def run(
    args: list[str], stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILSIFT_RULES__USE_STOCK": "false"}
    return subprocess.run(
        [sys.executable, "-m", "mailsift.cli", "score", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=240,
    )


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mailbox")
    (d / "ham").mkdir()
    (d / "ham" / "personal.eml").write_bytes(PERSONAL)
    (d / "ham" / "nested").mkdir()
    (d / "ham" / "nested" / "again.eml").write_bytes(PERSONAL)
    (d / "gtube.eml").write_bytes(GTUBE_MESSAGE)
    return d


def test_file_dir_and_stdin_jsonl(small_model_dir: Path, mailbox: Path) -> None:
    ham_dir = str(mailbox / "ham")
    gtube = str(mailbox / "gtube.eml")
    missing = str(mailbox / "missing.eml")
    r = run(
        ["--model", str(small_model_dir), "--jsonl", ham_dir, "-"], stdin=f"{gtube}\n{missing}\n"
    )
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    paths = [rec["path"] for rec in lines]
    assert paths == [
        os.path.join(ham_dir, "personal.eml"),
        os.path.join(ham_dir, "nested", "again.eml"),
        gtube,
        missing,
    ] or paths == [
        os.path.join(ham_dir, "nested", "again.eml"),
        os.path.join(ham_dir, "personal.eml"),
        gtube,
        missing,
    ]
    by_path = {rec["path"]: rec for rec in lines}
    g = by_path[gtube]
    assert g["action"] == "reject" and g["score"] == 1.0
    for key in ("verdict_id", "points", "rules", "tokens", "model_version"):
        assert key in g
    h = by_path[os.path.join(ham_dir, "personal.eml")]
    assert h["action"] == "ham" and 0.0 <= h["score"] < 0.5
    assert "error" in by_path[missing] and "action" not in by_path[missing]
    assert r.returncode == 2  # an unreadable message is an error


def test_exit_codes_and_plain_output(small_model_dir: Path, mailbox: Path, monkeypatch) -> None:
    ham = run_inproc(
        ["--model", str(small_model_dir), str(mailbox / "ham" / "personal.eml")], monkeypatch
    )
    assert ham.exit_code == 0, ham.output
    path, action, prob, points, _rules = ham.stdout.strip().split("\t")
    assert path == str(mailbox / "ham" / "personal.eml") and action == "ham"
    assert 0.0 <= float(prob) < 0.5 and float(points) < 5.0
    spam = run_inproc(
        ["--model", str(small_model_dir), str(mailbox / "ham"), str(mailbox / "gtube.eml")],
        monkeypatch,
    )
    assert spam.exit_code == 1, spam.output
    assert len(spam.stdout.splitlines()) == 3
    relative = run_inproc(["--model", str(small_model_dir), "gtube.eml"], monkeypatch, cwd=mailbox)
    assert relative.stdout.startswith("gtube.eml\treject\t")


def test_usage_errors(tmp_path: Path, mailbox: Path, monkeypatch) -> None:
    bad_model = run_inproc(
        ["--model", str(tmp_path / "nope"), str(mailbox / "gtube.eml")], monkeypatch
    )
    assert bad_model.exit_code == 2 and "not a mailsift model folder" in bad_model.stderr
    no_args = run_inproc([], monkeypatch)
    assert no_args.exit_code == 2
    no_model = subprocess.run(
        [sys.executable, "-m", "mailsift.cli", "score", str(mailbox / "gtube.eml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={
            **os.environ,
            "MAILSIFT_PATHS__MODELS_DIR": str(tmp_path / "m"),
            "MAILSIFT_PATHS__VAR_DIR": str(tmp_path / "v"),
            "MAILSIFT_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/ml.db",
        },
    )
    assert no_model.returncode == 2
    assert "no trained model" in no_model.stderr
