"""``mailsift serve spamd --workers 2`` follows the API's model reloads in every worker (real
processes, a SQLite store): the served model is re-pointed and the reload announced as
``POST /v1/models/reload`` announces it (``ModelSync.bump``: the var dir's generation file
and the store's generation); each worker loads the new model and logs it under its pid,
and spamc is answered throughout."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from mailsift.api.reload import ModelSync, generation_file
from mailsift.classifier.model import SpamModel
from mailsift.config import Settings
from mailsift.store import open_store_for
from tests.api import test_reload
from tests.spamd.conftest import PLAIN_HAM, SpamdProcess, spamc, spamd_test_settings

pytestmark = pytest.mark.integration

second_model_dir = test_reload.second_model_dir  # a module fixture: another model version
DEADLINE = 60.0  # the poll interval and a model load, with a wide margin on a busy machine


def test_every_spamd_worker_follows_a_reload(
    tmp_path: Path, test_settings: Settings, small_model_dir: Path, second_model_dir: Path
) -> None:
    served = tmp_path / "serving-model"
    served.symlink_to(small_model_dir.resolve(), target_is_directory=True)
    base = spamd_test_settings(test_settings, tmp_path / "var", served)
    settings = base.model_copy(
        update={"api": base.api.model_copy(update={"reload_poll_seconds": 0.2})}
    )
    new = str(SpamModel.load(second_model_dir).version)
    with SpamdProcess(settings, "--workers", "2") as proc:
        assert spamc(proc.port, "-c", input=PLAIN_HAM).returncode == 0
        store = open_store_for(settings)
        try:
            test_reload._point(served, second_model_dir)
            ModelSync(generation_file(settings.paths.var_dir), store=store).bump()
        finally:
            store.close()
        line = re.compile(r"mailsift\.service\[(\d+)\]: model reloaded: " + re.escape(new))
        deadline = time.monotonic() + DEADLINE
        pids: set[str] = set()
        while time.monotonic() < deadline and len(pids) < 2:
            pids = set(line.findall(proc.logs()))
            time.sleep(0.2)
        assert len(pids) == 2, proc.logs()[-3000:]
        assert str(proc.proc.pid) not in pids  # the workers reloaded, not the supervisor
        assert spamc(proc.port, "-c", input=PLAIN_HAM).returncode == 0
