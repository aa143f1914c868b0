"""Helpers of the store tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_in_threads(target: Callable[..., None], args: Iterable[tuple[Any, ...]]) -> None:
    """`target` in one thread per tuple of `args`, all started before any is waited for, so
    they run at once; returns when all have finished."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
