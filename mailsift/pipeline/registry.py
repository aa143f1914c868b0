"""Model registry: MLflow model versions, the champion alias, the promotion gate.

A trained model is one folder (``model.skops`` + ``manifest.json``, written by
``SpamModel.save``). Each ``train`` run logs that folder as the run's ``model`` artifacts
and registers it as a version of ``settings.mlflow.registered_model`` (source = the run's
artifact folder; tag ``local_dir`` = where ``train`` wrote it). Nothing is pickled:
loading goes through ``SpamModel.load`` (skops, sha256-checked manifest).

Promotion (:func:`promote`): a version becomes the champion (alias
``settings.mlflow.champion_alias``) only if it is no worse than the current champion on each
of ``settings.mlflow.gate_metrics`` (``-name``: lower is better), within
``settings.mlflow.gate_tolerance``, both models evaluated on the same held-out messages (the
challenger's held-out split, logged by its training run, or a corpus given by the caller),
and on the figures each model's training measured out of source (``oos_*``: each source of
the training mail predicted by parts trained on the others; see ``SpamModel.fit``), so a
model that only fits its own corpus better is not promoted. The decision and the figures are logged as an MLflow run and as tags of the version.

Serving (:func:`serving_model_dir`): ``settings.model.path`` when set, else the champion's
local folder (:func:`resolve_serving_model_dir`), else ``settings.default_model_dir`` when it
holds a model this mailsift can serve, else :class:`NoModelError`. The scorer is handed the folder
(``Scorer.from_model_dir``): the classifier itself never asks the registry.

A champion this mailsift cannot serve (trained on another feature set, after an upgrade, or
of an unknown kind: :func:`incompatibility`) is passed over by serving, with a warning, and
any new version replaces it at promotion (the gate cannot score a model it cannot load).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailsift.config import Settings
from mailsift.pipeline import tracking

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
HELDOUT_ARTIFACT = "heldout/heldout.csv"

Evaluator = Callable[[Path], dict[str, float]]


class NoModelError(RuntimeError):
    """No trained model could be found for serving."""


@dataclass(slots=True)
class GateResult:
    promoted: bool
    reason: str
    version: str
    previous: str | None  # the champion's version before the decision
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def incompatibility(path: Path) -> str | None:
    """Why this mailsift cannot serve the model in ``path`` (from its manifest), or None."""
    from mailsift.classifier import model as model_mod

    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    fs = manifest.get("feature_set_version")
    if fs != model_mod.FEATURE_SET_VERSION:
        return (
            f"trained on feature set {fs!r}, this mailsift uses {model_mod.FEATURE_SET_VERSION!r}"
        )
    if manifest.get("kind") not in model_mod.KINDS:
        return f"unknown model kind {manifest.get('kind')!r}"
    return None


# ---- the gate (pure) -----------------------------------------------------------------------

OOS_PREFIX = "oos_"
# in an evaluation: the held-out mail was in the model's training mail (a refit on all)
IN_SAMPLE = "heldout_in_training"


def gate(
    challenger: dict[str, float],
    champion: dict[str, float],
    metrics: list[str],
    tolerance: float = 0.0,
) -> tuple[bool, list[dict[str, Any]]]:
    """Is ``challenger`` no worse than ``champion`` on every gate metric (within tolerance)?

    A metric named ``-x`` is "lower is better" for ``x``. Returns (passed, per-metric checks).
    When either evaluation is marked ``IN_SAMPLE`` (a model refit on all its mail scored the
    held-out split it was fitted on), the held-out metrics measure fit, not what a model
    does on unseen mail: they are reported and skipped, and the out-of-source ones decide
    (with none compared, the challenger fails: nothing shows it is no worse).
    """
    checks: list[dict[str, Any]] = []
    passed = True
    in_sample = bool(challenger.get(IN_SAMPLE) or champion.get(IN_SAMPLE))
    for spec in metrics:
        lower_better = spec.startswith("-")
        name = spec.lstrip("-+")
        if in_sample and not name.startswith(OOS_PREFIX):
            checks.append(
                {
                    "metric": name,
                    "better": "lower" if lower_better else "higher",
                    "challenger": challenger.get(name),
                    "champion": champion.get(name),
                    "ok": True,
                    "skipped": "the held-out mail is in a refit model's training mail",
                }
            )
            continue
        if name.startswith(OOS_PREFIX) and (name not in champion or name not in challenger):
            # out-of-source figures come from training (a blend's stacker). A champion
            # without them (trained before they were kept, or of a kind that has none) has
            # nothing to compare; a challenger without them next to a champion with them
            # fails: it cannot show it travels as well.
            ok = name not in champion
            checks.append(
                {
                    "metric": name,
                    "better": "lower" if lower_better else "higher",
                    "challenger": challenger.get(name),
                    "champion": champion.get(name),
                    "ok": ok,
                    "skipped": "no out-of-source figures to compare" if ok else None,
                }
            )
            passed = passed and ok
            continue
        if name not in challenger or name not in champion:
            raise KeyError(f"gate metric {name!r} missing from the evaluation")
        new, old = float(challenger[name]), float(champion[name])
        ok = new <= old + tolerance if lower_better else new >= old - tolerance
        checks.append(
            {
                "metric": name,
                "better": "lower" if lower_better else "higher",
                "challenger": new,
                "champion": old,
                "ok": ok,
            }
        )
        passed = passed and ok
    if in_sample and all(c.get("skipped") for c in checks):
        # nothing measured on mail either model did not fit: no evidence for the challenger
        checks.append(
            {
                "metric": "out-of-source figures",
                "better": None,
                "challenger": None,
                "champion": None,
                "ok": False,
                "skipped": None,
            }
        )
        passed = False
    return passed, checks


# ---- registration --------------------------------------------------------------------------


def _client(settings: Settings) -> Any:
    return tracking.configure(settings)


def _mlflow_store_exists(settings: Settings) -> bool:
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def register_model(
    client: Any,
    settings: Settings,
    run_id: str,
    local_dir: Path,
    tags: dict[str, str] | None = None,
) -> str:
    """Register the run's ``model`` artifacts as a new version; returns the version number."""
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="mailsift spam model (skops artifact + manifest)"
        )
    run = client.get_run(run_id)
    source = run.info.artifact_uri.rstrip("/") + "/model"
    all_tags = {"local_dir": str(local_dir.resolve())}
    all_tags.update(tags or {})
    mv = client.create_model_version(name, source, run_id=run_id, tags=all_tags)
    return str(mv.version)


