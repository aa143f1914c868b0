"""Every environment variable the README documents, set for a real ``mailsift`` command in a
subprocess: the short aliases (``MAILSIFT_MODEL``, ``MAILSIFT_CORPUS``), ``MAILSIFT_CONFIG``
and ``MAILSIFT_<BLOCK>__<FIELD>``. ``MAILSIFT_MODEL`` is also the name of the ``model``
block's JSON variable: pydantic-settings alone read a folder name there as JSON and every
command died before doing anything."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mailsift.config import ENV_ALIASES, PROJECT_ROOT
from tests.fixtures.process import MAILSIFT

HAM = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n"
SPAM = b"From: x@spam.test\r\nTo: b@example.org\r\nSubject: WIN\r\n\r\nCheap pills, act now!\r\n"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    cfg = tmp / "mailsift.toml"
    cfg.write_text(
        "[rules]\nuse_stock = false\n"
        f'cache_dir = "{PROJECT_ROOT / "var" / "test-cache" / "rules"}"\n'
        f'[paths]\nmodels_dir = "{tmp / "no-models"}"\n'
    )
    env.update(
        {
            "MAILSIFT_CONFIG": str(cfg),
            "MAILSIFT_PATHS__VAR_DIR": str(tmp / "var"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONPATH": str(PROJECT_ROOT),  # this tree's package, wherever it is installed
        }
    )
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILSIFT, *args], env=env, capture_output=True, text=True, timeout=240, cwd=env["HOME"]
    )


def test_the_documented_aliases_are_exactly_these() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for var in ENV_ALIASES:
        assert f"`{var}`" in readme
    assert set(ENV_ALIASES) == {"MAILSIFT_MODEL", "MAILSIFT_CORPUS"}


def test_mailsift_model_names_the_model_folder(tmp_path: Path, small_model_dir: Path) -> None:
    msg = tmp_path / "ham.eml"
    msg.write_bytes(HAM)
    home = {"HOME": str(tmp_path)}
    # the reference: the same folder given on the command line
    ref = _run(
        _env(tmp_path, **home), "score", "--jsonl", "--model", str(small_model_dir), str(msg)
    )
    assert ref.returncode in (0, 1), ref.stderr[-2000:]
    want = json.loads(ref.stdout)["model_version"]
    assert want
    # MAILSIFT_MODEL alone (no model in models_dir, no registry): it is what gets loaded,
    # next to a field of the same block set by its long name
    env = _env(tmp_path, MAILSIFT_MODEL=str(small_model_dir), MAILSIFT_MODEL__SEED="7", **home)
    p = _run(env, "score", "--jsonl", str(msg))
    assert p.returncode in (0, 1), p.stderr[-2000:]
    assert json.loads(p.stdout)["model_version"] == want
    p = _run(env, "models", "serving")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == str(small_model_dir)
    # a folder that holds no model is named in a clear error, not a settings traceback
    env["MAILSIFT_MODEL"] = str(tmp_path / "missing")
    p = _run(env, "score", "--jsonl", str(msg))
    assert p.returncode == 2
    assert "SettingsError" not in p.stderr and "Traceback" not in p.stderr


def test_mailsift_corpus_names_the_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for label, raw, n in (("spam", SPAM, 3), ("ham", HAM, 5)):
        (corpus / label).mkdir(parents=True)
        for i in range(n):
            (corpus / label / f"{i}.eml").write_bytes(
                raw + f"Message number {i} of a {label} batch.\r\n".encode()
            )
    env = _env(
        tmp_path, MAILSIFT_CORPUS=str(corpus), MAILSIFT_MODEL=str(tmp_path), HOME=str(tmp_path)
    )
    p = _run(env, "corpus", "index")
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout[p.stdout.index("{") :])
    assert (summary["spam"], summary["ham"]) == (3, 5)
