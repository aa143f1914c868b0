"""Generalisation: mailsift, bogofilter and SpamAssassin trained on some corpora, tested on
the others, every system on the same splits, in one run.

    .venv/bin/python -m bench.bench_generalisation [--corpora ../shared/corpora]
        [--systems mailsift,bogofilter,spamassassin] [--sa-protocols sa->other,other->sa]
        [--json out.json]

Splits and figures: :mod:`mailsift.pipeline.generalise` (``spamassassin -> X``, ``others ->
spamassassin``, leave one corpus out; 1-ROCA%, recall at 0.1 % / 1 % ham FPR, ham and spam
at each threshold). Systems:

- **mailsift**: trained as ``mailsift train`` trains (out-of-source stacker and calibrated
  thresholds: tag, hold, reject).
- **bogofilter**: ``bogofilter -s`` / ``-n`` on the split's training mail in a temp wordlist,
  ``-T`` spamicity; tagged at its default ``spam_cutoff`` 0.99.
- **spamassassin**: ``spamd -L`` (no network tests) with the stock rules and a Bayes database
  trained by ``sa-learn`` on the split's training mail; ``spamc -c`` score, tagged at 5.0.
  It scores ~10-20 messages/s here, so by default it runs the two cross-corpus protocols
  (``--sa-protocols``), not leave-one-out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_accuracy import Bogofilter, SpamAssassin
from mailsift.config import load_settings
from mailsift.pipeline import generalise as gen
from mailsift.pipeline.corpus import iter_raw, subsample
from mailsift.pipeline.extract import labels_of

BOGOFILTER_SPAM_CUTOFF = 0.99
SPAMASSASSIN_REQUIRED = 5.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _files(df: pd.DataFrame, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for i, raw in enumerate(iter_raw(df)):
        p = folder / f"{i:06d}.eml"
        p.write_bytes(raw)
        out.append(p)
    return out


def _wrap(
    fitter: object, thresholds: dict[str, float | None], max_test: int | None = None
) -> gen.System:
    """A bench_accuracy fitter (global train / test positions -> scores) as a System. With
    ``max_test``, a larger test set is cut to a stratified sample of that many messages
    (scored by no one else; the rest get NaN and are left out of the figures)."""

    def system(train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame) -> gen.Prediction:
        tr = train["_i"].to_numpy()
        te = test["_i"].to_numpy()
        keep = np.arange(len(te))
        if max_test is not None and len(te) > max_test:
            keep = np.sort(
                subsample(test.assign(_pos=np.arange(len(te))), max_test, seed=1)["_pos"]
                .to_numpy()
                .astype(int)
            )
        scores = np.full(len(te), np.nan)
        scores[keep] = fitter(tr, te[keep])  # type: ignore[operator]
        return gen.Prediction(scores, thresholds)

    return system


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", type=Path, default=None)
    ap.add_argument("--systems", default="mailsift,bogofilter,spamassassin")
    ap.add_argument("--protocols", default="sa->other,other->sa,leave-one-out")
    ap.add_argument("--sa-protocols", default="sa->other,other->sa")
    ap.add_argument(
        "--sa-max-test", type=int, default=None, help="SpamAssassin: at most N test messages"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    root = args.corpora
    if root is None:
        if settings.paths.corpus is None:
            ap.error("no corpora: give --corpora")
        root = Path(settings.paths.corpus).parent
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    sa_protocols = [p.strip() for p in args.sa_protocols.split(",") if p.strip()]
    print(f"command: python -m bench.bench_generalisation {' '.join(argv or sys.argv[1:])}")
    t0 = time.perf_counter()
    df = gen.load_index(root)
    df["_i"] = np.arange(len(df))
    counts = df.groupby(["corpus", "label"]).size().unstack(fill_value=0)
    log(f"corpora:\n{counts}")
    y = labels_of(df)
    tmp = Path(tempfile.mkdtemp(prefix="mailsift-gen-"))
    tmp.chmod(0o755)
    rows: list[gen.Row] = []
    try:
        files: list[Path] = []
        if {"bogofilter", "spamassassin"} & set(systems):
            files = _files(df, tmp / "msgs")
        table: dict[str, gen.System] = {}
        if "mailsift" in systems:
            table["mailsift"] = gen.mailsift_system(settings)
        if "bogofilter" in systems:
            table["bogofilter"] = _wrap(Bogofilter(files, y, tmp), {"spam": BOGOFILTER_SPAM_CUTOFF})
        rows += gen.run(df, table, protocols=protocols, log=log)
        if "spamassassin" in systems:
            sa = SpamAssassin(files, y, tmp)
            rows += gen.run(
                df,
                {
                    "spamassassin": _wrap(
                        sa, {"spam": SPAMASSASSIN_REQUIRED}, max_test=args.sa_max_test
                    )
                },
                protocols=[p for p in sa_protocols if p in protocols],
                log=log,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    order = {n: i for i, n in enumerate(["mailsift", "spamassassin", "bogofilter"])}
    rows.sort(key=lambda r: (r.protocol, r.split == "pooled", r.split, order.get(r.system, 9)))
    print(gen.markdown(rows))
    log(f"done in {time.perf_counter() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
