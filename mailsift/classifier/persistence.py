"""Model artifacts: ``model.skops`` + ``manifest.json`` in one folder, never a pickle.

- ``model.skops``: the base estimators as a dict (``skops.io``), written to a temporary
  file and renamed into place, so a reader never sees half a file.
- ``manifest.json``: the sha256 of ``model.skops``, version, kind, feature sizes, training
  summary, thresholds and metrics (written by ``SpamModel.save``).

Reading refuses a model file whose sha256 is not the manifest's (:func:`read_verified`) and
any file whose skops schema names a type outside :data:`TRUSTED_TYPES` (checked on the
schema before skops builds anything: skops itself would trust any scikit-learn estimator).
Two readers of a verified file:

- :func:`load_estimators`: the scikit-learn estimators (skops, trusted types only), for
  training further and for saving;
- :func:`load_serving`: only the fitted arrays (:mod:`mailsift.classifier.serving`), read
  from the file's schema and its ``.npy`` members with ``numpy.load`` without pickle, so a
  serving process imports neither skops nor scikit-learn. It declines (returns None) a part
  it cannot stand in for, and the caller then loads the estimators.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mailsift.classifier.serving import ServingLinear, ServingNB

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"

# The only types model.skops may contain: every node of its schema is checked against this
# list before skops builds anything (skops itself would trust any scikit-learn estimator).
TRUSTED_TYPES = frozenset(
    {
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.naive_bayes.MultinomialNB",
        "sklearn.naive_bayes.ComplementNB",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
    }
)


class ModelLoadError(RuntimeError):
    """A model folder is missing, incomplete, tampered with or of an unknown kind."""


def write_state(state: dict[str, Any], directory: Path) -> str:
    """Write ``state`` (the base estimators) as ``directory/model.skops`` (the folder is
    created; the file replaced atomically); returns the file's sha256."""
    import skops.io as sio

    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkstemp(dir=directory, prefix=".model-", suffix=".skops")[1])
    try:
        sio.dump(state, tmp, compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        digest = _sha256(tmp)
        tmp.chmod(0o644)  # mkstemp makes it 0600; a model is no secret
        os.replace(tmp, directory / MODEL_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``directory/manifest.json`` (replaced atomically)."""
    _atomic_write(
        directory / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str)
    )


def read_manifest(directory: Path) -> tuple[dict[str, Any], Path]:
    """(the manifest, the model file's path) of a model folder; ModelLoadError unless the
    folder holds both files and the manifest is JSON."""
    mpath, fpath = directory / MANIFEST_FILE, directory / MODEL_FILE
    if not mpath.is_file() or not fpath.is_file():
        raise ModelLoadError(
            f"{directory}: not a mailsift model folder (needs {MANIFEST_FILE} and {MODEL_FILE})"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{mpath}: unreadable manifest: {exc}") from exc
    return manifest, fpath


def read_verified(fpath: Path, expected: object) -> tuple[bytes, str]:
    """The model file's bytes, refused unless their sha256 is the manifest's."""
    try:
        data = fpath.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{fpath}: unreadable: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ModelLoadError(
            f"{fpath}: sha256 {digest[:16]}... does not match the manifest "
            f"({str(expected)[:16]}...): refusing a modified model file"
        )
    return data, digest


def load_estimators(data: bytes, fpath: Path) -> dict[str, Any]:
    """The scikit-learn estimators of a verified file (skops, trusted types only)."""
    import skops.io as sio

    _check_trusted(data, fpath)
    try:
        untrusted = sio.get_untrusted_types(data=data)
        state = sio.loads(data, trusted=[t for t in untrusted if t in TRUSTED_TYPES])
    except Exception as exc:
        raise ModelLoadError(f"{fpath}: cannot load model: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"{fpath}: unexpected content")
    return state


def load_serving(data: bytes, fpath: Path) -> dict[str, Any] | None:
    """The base models' fitted arrays of a verified file, read from its schema and ``.npy``
    members (``numpy.load`` without pickle): {"nb": ServingNB, "lr"/"stack"/"meta":
    ServingLinear or None}. None when a part is not one the serving path can stand in for
    (the caller then loads the estimators)."""
    _check_trusted(data, fpath)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
            if schema.get("__loader__") != "DictNode":
                raise ModelLoadError(f"{fpath}: unexpected content")
            out: dict[str, Any] = {}
            for key, node in schema.get("content", {}).items():
                if key not in ("nb", "lr", "stack", "meta"):
                    return None
                if node.get("__loader__") == "JsonNode" and json.loads(node["content"]) is None:
                    out[key] = None
                    continue
                cls_name = node.get("__class__")
                if node.get("__loader__") != "ObjectNode" or not isinstance(cls_name, str):
                    return None
                attrs = _serving_attrs(zf, node)
                if cls_name in ServingNB.KINDS and key == "nb":
                    if attrs.get("class_prior", "?") is not None:  # must be a JSON null
                        return None
                    out[key] = ServingNB(attrs, complement=cls_name == "ComplementNB")
                elif cls_name in ServingLinear.KINDS and key != "nb":
                    out[key] = ServingLinear(attrs)
                else:
                    return None
    except ModelLoadError:
        raise
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{fpath}: cannot load model: {exc}") from exc
    except (KeyError, ValueError, TypeError) as exc:  # a shape this reader does not know
        log.info("%s: serving reader declined (%s); loading the estimators", fpath, exc)
        return None
    return out


def _serving_attrs(zf: zipfile.ZipFile, node: dict[str, Any]) -> dict[str, Any]:
    """An estimator node's plain attributes: JSON values and numeric ``.npy`` arrays (other
    node kinds, e.g. SGD's loss object, are left out: serving does not read them)."""
    attrs: dict[str, Any] = {}
    for name, child in node["content"]["content"].items():
        loader = child.get("__loader__")
        if loader == "JsonNode":
            attrs[name] = json.loads(child["content"])
        elif loader == "NdArrayNode" and child.get("type") == "numpy":
            with zf.open(child["file"]) as fh:
                arr = np.load(fh, allow_pickle=False)
            if arr.dtype.kind not in "biuf":  # e.g. string class labels
                raise ValueError(f"{name}: {arr.dtype} array")
            attrs[name] = arr
    return attrs


def _check_trusted(data: bytes, fpath: Path) -> None:
    """Refuse a skops file naming any type outside :data:`TRUSTED_TYPES`."""
    unexpected = sorted(_skops_types(data, fpath) - TRUSTED_TYPES)
    if unexpected:
        raise ModelLoadError(f"{fpath}: contains types outside the trusted list: {unexpected}")


def _skops_types(data: bytes, fpath: Path) -> set[str]:
    """Every ``module.Class`` named anywhere in a skops file's schema."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{fpath}: not a skops file: {exc}") from exc
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node:
                found.add(f"{node.get('__module__', '')}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
