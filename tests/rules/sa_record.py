"""Recording what SpamAssassin 4.0.1 answers for the hand-written agreement cases
(``*_cases.py``): each message through ``spamc -y`` to a ``spamd -L`` on 127.0.0.1:PORT, the
rules a case module is about kept, written to its JSON under ``data/``. Recording is done
once, by hand; the tests read the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Collection
from pathlib import Path


def spamc_hits(raw: bytes, port: int) -> set[str]:
    """The rules SpamAssassin reports for ``raw``."""
    res = subprocess.run(
        ["spamc", "-p", str(port), "-y"], input=raw, capture_output=True, check=True
    )
    return set(res.stdout.decode().strip().split(","))


def record_hits(
    cases: Callable[[], dict[str, bytes]], rules: Collection[str], data: Path, port: int
) -> None:
    """Each case's hits among ``rules``, written to ``data``."""
    out = {name: sorted(spamc_hits(raw, port) & set(rules)) for name, raw in cases().items()}
    data.write_text(json.dumps({"spamassassin": "4.0.1", "hits": out}, indent=1) + "\n")


def main(doc: str | None, record: Callable[[int], None]) -> None:
    """``python -m tests.rules.X_cases --record PORT``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        record(int(sys.argv[2]))
    else:
        sys.exit(doc)
