"""The TREC immediate-feedback protocol, mailsift and bogofilter side by side on one stream.

    .venv/bin/python -m bench.bench_online [--model models/default] [--streams all,modern,sa]
                                           [--limit N] [--json OUT]

Every message of a stream, in date order, duplicates included, no warm-up: each is scored,
then its true label is fed back before the next one (``mailsift evaluate --online``):

- **mailsift from the default model** (``--model``, ``mailsift train --default``: trained on
  the SpamAssassin corpus): ``evaluate_online``, the label learned as a trusted reporter's
  lesson through the feedback learner's own update; and **from nothing** (online logistic
  regression over the same features, learning from the first message; the blend's stacker
  needs a training set).
- **bogofilter** 1.2 (``bogofilter -d DIR``: ``-T`` to score, then ``-s`` / ``-n`` with the true
  label): from a wordlist trained on the whole SpamAssassin corpus (``-s`` / ``-n``), and
  from an empty wordlist (a message scored before any training counts 0.5).

Streams, from ``../shared/corpora`` (``MAILSIFT_CORPORA``): ``all``: every message of the
SpamAssassin corpus and the three modern sets together (9,471); ``modern``: the modern
sets (foff-milter 2025, usrp-users 2019-2022, Nazario phishing 2004-2005; 3,425); ``sa``:
the SpamAssassin corpus alone (6,046: the mail both SpamAssassin-trained starters learned
from, so their figures there are in-sample). Undated messages come first (as the corpus
reader orders them). Printed: 1-ROCA% (area above the ROC curve, in percent; lower is
better) and spam recall at 0.1% ham FPR for each, and mailsift's median update time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_results, run_stamp
from mailsift.config import Settings, load_settings

CORPORA = Path(os.environ.get("MAILSIFT_CORPORA", "../shared/corpora"))
MODERN = ("foff-milter-2025", "usrp-users-2019-2022", "nazario-phishing-2005")


def _sources(corpora: Path) -> dict[str, list[str]]:
    sa = [str(corpora / "spamassassin")]
    modern = [str(p) for p in sorted((corpora / "modern").glob("*.tar.xz"))]
    return {"all": sa + modern, "modern": modern, "sa": sa}


class BogofilterOnline:
    """bogofilter under immediate feedback: one message at a time, scored then trained."""

    def __init__(self, tmp: Path) -> None:
        self.exe = shutil.which("bogofilter") or "/usr/bin/bogofilter"
        self.tmp = tmp

    def wordlist(self, raws: list[bytes], y: np.ndarray) -> Path:
        """A wordlist trained on ``raws`` (bulk: -s / -n with -B over message files)."""
        db = Path(tempfile.mkdtemp(dir=self.tmp, prefix="bogo-base-"))
        files = Path(tempfile.mkdtemp(dir=self.tmp, prefix="bogo-files-"))
        names = []
        for i, raw in enumerate(raws):
            f = files / f"{i:06d}"
            f.write_bytes(raw)
            names.append(str(f))
        for flag, lab in (("-s", 1), ("-n", 0)):
            sel = [n for n, v in zip(names, y, strict=True) if v == lab]
            for i in range(0, len(sel), 500):
                subprocess.run([self.exe, "-d", str(db), flag, "-B", *sel[i : i + 500]], check=True)
        shutil.rmtree(files, ignore_errors=True)
        return db

    def run(self, raws: list[bytes], y: np.ndarray, base: Path | None) -> np.ndarray:
        db = Path(tempfile.mkdtemp(dir=self.tmp, prefix="bogo-"))
        if base is not None:
            shutil.copytree(base, db, dirs_exist_ok=True)
        scores = np.empty(len(raws))
        for i, (raw, lab) in enumerate(zip(raws, y, strict=True)):
            p = subprocess.run([self.exe, "-d", str(db), "-T"], input=raw, capture_output=True)
            try:  # "S 0.999" / "H 0.001" / "U 0.5"; no wordlist yet: exit 3, no opinion
                scores[i] = float(p.stdout.split()[-1]) if p.returncode in (0, 1, 2) else 0.5
            except (IndexError, ValueError):
                scores[i] = 0.5
            flag = "-s" if lab else "-n"
            subprocess.run([self.exe, "-d", str(db), flag], input=raw, check=True)
        shutil.rmtree(db, ignore_errors=True)
        return scores


def _row(
    name: str,
    scores: np.ndarray,
    y: np.ndarray,
    extra: dict[str, Any] | None = None,
    since: float | None = None,
) -> dict[str, Any]:
    """A system's figures on a stream; with ``since`` (a ``perf_counter`` reading) also the
    whole seconds the run has taken since then (``s``)."""
    from mailsift.pipeline.metrics import compute_metrics

    took = {} if since is None else {"s": round(time.perf_counter() - since)}
    m = compute_metrics(y, scores, threshold=0.5)
    return {
        "system": name,
        "one_minus_roca_pct": round(m.one_minus_roca_pct, 4),
        "recall_at_fpr_0.001": round(float(m.flat().get("recall_at_fpr_0.001", float("nan"))), 4),
        **(extra or {}),
        **took,
    }


def _online_row(name: str, res: Any, y: np.ndarray, since: float) -> dict[str, Any]:
    """The row of an ``evaluate_online`` result, with its median update time."""
    return _row(name, res.scores, y, {"update_median_ms": round(res.learn_ms, 3)}, since)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument("--streams", default="all,modern,sa")
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--limit", type=int, default=None, help="first N messages of each stream")
    ap.add_argument(
        "--skip-empty", action="store_true", help="only the SpamAssassin-trained starters"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--features-cache",
        type=Path,
        default=None,
        help="JSON file of the messages' features: written on the first run, read after",
    )
    args = ap.parse_args()

    from mailsift.classifier.model import SpamModel
    from mailsift.pipeline.corpus import archive_order, index_corpus, iter_raw
    from mailsift.pipeline.evaluate import evaluate_online
    from mailsift.pipeline.extract import extract, labels_of
    from mailsift.pipeline.split import time_order

    var = Path(tempfile.mkdtemp(prefix="bench-online-"))
    settings: Settings = load_settings(
        paths={"var_dir": var, "models_dir": var / "models"},
        rules={"cache_dir": Path("var/cache/rules").resolve()},
    )
    sources = _sources(args.corpora)
    streams = [s for s in args.streams.split(",") if s]
    every = time_order(index_corpus(sources["all"], dedupe=False))
    t0 = time.perf_counter()
    cache = args.features_cache
    if cache is not None and cache.is_file():
        from mailsift.classifier.features import Sample

        stored = json.loads(cache.read_text())
        samples = [Sample(tuple(stored[i][0]), tuple(stored[i][1])) for i in every["id"]]
    else:
        samples = extract(every, settings, n_jobs=settings.train.n_jobs, progress=True)
        if cache is not None:
            cache.write_text(
                json.dumps(
                    {i: [s.tokens, s.meta] for i, s in zip(every["id"], samples, strict=True)}
                )
            )
    by_id = dict(zip(every["id"], samples, strict=True))
    stored = archive_order(every)  # archives read forward, once
    raw_by_id = dict(zip(stored["id"], iter_raw(stored), strict=True))
    print(f"features of {len(every)} messages: {time.perf_counter() - t0:.0f} s", flush=True)

    sa = index_corpus(sources["sa"], dedupe=False)
    bogo = BogofilterOnline(var)
    bogo_base = bogo.wordlist([raw_by_id[i] for i in sa["id"]], labels_of(sa))
    results: dict[str, Any] = {
        **run_stamp(),
        "model": str(args.model),
        "streams": {},
    }
    for name in streams:
        df = time_order(index_corpus(sources[name], dedupe=False))
        if args.limit:
            df = df.head(args.limit)
        y = labels_of(df)
        ss = [by_id[i] for i in df["id"]]
        raws = [raw_by_id[i] for i in df["id"]]
        rows = []
        t = time.perf_counter()
        res = evaluate_online(df, settings, model=SpamModel.load(args.model), samples=ss)
        rows.append(_online_row("mailsift, from the default model", res, y, since=t))
        assert res.static_scores is not None
        rows.append(_row("mailsift default model, no feedback", res.static_scores, y))
        t = time.perf_counter()
        bogo_scores = bogo.run(raws, y, bogo_base)
        rows.append(_row("bogofilter, from its SpamAssassin wordlist", bogo_scores, y, since=t))
        if not args.skip_empty:
            t = time.perf_counter()
            res = evaluate_online(df, settings, model=None, samples=ss)
            rows.append(_online_row("mailsift, from nothing (online logreg)", res, y, since=t))
            t = time.perf_counter()
            rows.append(_row("bogofilter, from empty", bogo.run(raws, y, None), y, since=t))
        results["streams"][name] = {
            "messages": len(df),
            "spam": int(y.sum()),
            "ham": int(len(y) - y.sum()),
            "rows": rows,
        }
        print(
            f"\nstream {name}: {len(df)} messages ({int(y.sum())} spam), date order, no de-duplication"
        )
        print(f"{'system':48s} {'1-ROCA%':>8s} {'recall@0.1%FPR':>15s}")
        for r in rows:
            print(
                f"{r['system']:48s} {r['one_minus_roca_pct']:8.4f} {r['recall_at_fpr_0.001']:15.4f}",
                flush=True,
            )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    print_results(results, args.json)


if __name__ == "__main__":
    main()