def champion_version(settings: Settings, client: Any | None = None) -> Any | None:
    """The champion ModelVersion, or None (no store yet, no model, no alias)."""
    from mlflow.exceptions import MlflowException

    if client is None:
        if not _mlflow_store_exists(settings):
            return None
        client = _client(settings)
    try:
        return client.get_model_version_by_alias(
            settings.mlflow.registered_model, settings.mlflow.champion_alias
        )
    except MlflowException:
        return None


def model_dir_for_version(settings: Settings, version: Any, client: Any | None = None) -> Path:
    """A local folder holding this version's model: its ``local_dir`` if intact, else a
    download of its artifacts into ``<var_dir>/cache/models/<name>-v<N>``."""
    import mlflow

    local = Path(version.tags.get("local_dir", "")) if version.tags.get("local_dir") else None
    if local is not None and is_model_dir(local) and _same_manifest(local, version, client):
        return local
    dest = settings.paths.var_dir / "cache" / "models" / f"{version.name}-v{version.version}"
    if is_model_dir(dest):
        return dest
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp)))
    if not is_model_dir(got):
        raise FileNotFoundError(
            f"model version {version.version}: no {MANIFEST} in {version.source}"
        )
    if got != tmp:
        shutil.move(str(got), str(dest))
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(dest)
    return dest


