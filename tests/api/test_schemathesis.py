"""Fuzz the running API from its own OpenAPI schema (schemathesis, its CLI against the real
2-worker server on loopback, with an admin key so requests get past authentication): no
request may produce a 5xx, and every response must match the documented schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailsift.config import PROJECT_ROOT
from tests.fixtures.api import ApiServer

pytestmark = pytest.mark.integration

ST = str(Path(sys.executable).with_name("st"))


def test_schemathesis_finds_no_server_errors(api_server: ApiServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.st_hooks",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    cmd = [
        ST,
        "run",
        f"{api_server.base_url}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--header",
        f"Authorization: Bearer {api_server.admin_key}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "12",
        "--seed",
        "20261129",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-shrink",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    summary = out[out.rfind("SUMMARY") :]
    assert "Tested:" in summary and "generated" in summary, out[-3000:]
    for problem in ("Errors:", "Failures:", "Unresolvable references", "failed"):
        assert problem not in summary, out[-8000:]
