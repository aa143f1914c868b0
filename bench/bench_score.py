"""Scoring bench: messages/s per core (parse + rules + model), model load time, process RSS.

    .venv/bin/python -m bench.bench_score [--model DIR] [--n 1000] [--no-stock-rules] [--json OUT]

* **Throughput**: N corpus messages (SpamAssassin archives, read into memory first) scored
  one after another in this process on one thread; per-stage CPU time (thread time: parse,
  rules, features, model probability alone, probability + explanation) and the whole ``Scorer.score`` path
  (wall clock and process CPU time); messages/s per core = messages / CPU seconds.
* **Model load**: ``SpamModel.load`` of the model folder, median of 3: as serving loads it
  (sha256 check + the fitted arrays, ``serving=True``: what is scored below) and with the
  scikit-learn estimators (sha256 check + skops; what training further needs).
* **Rules load**: ``load_ruleset`` with a warm Hyperscan cache.
* **RSS**: a fresh process that loads the serving Scorer (model for serving + rules) and
  reports its resident set size (VmRSS), and the same process before loading anything.

* **Verdict write** (``--record``): what recording a verdict costs a scoring request
  (``ScoringService.record``: the verdict row and the zlib sample, committed before the
  answer), on SQLite (``synchronous=FULL``) and PostgreSQL (``--pg``, a fresh database):
  one writer after another (the cost of one request alone) and 4 writers at once (group
  commit shares one commit among the writes that queued meanwhile).
* **Profile** (``--profile``): cProfile of ``Scorer.score`` over the messages, the top
  functions by cumulative and by own time.

The model is ``--model``, else the serving model (``mailsift.pipeline.registry.
serving_model_dir``; train one with ``mailsift train --default`` or ``make run``). Figures
are noisy on a shared 2-core machine: they say what was measured, when.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailsift.config import Settings, load_settings

RSS_PROBE = """
import json, os, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
before = rss()
from mailsift.config import load_settings
from mailsift.classifier.model import SpamModel
from mailsift.classifier.scorer import Scorer, load_rules
s = load_settings(rules={"use_stock": sys.argv[2] == "1"})
sc = Scorer(SpamModel.load(sys.argv[1], serving=True), load_rules(s), s)
sc.score(b"Subject: hello\\n\\nhello world\\n")
print(json.dumps({"rss_mb_before": round(before, 1), "rss_mb_loaded": round(rss(), 1)}))
"""


def _model_dir(settings: Settings, explicit: Path | None, tmp: Path) -> Path:
    from mailsift.pipeline.registry import NoModelError, serving_model_dir

    if explicit is not None:
        return explicit
    try:
        return serving_model_dir(settings)
    except NoModelError as exc:
        raise SystemExit(f"{exc} (or pass --model DIR)") from exc


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from mailsift.classifier.features import make_sample
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules, parse_with
    from mailsift.pipeline.corpus import load_messages

    settings = load_settings(rules={"use_stock": not args.no_stock_rules})
    assert settings.paths.corpus is not None, "set MAILSIFT_CORPUS"
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    model_dir = _model_dir(settings, args.model, tmp)

    loads: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for serving in (False, True):
            t = time.perf_counter()
            model = SpamModel.load(model_dir, serving=serving)
            loads[serving].append(time.perf_counter() - t)
    t = time.perf_counter()
    rules = load_rules(settings)
    rules_load = time.perf_counter() - t
    scorer = Scorer(model, rules, settings)

    _, raws, _ = load_messages(Path(settings.paths.corpus))
    rng = np.random.default_rng(1)
    pick = rng.choice(len(raws), size=min(args.n, len(raws)), replace=False)
    msgs = [raws[i] for i in pick]
    for raw in msgs[:20]:  # warm caches (PSL, regex, hyperscan scratch)
        scorer.score(raw)
    if args.gc_freeze:
        # what a server does after start-up: the long-lived rule set and model leave the
        # collector's view, so collections triggered by per-message garbage stay cheap
        gc.freeze()

    # "model": probability alone; "model_explain": probability + explanation from one
    # hashing pass (what Scorer.score runs); the staged total counts the latter only
    stages = {"parse": 0.0, "rules": 0.0, "features": 0.0, "model": 0.0, "model_explain": 0.0}
    cpu0 = time.process_time()
    for raw in msgs:
        t0 = time.thread_time()
        pm = parse_with(raw, settings)
        t1 = time.thread_time()
        hits = rules.evaluate(pm)
        t2 = time.thread_time()
        sample = make_sample(pm, hits)
        t3 = time.thread_time()
        model.predict_proba([sample])
        t4 = time.thread_time()
        model.predict_explain(sample, top=10)
        t5 = time.thread_time()
        stages["parse"] += t1 - t0
        stages["rules"] += t2 - t1
        stages["features"] += t3 - t2
        stages["model"] += t4 - t3
        stages["model_explain"] += t5 - t4
    staged_cpu = time.process_time() - cpu0 - stages["model"]

    per_msg = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for raw in msgs:
        t1 = time.thread_time()
        scorer.score(raw)
        per_msg.append(time.thread_time() - t1)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0

    rss = json.loads(
        subprocess.run(
            [sys.executable, "-c", RSS_PROBE, str(model_dir), "0" if args.no_stock_rules else "1"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout
    )
    n = len(msgs)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_dir": str(model_dir),
        "model_version": model.version,
        "model_kind": model.kind,
        "rules": len(getattr(rules, "names", [])),
        "stock_rules": not args.no_stock_rules,
        "messages": n,
        "gc_freeze": args.gc_freeze,
        "score_msgs_per_s_wall": round(n / wall, 1),
        "score_msgs_per_s_per_core_cpu": round(n / cpu, 1),
        # the mean is what throughput is; the median and the slowest show outliers (one
        # corpus message spends seconds in the stdlib's MIME-parameter parser)
        "score_cpu_ms_median": round(float(np.median(per_msg)) * 1000.0, 3),
        "score_cpu_ms_p99": round(float(np.percentile(per_msg, 99)) * 1000.0, 3),
        "score_cpu_ms_max": round(float(np.max(per_msg)) * 1000.0, 3),
        "score_msgs_per_s_per_core_at_median": round(1.0 / float(np.median(per_msg)), 1),
        "stage_cpu_ms_per_msg": {k: round(v / n * 1000.0, 3) for k, v in stages.items()},
        "staged_msgs_per_s_cpu": round(n / staged_cpu, 1),
        "model_load_s_median": round(float(np.median(loads[True])), 3),
        "model_load_estimators_s_median": round(float(np.median(loads[False])), 3),
        "model_file_mb": round((model_dir / "model.skops").stat().st_size / 1e6, 2),
        "rules_load_s_warm_cache": round(rules_load, 3),
        **rss,
        "load_average": os.getloadavg(),
    }


def record_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Per-request cost of ``ScoringService.record`` on SQLite and PostgreSQL (module doc)."""
    import threading
    import uuid

    from mailsift.pipeline.corpus import load_messages
    from mailsift.service import ScoringService

    base = load_settings(rules={"use_stock": not args.no_stock_rules})
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    model_dir = _model_dir(base, args.model, tmp)
    _, raws, _ = load_messages(Path(str(base.paths.corpus)))
    rng = np.random.default_rng(2)
    msgs = [raws[i] for i in rng.choice(len(raws), size=min(args.n, len(raws)), replace=False)]
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for store in ("sqlite", "postgresql"):
        url, db = "", ""
        if store == "postgresql":
            import psycopg

            db = f"mailsift_record_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{db}"')
            url = f"{args.pg.rsplit('/', 1)[0]}/{db}"
        settings = base.model_copy(
            update={
                "paths": base.paths.model_copy(update={"var_dir": tmp / store}),
                "store": base.store.model_copy(update={"url": url}),
                "model": base.model.model_copy(update={"path": model_dir}),
                # the warm cache, not one per temporary var dir (a cold compile each)
                "rules": base.rules.model_copy(
                    update={"cache_dir": base.rules_cache_dir.resolve()}
                ),
            },
            deep=True,
        )
        service = ScoringService(settings)
        try:
            verdicts = [service.evaluate(raw) for raw in msgs]  # distinct ids
            half = len(msgs) // 2
            lat: list[float] = []
            for v, raw in zip(verdicts[:half], msgs[:half], strict=True):
                t = time.perf_counter()
                service.record(v, raw)
                lat.append(time.perf_counter() - t)
            conc: list[float] = []
            rest = list(zip(verdicts[half:], msgs[half:], strict=True))
            lock = threading.Lock()

            def writer(items: list[Any]) -> None:
                for v, raw in items:
                    t = time.perf_counter()
                    service.record(v, raw)
                    with lock:
                        conc.append(time.perf_counter() - t)

            threads = [threading.Thread(target=writer, args=(rest[i::4],)) for i in range(4)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            out[store] = {
                "one_writer_ms_mean": round(float(np.mean(lat)) * 1000, 3),
                "one_writer_ms_p50": round(float(np.median(lat)) * 1000, 3),
                "one_writer_ms_p99": round(float(np.percentile(lat, 99)) * 1000, 3),
                "four_writers_ms_mean": round(float(np.mean(conc)) * 1000, 3),
                "four_writers_ms_p99": round(float(np.percentile(conc, 99)) * 1000, 3),
                "four_writers_writes_per_s": round(len(conc) / wall, 1),
            }
        finally:
            service.close()
            if db:
                import psycopg

                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    out["messages"] = len(msgs)
    out["load_average"] = os.getloadavg()
    return out


def profile(args: argparse.Namespace) -> str:
    """cProfile of ``Scorer.score`` over ``--n`` corpus messages: the top functions."""
    import cProfile
    import io
    import pstats

    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.pipeline.corpus import load_messages

    settings = load_settings(rules={"use_stock": not args.no_stock_rules})
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    model_dir = _model_dir(settings, args.model, tmp)
    scorer = Scorer(SpamModel.load(model_dir, serving=True), load_rules(settings), settings)
    _, raws, _ = load_messages(Path(str(settings.paths.corpus)))
    rng = np.random.default_rng(1)
    msgs = [raws[i] for i in rng.choice(len(raws), size=min(args.n, len(raws)), replace=False)]
    for raw in msgs[:20]:
        scorer.score(raw)
    gc.freeze()
    prof = cProfile.Profile()
    prof.enable()
    for raw in msgs:
        scorer.score(raw)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    buf.write(f"Scorer.score over {len(msgs)} corpus messages\n")
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_score")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--no-stock-rules", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after loading")
    ap.add_argument("--record", action="store_true", help="the verdict write's cost instead")
    ap.add_argument("--profile", action="store_true", help="cProfile of Scorer.score instead")
    ap.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = ap.parse_args()
    if args.profile:
        print(profile(args))
        return
    out = record_cost(args) if args.record else bench(args)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
