"""Verdicts of every corpus message, written out to compare two trees field for field.

    .venv/bin/python -m bench.verdict_check --model DIR --out A.jsonl [--corpora ../shared/corpora]
    .venv/bin/python -m bench.verdict_check --compare A.jsonl B.jsonl

Scores every message of every archive under ``--corpora`` (the SpamAssassin archives and
the ``modern/`` ones: 9,471 messages) with the serving ``Scorer`` of ``--model``, in corpus
order, and writes one line per message: the archive, the message's index in it, and its
verdict's JSON (``encode_verdict``) without the two fields that differ from run to run (the
verdict id and the elapsed time). Run it in each tree (``/work/main/.venv/bin/python -m
bench.verdict_check`` from the other checkout, same model), then ``--compare``: it prints
how many lines are identical and the first differences, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_VARYING = ("verdict_id", "elapsed_ms")


def corpus_archives(corpora: Path) -> list[Path]:
    """The corpus archives under ``corpora``, in a fixed order."""
    return sorted(
        p for p in corpora.rglob("*") if p.is_file() and p.name.endswith((".tar.bz2", ".tar.xz"))
    )


def corpus_messages(archives: list[Path]) -> Iterator[tuple[Path, int, Any]]:
    """(archive, index in it, message) of every message of ``archives``, in order."""
    from mailsift.pipeline.corpus import _iter_archive

    for archive in archives:
        for i, item in enumerate(_iter_archive(archive, None)):
            yield archive, i, item


def dump(model: Path, corpora: Path, out: Path) -> int:
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.config import load_settings
    from mailsift.verdict import encode_verdict

    settings = load_settings()
    scorer = Scorer(SpamModel.load(model, serving=True), load_rules(settings), settings)
    archives = corpus_archives(corpora)
    n = 0
    with out.open("w") as f:
        for archive, i, item in corpus_messages(archives):
            doc = json.loads(encode_verdict(scorer.score(item.raw)))
            for key in _VARYING:
                doc.pop(key, None)
            rel = str(archive.relative_to(corpora))
            f.write(json.dumps([rel, i, doc], sort_keys=True) + "\n")
            n += 1
    print(f"{n} verdicts of {len(archives)} archives written to {out}")
    return n


def compare(a: Path, b: Path, noun: str = "verdicts") -> bool:
    """Print how many lines of two dumps are identical and the first differences."""
    la = a.read_text().splitlines()
    lb = b.read_text().splitlines()
    same = sum(1 for x, y in zip(la, lb, strict=False) if x == y)
    print(f"{same} of {max(len(la), len(lb))} {noun} identical ({len(la)} vs {len(lb)} lines)")
    shown = 0
    for x, y in zip(la, lb, strict=False):
        if x != y and shown < 5:
            print(f"- {x[:300]}\n+ {y[:300]}")
            shown += 1
    return same == len(la) == len(lb)


def cli(doc: str, dump_fn: Callable[[Path, Path, Path], int], noun: str) -> None:
    """``--model DIR --out FILE`` (``dump_fn``) or ``--compare A B`` (exit 1 on a difference)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--corpora", type=Path, default=Path("../shared/corpora"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare, noun=noun) else 1)
    if args.model is None or args.out is None:
        ap.error("--model and --out (or --compare A B)")
    dump_fn(args.model, args.corpora, args.out)


if __name__ == "__main__":
    cli(__doc__, dump, "verdicts")
