"""Parallel feature extraction: indexed messages -> model samples, in chunks, on all cores.

The main process reads messages in index order (archives decompressed once, forward) and
hands chunks of raw bytes to joblib workers, which parse them, run the rules and build the
samples (:func:`mailsift.classifier.scorer.sample_of`: the scorer's own path, so training
and serving see the same features). Only samples come back; raw messages are dropped after
their chunk. Each worker loads the ruleset once (from the rules cache) and keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import pandas as pd

from mailsift.config import Settings
from mailsift.pipeline.corpus import archive_order, iter_raw

CHUNK_SIZE = 200

_WORKER_RULES: dict[str, Any] = {}


def load_rules(settings: Settings) -> Any:
    from mailsift.classifier.scorer import load_rules as _load

    return _load(settings)


def _rules_for(settings: Settings) -> Any:
    key = settings.model_dump_json(include={"rules", "paths"})
    if key not in _WORKER_RULES:
        _WORKER_RULES.clear()
        _WORKER_RULES[key] = load_rules(settings)
    return _WORKER_RULES[key]


def samples_of(raws: Sequence[bytes], settings: Settings, rules: Any = None) -> list[Any]:
    """Samples for a list of raw messages, in this process."""
    from mailsift.classifier.scorer import sample_of

    r = rules if rules is not None else _rules_for(settings)
    return [sample_of(raw, settings, r)[1] for raw in raws]


def _chunks(raws: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    while chunk := list(islice(raws, size)):
        yield chunk


def extract_raws(
    raws: Iterator[bytes] | Sequence[bytes],
    settings: Settings,
    *,
    n_jobs: int | None = None,
    total: int | None = None,
    progress: bool = False,
    desc: str = "features",
) -> list[Any]:
    """Samples for a stream of raw messages, in order, ``n_jobs`` processes in parallel."""
    n_jobs = settings.train.n_jobs if n_jobs is None else n_jobs
    it = iter(raws)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="msg", leave=False)
    out: list[Any] = []
    try:
        if n_jobs <= 1:
            rules = load_rules(settings)
            for chunk in _chunks(it, CHUNK_SIZE):
                out.extend(samples_of(chunk, settings, rules))
                if bar is not None:
                    bar.update(len(chunk))
            return out
        load_rules(settings)  # compile (and cache) once here, before the workers load it
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="2*n_jobs")
        for part in parallel(delayed(samples_of)(c, settings) for c in _chunks(it, CHUNK_SIZE)):
            out.extend(part)
            if bar is not None:
                bar.update(len(part))
        return out
    finally:
        if bar is not None:
            bar.close()


def extract(
    df: pd.DataFrame,
    settings: Settings,
    *,
    n_jobs: int | None = None,
    progress: bool = False,
    cache: dict[str, Any] | None = None,
) -> list[Any]:
    """Samples for every row of a corpus index, in the index's order.

    Messages are read in storage order (archive members forward, one decompression pass)
    and the samples put back in the index's order. ``cache`` (message digest -> sample,
    for one settings object) skips messages already extracted, e.g. when several models
    are trained on the same corpus in one process.
    """
    out: list[Any] = [None] * len(df)
    todo = df.reset_index(drop=True)
    if cache is not None:
        digests = todo["digest"].tolist()
        hit = [d in cache for d in digests]
        for pos, (d, h) in enumerate(zip(digests, hit, strict=True)):
            if h:
                out[pos] = cache[d]
        todo = todo[[not h for h in hit]]
    ordered = archive_order(todo)
    perm = ordered.index.to_numpy()
    got = extract_raws(
        iter_raw(ordered), settings, n_jobs=n_jobs, total=len(ordered), progress=progress
    )
    for sample, pos in zip(got, perm, strict=True):
        out[pos] = sample
    if cache is not None:
        for d, sample in zip(ordered["digest"], got, strict=True):
            cache[d] = sample
    return out


def labels_of(df: pd.DataFrame) -> Any:
    import numpy as np

    return (df["label"].to_numpy() == "spam").astype(np.int64)
