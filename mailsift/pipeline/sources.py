"""Where training mail comes from: corpora, sources, the groups and weights training uses.

A model that learns one site's mail learns that site. Training therefore knows, for every
message, its **corpus** (the SpamAssassin public corpus, or one archive of
``../shared/corpora/modern``, or any other corpus argument) and uses it three ways:

- :func:`stacker_groups`: the blend's stacker is fitted on predictions for each group made
  by base models trained on the other groups (out-of-source), and the thresholds are
  calibrated on those predictions. Each corpus is a group; the SpamAssassin corpus alone is
  split into its two collection rounds (the ``*_2`` archives are the second; ``hard_ham``
  is shared out between them), so a model trained on it alone is still calibrated on mail
  its parts did not see.
- :func:`source_weights`: every (archive, label) pair weighs ``n ** -power`` per message, so
  a large archive of one kind of mail (2,500 ``easy_ham`` list messages) does not drown a
  small one of another (250 ``hard_ham`` newsletters); each class keeps its total weight.
- :func:`discover_corpora`: the corpora of a folder laid out as ``../shared/corpora``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPAMASSASSIN = "spamassassin"
SOURCE_WEIGHT_POWER = 0.75
_ARCHIVE_EXTS = (".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".tar.gz", ".tgz", ".tar")


def _strip_ext(name: str) -> str:
    low = name.lower()
    for ext in _ARCHIVE_EXTS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def corpus_of(source: str) -> str:
    """The corpus a message's ``source`` (see :mod:`mailsift.pipeline.corpus`) belongs to:
    ``spamassassin`` for every part of the SpamAssassin corpus, the archive's name without
    its extension for other archives, else the source itself."""
    kind, _, name = source.partition(":")
    if kind == SPAMASSASSIN:
        return SPAMASSASSIN
    if kind == "archive":
        return _strip_ext(Path(name).name)
    return source


def corpora_of(df: pd.DataFrame) -> np.ndarray:
    return np.array([corpus_of(s) for s in df["source"].astype(str)], dtype=object)


def stacker_groups(df: pd.DataFrame) -> np.ndarray:
    """One group name per message (see the module docstring)."""
    out = corpora_of(df)
    sources = df["source"].astype(str).to_numpy()
    hard = 0
    for i, (corpus, source) in enumerate(zip(out, sources, strict=True)):
        if corpus != SPAMASSASSIN:
            continue
        stem = _strip_ext(source.partition(":")[2])
        if "hard_ham" in stem:
            out[i] = f"{SPAMASSASSIN}/{1 + hard % 2}"
            hard += 1
        else:
            out[i] = f"{SPAMASSASSIN}/{2 if stem.endswith('_2') else 1}"
    return out


def source_weights(
    df: pd.DataFrame, y: Sequence[int] | np.ndarray, power: float = SOURCE_WEIGHT_POWER
) -> np.ndarray:
    """Per-message training weights (see the module docstring); mean 1 within each class."""
    y = np.asarray(y)
    keys = df["source"].astype(str).to_numpy() + "\0" + y.astype(str)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = counts[inverse].astype(float) ** -power
    for c in (0, 1):
        m = y == c
        if m.any():
            w[m] *= m.sum() / w[m].sum()
    return w


def discover_corpora(root: Path) -> dict[str, Path]:
    """Corpus name -> path for a folder laid out as ``../shared/corpora``: a
    ``spamassassin`` folder (the public corpus's archives) and archives (``.tar.xz`` ...)
    of ``<name>/<label>/*.eml`` in ``modern`` or in the folder itself."""
    root = Path(root)
    out: dict[str, Path] = {}
    if (root / SPAMASSASSIN).is_dir():
        out[SPAMASSASSIN] = root / SPAMASSASSIN
    for folder in (root / "modern", root):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.name.lower().endswith(_ARCHIVE_EXTS):
                out.setdefault(_strip_ext(p.name), p)
    return out
