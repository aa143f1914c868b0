"""Keeping an API worker's memory small (the resident set of each worker).

Where a worker's memory goes (VmRSS, default blend model, stock SpamAssassin rules):
Python + FastAPI + pydantic + uvicorn + psycopg ~50 MB, numpy ~12 MB, the model's arrays
~45 MB (a 2**20 + 2**16 column hashed feature space, float64: NB counts and
log-probabilities 2 x 17.8 MB, logistic weights 8.9 MB; loading leaves ~50 MB of freed
heap behind, given back by :func:`trim_heap`), the compiled rules ~45 MB (Hyperscan
databases 34 MB), per-message caches ~15 MB. Not in it: scikit-learn (~70 MB: it imports
``scipy.stats``, and pandas and pyarrow, ~63 MB more, only because they are installed),
skops (~15 MB) and scipy (``scipy.sparse`` ~13 MB): a worker loads the model with
``SpamModel.load(..., serving=True)``, which reads the fitted arrays without them, scores
one message at a time without sparse matrices, and hashes features with the package's own
murmurhash3 (``mailsift.classifier._hashing``). They are imported only if the worker
trains (``feedback.mode = "partial_fit"``) or scores a batch through the model at once;
MLflow (~90 MB) never is.

- :func:`lean_process` (called first thing in a uvicorn worker, before scikit-learn is
  imported) marks pandas, pyarrow, pytest and rich as not importable in that process, so
  optional imports skip them (should scikit-learn or skops be imported, they work without
  them), and caps glibc's malloc arenas at two (one per thread otherwise, each holding freed
  memory of its own).
- :func:`trim_heap` returns freed heap pages to the system (after the model is loaded).
- :func:`resolve_serving_model` asks the MLflow registry for the champion in a short-lived
  child process, so MLflow is never imported in the worker; the child dies with the
  process that started it (``mailsift.lifecycle``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from mailsift.config import Settings

log = logging.getLogger(__name__)

# optional dependencies of libraries a worker imports, which it never uses
UNUSED_IN_WORKER = ("pandas", "pyarrow", "pytest", "rich")
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc mallopt parameter

_RESOLVE = """
import json, sys
from mailsift.lifecycle import die_with_parent
die_with_parent(int(sys.argv[1]))
from mailsift.config import get_settings
from mailsift.pipeline.registry import serving_model_dir
print(json.dumps(str(serving_model_dir(get_settings()))))
"""


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def lean_process() -> None:
    """Set up a serving worker process for a small footprint (see the module docstring).
    Only for a process that serves: pandas cannot be imported in it afterwards."""
    for name in UNUSED_IN_WORKER:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _may_have_registry(settings: Settings) -> bool:
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def resolve_serving_model(settings: Settings) -> Path:
    """Where the serving model is (``serving_model_dir``), without importing MLflow here:
    ``settings.model.path`` when set, else the registry's answer from a child process,
    else (no registry, or the child failed) the answer of this process."""
    from mailsift.pipeline.registry import serving_model_dir

    if settings.model.path is not None or not _may_have_registry(settings):
        return serving_model_dir(settings)
    if "mlflow" in sys.modules:  # already paid for
        return serving_model_dir(settings)
    from mailsift.api.server import settings_env

    try:
        out = subprocess.run(
            [sys.executable, "-c", _RESOLVE, str(os.getpid())],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return Path(json.loads(out.stdout.strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
        log.warning("resolving the serving model in a child process failed: %s", exc)
        return serving_model_dir(settings)
