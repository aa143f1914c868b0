"""Shared test set-up. Fixture modules per area live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

pytest_plugins: list[str] = [
    "tests.fixtures.dns",
    "tests.fixtures.clamd",
    "tests.fixtures.store",
    "tests.fixtures.model",
    "tests.fixtures.smtp",
    "tests.fixtures.api",
]
