"""Helpers of the store tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from mailsift.store import VerdictRecord


def run_in_threads(target: Callable[..., None], args: Iterable[tuple[Any, ...]]) -> None:
    """`target` in one thread per tuple of `args`, all started before any is waited for, so
    they run at once; returns when all have finished."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def verdict_record(vid: str) -> VerdictRecord:
    """A spam verdict with two rule hits, for the tests that write verdicts."""
    return VerdictRecord(
        verdict_id=vid,
        digest="d" * 64,
        score=2.5,
        probability=0.7,
        action="spam",
        model_version="m1",
        recipients=("bob@example.org",),
        sender="a@bad.test",
        rules=[("HTML_MESSAGE", 0.5), ("BAYES_99", 3.5)],
    )
