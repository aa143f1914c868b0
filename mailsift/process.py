"""Process helpers of the serving commands (API workers, the SMTP filter, spamd, the milter):
keeping a worker's memory small, resolving the serving model in a child process, and the
environment that rebuilds a process's settings in a child.

Keeping an API worker's memory small (the resident set of each worker).

Where a worker's memory goes (VmRSS, default blend model, stock SpamAssassin rules):
Python + FastAPI + pydantic + uvicorn + psycopg ~50 MB, numpy ~12 MB, the model's arrays
~45 MB (a 2**20 + 2**16 column hashed feature space, float64: NB counts and
log-probabilities 2 x 17.8 MB, logistic weights 8.9 MB; loading leaves ~50 MB of freed
heap behind, given back by :func:`trim_heap`), the compiled rules ~45 MB (Hyperscan
databases 34 MB), per-message caches ~15 MB. Not in it: scikit-learn (~70 MB: it imports
``scipy.stats``, and pandas and pyarrow, ~63 MB more, only because they are installed),
skops (~15 MB) and scipy (``scipy.sparse`` ~13 MB): a worker loads the model with
``SpamModel.load(..., serving=True)``, which reads the fitted arrays without them, scores
one message at a time without sparse matrices, and hashes features with ``mmh3``
(``mailsift.classifier.features.hash_columns``). They are imported only if the worker
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
- :func:`settings_env` turns a Settings object into environment variables (one JSON value
  per block, ``MAILSIFT_<BLOCK>``), so a child process builds exactly the same settings.
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

from mailsift.config import ENV_ALIASES, Settings

log = logging.getLogger(__name__)

# short environment aliases of mailsift.config (they name one field, not a block)
ALIASES = tuple(ENV_ALIASES)

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


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables that rebuild ``settings`` in a child process: one JSON value per
    block (``MAILSIFT_API={...}``), or one variable per field for a block whose name is also
    a short alias (``MAILSIFT_MODEL__PATH``). The other variables are those of ``base``
    (default: this process's environment) without any ``MAILSIFT_*`` (and without
    ``MAILSIFT_CONFIG``: the settings are all in the environment) or
    ``PROMETHEUS_MULTIPROC_DIR``; MLflow's telemetry is off."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if not k.startswith("MAILSIFT_")}
    for name in type(settings).model_fields:
        block = getattr(settings, name).model_dump(mode="json")
        if f"MAILSIFT_{name.upper()}" in ALIASES:  # e.g. MAILSIFT_MODEL means model.path
            for fld, value in block.items():
                if value is not None:
                    env[f"MAILSIFT_{name.upper()}__{fld.upper()}"] = (
                        value if isinstance(value, str) else json.dumps(value)
                    )
        else:
            env[f"MAILSIFT_{name.upper()}"] = json.dumps(block)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("MAILSIFT_CONFIG", None)
    return env
