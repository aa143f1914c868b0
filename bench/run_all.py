"""Run every benchmark in turn (`make bench`), each as its own process.

Each bench prints its own Markdown table and the exact command; this runner only sequences
them and reports which failed. Pass bench names to run a subset:
``python -m bench.run_all rules score``.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES: dict[str, list[str]] = {
    "rules": ["-m", "bench.bench_rules"],
    "score": ["-m", "bench.bench_score", "--gc-freeze"],
    "accuracy": [
        "-m",
        "bench.bench_accuracy",
        "--folds",
        "5",
        "--sa-folds",
        "1",
        "--sa-test",
        "600",
    ],
    "feedback": ["-m", "bench.bench_feedback"],
    "api": ["-m", "bench.bench_api"],
    "smtp": ["-m", "bench.bench_smtp", "--also-unscored"],
    "checks": ["-m", "bench.bench_checks", "--sessions", "200", "--concurrency", "20"],
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown bench(es): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    failed: list[str] = []
    for name in names:
        cmd = [sys.executable, *BENCHES[name]]
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        rc = subprocess.call(cmd)
        print(f"=== {name}: exit {rc} after {time.monotonic() - started:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
