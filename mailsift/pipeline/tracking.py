"""MLflow set-up: a local SQLite tracking store by default, any tracking URI otherwise.

``settings.mlflow_tracking_uri`` defaults to ``sqlite:///<var_dir>/mlflow.db`` (embedded,
offline) with artifacts under ``settings.mlflow_artifact_location``; a team points
``MAILSIFT_MLFLOW__TRACKING_URI`` at a shared MLflow server (database backend) instead.
Telemetry is always off. Plots are drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mailsift.config import Settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def configure(settings: Settings) -> Any:
    """Point MLflow at the configured store; create the experiment. Returns an MlflowClient."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = settings.mlflow.experiment
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = settings.mlflow_artifact_location
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
        client.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)
    return client


def experiment_id(client: Any, settings: Settings) -> str:
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    if exp is None:
        raise RuntimeError("MLflow experiment missing: call configure() first")
    return str(exp.experiment_id)


def plot_roc(curves: dict[str, tuple[Any, Any]], path: Path, title: str = "ROC") -> Path:
    """ROC curves (name -> (labels, scores)) on a log FPR axis, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        auc = roc_auc_score(y, s)
        ax.plot(fpr, tpr, label=f"{name} (1-ROCA% {100 * (1 - auc):.3f})")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.axvline(0.001, color="grey", lw=0.5, ls="--")
    ax.axvline(0.01, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("ham false-positive rate")
    ax.set_ylabel("spam recall")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_precision_recall(y: Any, s: Any, path: Path, title: str = "Precision-recall") -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    ap = average_precision_score(y, s)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.plot(recall, precision, label=f"AP {ap:.4f}")
    ax.set_xlabel("spam recall")
    ax.set_ylabel("spam precision")
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mailsift-mlflow-") as d:
        yield Path(d)