def _same_manifest(local: Path, version: Any, client: Any | None) -> bool:
    """The local folder still holds the registered model (its manifest sha matches)."""
    want = version.tags.get("manifest_sha256")
    if not want:
        return True
    return _sha256(local / MANIFEST) == want


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_serving_model_dir(settings: Settings) -> Path | None:
    """The champion's local artifact folder, else ``settings.default_model_dir`` if present;
    either only when this mailsift can serve it (:func:`incompatibility`)."""
    if settings.model.path is not None:
        return settings.model.path if is_model_dir(settings.model.path) else None
    try:
        mv = champion_version(settings)
        if mv is not None:
            d = model_dir_for_version(settings, mv)
            why = incompatibility(d)
            if why is None:
                return d
            log.warning(
                "champion v%s cannot be served (%s); falling back to %s",
                mv.version,
                why,
                settings.default_model_dir,
            )
    except Exception as e:  # a broken store must not stop serving the default model
        log.warning(
            "MLflow champion unavailable (%s); falling back to %s", e, settings.default_model_dir
        )
    default = settings.default_model_dir
    if not is_model_dir(default):
        return None
    why = incompatibility(default)
    if why is not None:  # e.g. after an upgrade: `make run` then trains a new default
        log.warning("the default model %s cannot be served (%s)", default, why)
        return None
    return default


