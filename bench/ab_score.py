"""Scoring speed of two checkouts, measured at the same time so they share the host's noise.

    .venv/bin/python -m bench.ab_score A B [--passes 6] [--n 1000] [--swaps 2]
    .venv/bin/python -m bench.ab_score A B --instructions [--n 300]

``A`` and ``B`` are checkouts of mailsift (``A`` is the reference), each with its own
trained model in ``models/default`` (``--model-a`` / ``--model-b`` otherwise) and its own
rules cache. On a shared machine one run's throughput swings by tens of percent from one
minute to the next; two runs one after the other compare the host's minutes as much as
the code. Here both checkouts score at once, each in its own process pinned to its own core
(``taskset``), then the cores are swapped (``--swaps`` times in all), and each process
scores the same ``--n`` corpus messages ``--passes`` times after a warm-up (``Scorer.score``
as a worker runs it, ``gc.freeze()`` after loading). Printed per run: each pass's CPU
milliseconds per message of each checkout; and over all runs, each checkout's median and
best pass and B's change against A on both. A checkout's own code is what runs: each
process starts in its checkout's folder with only that folder ahead of the installed
packages; the measuring code below uses only what every mailsift has (``load_settings``,
``load_rules``, ``Scorer``, ``SpamModel.load``, ``load_messages``).

``--instructions`` counts instead of timing: each checkout runs under valgrind's callgrind
twice, once loading and warming up only and once scoring ``--n`` messages more (one pass),
and the difference of the two instruction counts, per message, is printed for each. A count
does not see cache misses or the host's noise: it changes only when the work does. It takes
minutes (callgrind runs Python about fifty times slower); ``--n 300`` is plenty.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROBE = """
import gc, json, sys, time
sys.path.insert(0, '.')
from pathlib import Path
import numpy as np
from mailsift.config import load_settings
from mailsift.classifier.model import SpamModel
from mailsift.classifier.scorer import Scorer, load_rules
from mailsift.pipeline.corpus import load_messages
model, n, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = load_settings()
scorer = Scorer(SpamModel.load(Path(model), serving=True), load_rules(settings), settings)
_, raws, _ = load_messages(Path(settings.paths.corpus))
pick = np.random.default_rng(1).choice(len(raws), size=min(n + 50, len(raws)), replace=False)
warm, msgs = [raws[i] for i in pick[:50]], [raws[i] for i in pick[50:]]
for raw in warm:
    scorer.score(raw)
gc.freeze()
out = []
for _ in range(passes if msgs else 0):
    t = time.thread_time()
    for raw in msgs:
        scorer.score(raw)
    out.append((time.thread_time() - t) * 1000.0 / len(msgs))
print(json.dumps(out))
"""


def _run_pair(
    trees: list[Path], models: list[Path], cores: list[int], args: argparse.Namespace
) -> list[list[float]]:
    procs = []
    for tree, model, core in zip(trees, models, cores, strict=True):
        cmd = [sys.executable, "-c", PROBE, str(model), str(args.n), str(args.passes)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(core), *cmd]
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(tree))
        procs.append(subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a probe failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _instructions(tree: Path, model: Path, n: int) -> int:
    """Instructions callgrind counts for one probe run of ``tree`` scoring ``n`` messages."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        PROBE,
        str(model),
        str(n),
        "1",
    ]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(tree))
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed (exit {p.returncode}): {p.stderr[-500:]}")
    return int(m.group(1))


def _count(trees: list[Path], models: list[Path], n: int) -> int:
    """Both checkouts' instruction counts per message, the four runs two at a time."""
    jobs = [(t, m, k) for t, m in zip(trees, models, strict=True) for k in (0, n)]
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        counts = list(pool.map(lambda j: _instructions(*j), jobs))
    per = [(counts[1] - counts[0]) / n, (counts[3] - counts[2]) / n]
    for name, tree, v in zip("AB", trees, per, strict=True):
        print(f"{name} {tree}: {v / 1e6:.2f} million instructions per message")
    print(
        f"B against A: {100 * (per[1] / per[0] - 1):+.1f}% instructions per message ({n} messages)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--model-a", type=Path)
    ap.add_argument("--model-b", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--swaps", type=int, default=2)
    ap.add_argument("--instructions", action="store_true", help="count with callgrind instead")
    args = ap.parse_args(argv)
    trees = [args.a.resolve(), args.b.resolve()]
    models = [
        (args.model_a or trees[0] / "models" / "default").resolve(),
        (args.model_b or trees[1] / "models" / "default").resolve(),
    ]
    if args.instructions:
        return _count(trees, models, args.n)
    ncpu = os.cpu_count() or 1
    passes: list[list[float]] = [[], []]
    for run in range(args.swaps):
        cores = [0, 1 % ncpu] if run % 2 == 0 else [1 % ncpu, 0]
        a, b = _run_pair(trees, models, cores, args)
        passes[0] += a
        passes[1] += b
        print(f"run {run + 1} (A on core {cores[0]}, B on core {cores[1]}), ms per message:")
        print("  A " + " ".join(f"{v:.3f}" for v in a))
        print("  B " + " ".join(f"{v:.3f}" for v in b))
    med = [statistics.median(p) for p in passes]
    best = [min(p) for p in passes]
    print(f"A {trees[0]}: median {med[0]:.3f} ms, best {best[0]:.3f} ms per message")
    print(f"B {trees[1]}: median {med[1]:.3f} ms, best {best[1]:.3f} ms per message")
    print(
        f"B against A: median {100 * (med[1] / med[0] - 1):+.1f}%, "
        f"best {100 * (best[1] / best[0] - 1):+.1f}% CPU per message "
        f"({len(passes[0])} passes each, {args.n} messages)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
