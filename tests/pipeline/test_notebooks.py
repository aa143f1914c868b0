"""The notebooks run top to bottom (nbmake) on a small subset of the corpus, write nothing
into the repository, and are committed without outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_notebooks_have_no_outputs() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [b.name for b in books] == [
        "01_corpus_exploration.ipynb",
        "02_model_comparison.ipynb",
        "03_feedback_learning_curve.ipynb",
    ]
    for book in books:
        nb = json.loads(book.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, book.name


def test_notebooks_run_on_a_subset(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        {
            "MAILSIFT_NB_SUBSET": "200",
            "MAILSIFT_NB_VAR": str(tmp_path / "var"),
            "MAILSIFT_NB_KINDS": "nb,logreg",
            "MAILSIFT_RULES__USE_STOCK": "false",
            "MAILSIFT_TRAIN__N_JOBS": "1",
            "MAILSIFT_MODEL__N_FEATURES": str(2**16),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MPLBACKEND": "Agg",
        }
    )
    before = _snapshot(NOTEBOOKS)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbmake",
            "--rootdir",
            str(tmp_path),
            *map(str, sorted(NOTEBOOKS.glob("*.ipynb"))),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-2000:]
    assert "3 passed" in p.stdout
    assert _snapshot(NOTEBOOKS) == before  # nothing written next to the notebooks
    # the comparison notebook's MLflow store and models live in the temp var dir
    assert (tmp_path / "var" / "mlflow.db").is_file()
    assert (tmp_path / "var" / "models" / "nb" / "manifest.json").is_file()
