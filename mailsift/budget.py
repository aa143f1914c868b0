"""A per-message CPU-time budget for parsing and rules.

A message built to be slow (deep HTML, pathological regex input) must not hold a scoring
thread for seconds: the scorer starts a :class:`ScanBudget` per message, the rule engine asks
it between its stages, and once it is spent the remaining stages are skipped. The message is
scored on what was reached and its verdict carries the ``SCAN_BUDGET_EXCEEDED`` symbol.
The clock is this thread's CPU time (``time.thread_time``): time spent waiting for the CPU
on a busy host does not count against a message.
"""

from __future__ import annotations

import math
import time

SCAN_BUDGET_SYMBOL = "SCAN_BUDGET_EXCEEDED"


class ScanBudget:
    """CPU seconds one message may spend in parsing and rules (0 or less: unbounded)."""

    __slots__ = ("deadline", "exceeded", "limit", "stage")

    def __init__(self, seconds: float) -> None:
        self.limit = seconds
        self.deadline = time.thread_time() + seconds if seconds > 0 else math.inf
        self.exceeded = False
        self.stage = ""  # the stage after which the budget was found spent

    def spent(self, stage: str) -> bool:
        """True once the budget is spent (checked after ``stage``, which is remembered)."""
        if self.exceeded:
            return True
        if time.thread_time() > self.deadline:
            self.exceeded = True
            self.stage = stage
            return True
        return False