def serving_model_dir(settings: Settings) -> Path:
    """settings.model.path, else the registry's champion, else models/default; else an error."""
    if settings.model.path is not None:
        return Path(settings.model.path)
    resolved = resolve_serving_model_dir(settings)
    if resolved is None:
        raise NoModelError("no trained model: run `mailsift train` or `make run`")
    return resolved


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version, newest first, with aliases and key metrics."""
    from mlflow.exceptions import MlflowException

    if not _mlflow_store_exists(settings):
        return []
    client = _client(settings)
    name = settings.mlflow.registered_model
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    try:
        for alias, v in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(v), []).append(alias)
    except MlflowException:
        aliases = {}
    out: list[dict[str, Any]] = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(client.get_run(mv.run_id).data.metrics)
            except MlflowException:
                metrics = {}
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "source": mv.source,
                "local_dir": mv.tags.get("local_dir"),
                "kind": mv.tags.get("kind"),
                "promotion": mv.tags.get("promotion"),
                "created": mv.creation_timestamp,
                "metrics": {
                    k: v
                    for k, v in metrics.items()
                    if k in ("one_minus_roca_pct", "recall_at_fpr_0.001", "roc_auc", "fpr", "fnr")
                },
            }
        )
    return out


def get_version(settings: Settings, version: str) -> Any:
    client = _client(settings)
    return client.get_model_version(settings.mlflow.registered_model, str(version))


# ---- promotion -----------------------------------------------------------------------------


def heldout_evaluator(settings: Settings, run_id: str) -> Evaluator:
    """Score a model folder on the held-out split logged by training run ``run_id``."""
    import mlflow
    import pandas as pd

    from mailsift.pipeline.evaluate import evaluate_model_dir

    with tracking.scratch_dir() as d:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=HELDOUT_ARTIFACT, dst_path=str(d)
        )
        df = pd.read_csv(path, keep_default_na=False)
    df["offset"] = df["offset"].astype("int64")
    df["size"] = df["size"].astype("int64")

    def run(model_dir: Path) -> dict[str, float]:
        out = {**evaluate_model_dir(model_dir, df, settings).flat(), **out_of_source(model_dir)}
        if refit_on_all(model_dir):
            out[IN_SAMPLE] = 1.0
        return out

    return run


def refit_on_all(model_dir: Path) -> bool:
    """Was the model fitted again on all its mail, held-out split included, once evaluated
    (``mailsift train --default``)? Then any held-out split of its corpora is in-sample."""
    try:
        return bool(json.loads((Path(model_dir) / MANIFEST).read_text()).get("refit_on_all"))
    except (OSError, ValueError):
        return False


def out_of_source(model_dir: Path) -> dict[str, float]:
    """The figures a model's training measured on mail from sources its parts did not train
    on (``out_of_fold`` in the manifest, when it was out-of-source), as ``oos_<name>``."""
    try:
        oof = json.loads((Path(model_dir) / MANIFEST).read_text()).get("out_of_fold") or {}
    except (OSError, ValueError):
        return {}
    if not oof.get("out_of_source"):
        return {}
    return {
        OOS_PREFIX + k: float(v)
        for k, v in oof.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def promote(
    settings: Settings,
    version: str,
    *,
    evaluator: Evaluator | None = None,
    force: bool = False,
) -> GateResult:
    """Make ``version`` the champion if it passes the gate against the current champion.

    ``evaluator(model_dir) -> metrics`` scores a model on the held-out data; by default the
    held-out split of the challenger's own training run. The decision is logged to MLflow
    (a ``promote`` run with both models' figures) and as tags of the version.
    """
    client = _client(settings)
    name = settings.mlflow.registered_model
    alias = settings.mlflow.champion_alias
    mv = client.get_model_version(name, str(version))
    cur = champion_version(settings, client)
    previous = None if cur is None else str(cur.version)
    result = GateResult(promoted=False, reason="", version=str(mv.version), previous=previous)
    if cur is not None and str(cur.version) == str(mv.version):
        result.promoted, result.reason = True, "already the champion"
        return result
    stale = None if cur is None else incompatibility(model_dir_for_version(settings, cur, client))
    if stale is not None and not force:
        # the gate cannot score a champion this mailsift cannot load; serving passes it over
        result.promoted = True
        result.reason = f"champion v{previous} cannot be served by this mailsift ({stale})"
        if evaluator is None and mv.run_id:
            evaluator = heldout_evaluator(settings, mv.run_id)
        if evaluator is not None:
            result.challenger = evaluator(model_dir_for_version(settings, mv, client))
        client.set_registered_model_alias(name, alias, str(mv.version))
        _log_decision(client, settings, mv, result)
        log.info("promotion of v%s: %s (%s)", mv.version, result.promoted, result.reason)
        return result
    if evaluator is None and cur is not None and not force:
        if not mv.run_id:
            raise ValueError(f"version {version} has no training run to take held-out data from")
        evaluator = heldout_evaluator(settings, mv.run_id)
    if cur is None:
        result.promoted, result.reason = True, "no champion yet"
        if evaluator is not None:
            result.challenger = evaluator(model_dir_for_version(settings, mv, client))
    elif force:
        result.promoted, result.reason = True, "forced"
    else:
        assert evaluator is not None
        result.challenger = evaluator(model_dir_for_version(settings, mv, client))
        result.champion = evaluator(model_dir_for_version(settings, cur, client))
        passed, result.checks = gate(
            result.challenger,
            result.champion,
            settings.mlflow.gate_metrics,
            settings.mlflow.gate_tolerance,
        )
        result.promoted = passed
        failed = [c["metric"] for c in result.checks if not c["ok"]]
        result.reason = (
            f"no worse than champion v{previous} on {', '.join(c['metric'] for c in result.checks)}"
            if passed
            else f"worse than champion v{previous} on {', '.join(failed)}"
        )
    if result.promoted:
        client.set_registered_model_alias(name, alias, str(mv.version))
    _log_decision(client, settings, mv, result)
    log.info("promotion of v%s: %s (%s)", mv.version, result.promoted, result.reason)
    return result


def _log_decision(client: Any, settings: Settings, mv: Any, result: GateResult) -> None:
    exp_id = tracking.experiment_id(client, settings)
    run = client.create_run(
        exp_id,
        run_name=f"promote-v{mv.version}",
        tags={
            "mailsift.kind": "promotion",
            "model_version": str(mv.version),
            "previous_champion": result.previous or "",
            "decision": "promoted" if result.promoted else "rejected",
            "reason": result.reason,
        },
    )
    rid = run.info.run_id
    client.log_param(rid, "gate_metrics", ",".join(settings.mlflow.gate_metrics))
    client.log_param(rid, "gate_tolerance", settings.mlflow.gate_tolerance)
    for prefix, metrics in (("challenger_", result.challenger), ("champion_", result.champion)):
        for k, v in metrics.items():
            client.log_metric(rid, prefix + k.replace("@", "_"), float(v))
    client.log_metric(rid, "promoted", 1.0 if result.promoted else 0.0)
    client.log_text(rid, json.dumps(result.to_dict(), indent=2), "promotion.json")
    client.set_terminated(rid)
    decision = "promoted" if result.promoted else "rejected"
    client.set_model_version_tag(mv.name, mv.version, "promotion", f"{decision}: {result.reason}")
