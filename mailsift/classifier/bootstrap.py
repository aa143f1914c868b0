"""A first trainer: SpamAssassin corpus archives -> the default model, before the pipeline.

``python -m mailsift.classifier.bootstrap --corpus DIR --out models/default``

Reads the SpamAssassin public corpus ``.tar.bz2`` archives in place (label from the folder
name: ``*ham*`` is ham, ``spam*`` is spam; ``cmds`` files skipped), extracts features on
both cores (joblib) and trains ``settings.model.kind``. The training pipeline
(:mod:`mailsift.pipeline`) is the real path: splits, evaluation, MLflow, promotion.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mailsift.config import Settings, load_settings


def label_of(member_path: str) -> int | None:
    """1 spam, 0 ham, None unknown, from the first folder of an archive member path."""
    parts = member_path.split("/")
    if len(parts) < 2 or parts[-1] in ("cmds", "") or parts[-1].startswith("."):
        return None
    folder = parts[0].lower()
    if "ham" in folder:
        return 0
    if folder.startswith("spam"):
        return 1
    return None


def iter_archives(corpus: Path) -> Iterator[tuple[str, int, bytes]]:
    """(archive:member, label, raw bytes) for each message of each archive, in name order."""
    archives = sorted(corpus.glob("*.tar.bz2")) + sorted(corpus.glob("*.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"no .tar.bz2 corpus archives in {corpus}")
    for arch in archives:
        with tarfile.open(arch, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                label = label_of(member.name)
                if label is None:
                    continue
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                yield f"{arch.name}:{member.name}", label, fh.read()


def load_corpus(corpus: Path) -> tuple[list[str], list[bytes], np.ndarray]:
    """All messages, deduplicated by content digest."""
    ids: list[str] = []
    raws: list[bytes] = []
    labels: list[int] = []
    seen: set[str] = set()
    for ident, label, raw in iter_archives(corpus):
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        ids.append(ident)
        raws.append(raw)
        labels.append(label)
    return ids, raws, np.asarray(labels, dtype=np.int64)


def _chunk_samples(raws: Sequence[bytes], settings: Settings, rules: Any) -> list[Any]:
    from mailsift.classifier.scorer import sample_of

    return [sample_of(raw, settings, rules)[1] for raw in raws]


def build_samples(
    raws: Sequence[bytes], settings: Settings, rules: Any, n_jobs: int = 1
) -> list[Any]:
    """Parse + rules + features for many messages, in parallel chunks when n_jobs > 1."""
    if n_jobs <= 1 or len(raws) < 200:
        return _chunk_samples(raws, settings, rules)
    from joblib import Parallel, delayed

    size = max(100, len(raws) // (n_jobs * 4))
    chunks = [raws[i : i + size] for i in range(0, len(raws), size)]
    parts = Parallel(n_jobs=n_jobs)(delayed(_chunk_samples)(c, settings, rules) for c in chunks)
    return [s for part in parts for s in part]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mailsift.classifier.bootstrap")
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--kind", default=None)
    ap.add_argument("--n-jobs", type=int, default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    corpus = args.corpus or settings.paths.corpus
    if corpus is None or not Path(corpus).is_dir():
        print(f"corpus folder not found: {corpus}", file=sys.stderr)
        return 2
    out = args.out or settings.default_model_dir
    kind = args.kind or settings.model.kind
    n_jobs = args.n_jobs or settings.train.n_jobs

    from mailsift.classifier.model import train_model
    from mailsift.classifier.scorer import load_rules

    t0 = time.perf_counter()
    _ids, raws, y = load_corpus(Path(corpus))
    rules = load_rules(settings)
    samples = build_samples(raws, settings, rules, n_jobs=n_jobs)
    t1 = time.perf_counter()
    model = train_model(samples, y, kind, settings)
    t2 = time.perf_counter()
    summary = {
        "training_data": {
            "source": str(corpus),
            "messages": len(y),
            "spam": int(y.sum()),
            "ham": int(len(y) - y.sum()),
            "rules": len(getattr(rules, "names", [])),
        },
        "trainer": "mailsift.classifier.bootstrap",
        "timings_s": {"features": round(t1 - t0, 2), "fit": round(t2 - t1, 2)},
    }
    model.save(out, summary)
    print(f"trained {kind} on {len(y)} messages ({int(y.sum())} spam) -> {out} [{model.version}]")
    print(f"features {t1 - t0:.1f}s, fit {t2 - t1:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
