"""Model reload across API workers.

``POST /v1/models/reload`` reaches one worker. That worker reloads its own model (the
service loads the new model first and then swaps one reference, so requests in flight
finish on the model they started with) and then bumps a generation file,
``<var_dir>/run/model-generation``. Every worker runs a ``ModelSync`` thread that polls the
file (``settings.api.reload_poll_seconds``) and reloads when the generation changes, so all
workers serving one var dir follow within about that time.

Given the store, the generation is also written to the store (``store.generations``) and
polled from there: every node on a shared store (its API workers, its SMTP filter, its
milter) follows a reload made on any node. A store that cannot be read keeps the last
generation seen (no reload, no error beyond a log line).

A process makes its ``ModelSync`` before it loads its model and starts it once the model
serves: the generation it starts from is read first, so a reload announced while the model
loads (a worker starting or restarted while another node promotes a model) is followed. Read
after the load, that generation would be taken for the loaded model's, which may be the one
before it, served until the next reload.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailsift.api.logs import log_event

log = logging.getLogger(__name__)


def generation_file(var_dir: Path) -> Path:
    return var_dir / "run" / "model-generation"


GENERATION_KEY = "serving"


class ModelSync:
    """Polls the generation file (and the store's generation) in a daemon thread and calls
    ``reload`` on a change. The generation it starts from is read here: make it before the
    model is loaded (module docstring), then ``start(reload)``."""

    def __init__(self, path: Path, poll_seconds: float = 1.0, store: Any = None) -> None:
        self.path = path
        self.reload: Callable[[], object] | None = None
        self.poll_seconds = poll_seconds
        self.store = store
        self._shared = ""
        self._seen = self._read()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> str:
        try:
            local = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            local = ""
        if self.store is not None:
            try:
                self._shared = self.store.generations.get(GENERATION_KEY) or ""
            except Exception as exc:  # keep the last one seen
                log_event(log, "model generation unreadable", logging.WARNING, error=str(exc))
        return f"{local}|{self._shared}" if local or self._shared else ""

    def bump(self) -> str:
        """Announce a new model generation to the other workers (atomic replace) and, with a
        store, to every node on it."""
        generation = uuid.uuid4().hex
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(generation + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        if self.store is not None:
            self.store.generations.set(GENERATION_KEY, generation)
        self._seen = self._read()
        return generation

    def check(self) -> bool:
        """Reload when another worker bumped the generation; True when it did. Before
        ``start`` nothing is read: the change is left for the first check after it."""
        if self.reload is None:
            return False
        current = self._read()
        if not current or current == self._seen:
            return False
        self._seen = current
        log_event(log, "model generation changed: reloading", generation=current)
        try:
            self.reload()
        except Exception as exc:  # keep serving the model we have
            log_event(log, "model reload failed", logging.ERROR, error=str(exc))
        return True

    def start(self, reload: Callable[[], object]) -> None:
        """Call ``reload`` on every generation change from now on (polled in a thread)."""
        self.reload = reload
        if self.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="model-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
