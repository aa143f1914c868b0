"""The scoring routes answer byte for byte as recorded in ``tests/api/golden/answers.json``
(see ``tests.api.golden``): status, headers and body of every case, the OpenAPI document
included. With ``MAILSIFT_RECORD_GOLDEN=1`` the answers are written there instead."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from mailsift.api.app import create_app
from mailsift.api.keys import ApiKeys
from mailsift.config import Settings
from mailsift.service import ScoringService
from mailsift.store import open_store_for
from tests.api import golden
from tests.fixtures.api import api_test_settings, running


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, test_settings: Settings, small_model_dir: Path
) -> Iterator[tuple[Settings, ScoringService, dict[str, str]]]:
    var = tmp_path_factory.mktemp("golden-var")
    settings = api_test_settings(
        test_settings,
        var,
        small_model_dir,
        max_body_bytes=golden.LIMIT,
        max_batch=golden.MAX_BATCH,
    )
    store = open_store_for(settings)
    service = ScoringService(settings, store=store)
    keys = ApiKeys(store, 0.0)
    tokens = {s: keys.create(f"golden-{s}", s)[1] for s in ("score", "feedback", "admin")}
    try:
        yield settings, service, tokens
    finally:
        service.close()
        store.close()
        gc.unfreeze()  # the app's start-up froze what was alive then


def _apps(settings: Settings, service: ScoringService) -> dict[str, FastAPI]:
    """Every way the app answers the scoring routes (the answers were recorded from two: a
    fast path and the FastAPI route, which agreed; one route answers them now)."""
    return {"app": create_app(settings, service)}


async def test_answers_are_the_recorded_bytes(
    served: tuple[Settings, ScoringService, dict[str, str]],
) -> None:
    settings, service, keys = served
    got: dict[str, dict[str, Any]] = {}
    for name, app in _apps(settings, service).items():
        async with running(app) as client:
            got[name] = await golden.answers(client, keys, service.model_version)
    first, *others = got.values()
    for other in others:  # the ways agree among themselves, case by case
        for case in golden.CASES:
            assert other[case.name] == first[case.name], case.name
    if os.environ.get(golden.RECORD_ENV) == "1":
        golden.save(first)
        return
    recorded = golden.load()
    assert list(recorded) == [case.name for case in golden.CASES]
    for name, answers in got.items():
        for case in golden.CASES:
            assert answers[case.name] == recorded[case.name], (name, case.name)
