"""What the mail-load benches (``smtp-source`` through mailsift into ``smtp-sink``) share: their
command line, the model they score with, the settings of an in-process scoring service, the
message they send, and waiting for the sink to hold every message. And what every bench that
reports JSON shares: ``run_stamp`` and ``print_results``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from mailsift.config import Settings


class RecipientSink(Protocol):
    def recipients(self) -> Counter[str]: ...


def load_args(prog: str, sessions: int, messages: int) -> argparse.ArgumentParser:
    """A parser with ``--sessions``, ``--messages`` and ``--model`` (default: serving)."""
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--sessions", type=int, default=sessions)
    ap.add_argument("--messages", type=int, default=messages)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: serving)")
    return ap


def need_tools(*tools: str) -> None:
    """Exit when one of Postfix's ``tools`` is missing; keep MLflow from phoning home."""
    for tool in tools:
        if not Path(tool).exists():
            sys.exit(f"{tool} missing: install Debian's postfix package")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def bench_model(base: Settings, given: Path | None, tmp: Path) -> tuple[Path, str]:
    """(model folder, what it is): ``given``, else the serving model, else a quick model
    trained into ``tmp/model``."""
    from bench.bench_smtp import quick_model
    from mailsift.pipeline.registry import resolve_serving_model_dir

    model_dir = given or resolve_serving_model_dir(base)
    note = "given model" if given else "serving model"
    if model_dir is None:
        note = "quick model (1,500 corpus messages; no serving model found)"
        model_dir = quick_model(base, tmp / "model")
    return Path(model_dir), note


def service_settings(base: Settings, tmp: Path, model_dir: Path) -> Settings:
    """``base`` for an in-process scoring service: var dir ``tmp/var`` (created) with its own
    SQLite store, the model ``model_dir``, the compiled rules cache of ``base``."""
    (tmp / "var").mkdir()
    return base.model_copy(
        update={
            "paths": base.paths.model_copy(update={"var_dir": tmp / "var"}),
            "store": base.store.model_copy(update={"url": ""}),
            "model": base.model.model_copy(update={"path": model_dir.resolve()}),
            "rules": base.rules.model_copy(update={"cache_dir": base.rules_cache_dir.resolve()}),
        }
    )


def load_message(settings: Settings, scorer: Any, tmp: Path) -> tuple[bytes, Path]:
    """The message a load sends (a median-size corpus ham ``scorer`` scores HAM) and the file
    ``tmp/message.eml`` that ``smtp-source`` reads it from."""
    from bench.bench_smtp import pick_message

    raw = pick_message(settings, scorer)
    msg_file = tmp / "message.eml"
    msg_file.write_bytes(raw)
    return raw, msg_file


def wait_arrived(sink: RecipientSink, want: int, timeout: float) -> Counter[str]:
    """The sink's recipients once it holds ``want`` messages, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    rc = sink.recipients()
    while sum(rc.values()) < want and time.monotonic() < deadline:
        time.sleep(0.1)
        rc = sink.recipients()
    return rc


def run_stamp() -> dict[str, Any]:
    """When the bench ran (UTC) and the machine's load averages at the start."""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
    }


def print_results(results: dict[str, Any], json_path: Path | None) -> None:
    """The results as indented JSON: printed, and written to ``json_path`` when given."""
    text = json.dumps(results, indent=2, default=str)
    if json_path:
        json_path.write_text(text)
    print(text)
