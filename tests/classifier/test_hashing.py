"""Feature hashing by ``mmh3`` (``features.hash_columns``): the very columns scikit-learn's
FeatureHasher gives, so models trained before keep their features; its errors are
scikit-learn's; and the single-message paths import no scikit-learn."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils import murmurhash3_32

from mailsift.classifier.features import (
    HashedSample,
    Sample,
    Vectorizer,
    hash_columns,
    make_sample,
)
from mailsift.message import parse
from tests.classifier.messages import PERSONAL, SPAMMY

SPACES = (2**20, 2**16, 7, 1)
# murmurhash3_32("aaaiTBFZ", seed 0) is -2**31 (found by inverting the hash): FeatureHasher
# defines its column as abs(-2**31) % n = 2**31 % n
INT32_MIN_KEY = "aaaiTBFZ"


def reference_columns(xs: list[str] | list[bytes], n: int) -> list[int]:
    """sklearn's public murmurhash3_32, as the old fallback used it."""
    h = np.array([murmurhash3_32(x, 0, False) for x in xs], dtype=np.int64)
    return (np.abs(h) % n).tolist()


def hasher_columns(xs: list[str] | list[bytes], n: int) -> list[int]:
    """The column FeatureHasher puts each string at (one row per string)."""
    if not xs:
        return []
    x = FeatureHasher(n, input_type="string", alternate_sign=False).transform([[s] for s in xs])
    assert np.diff(x.indptr).tolist() == [1] * len(xs)
    return x.indices.tolist()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=40), max_size=30))
def test_columns_are_feature_hashers(xs: list[str]) -> None:
    # st.text draws from all of Unicode (astral characters too), surrogates excepted
    xs = [*xs, "", "w:€", "𝄞:x"]
    for n in SPACES:
        got = hash_columns(xs, n)
        assert got.dtype == np.int64 and got.shape == (len(xs),)
        assert got.tolist() == reference_columns(xs, n) == hasher_columns(xs, n)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_bytes_items_are_hashed_as_they_are(xs: list[bytes]) -> None:
    for n in SPACES:
        assert hash_columns(xs, n).tolist() == reference_columns(xs, n) == hasher_columns(xs, n)
    text = ["ü:naïve", "w:€", "𝄞"]
    assert hash_columns([t.encode() for t in text], 2**20).tolist() == (
        hash_columns(text, 2**20).tolist()
    )


def test_int32_min_hash() -> None:
    assert murmurhash3_32(INT32_MIN_KEY, 0, False) == -(2**31)
    for n in (*SPACES, 3, 2**31 - 1):
        want = 2**31 % n
        assert hash_columns([INT32_MIN_KEY], n).tolist() == [want]
        assert reference_columns([INT32_MIN_KEY], n) == [want]
        assert hasher_columns([INT32_MIN_KEY], n) == [want]


def test_every_tail_length() -> None:
    # MurmurHash3 reads 4-byte blocks then a 0-3 byte tail: every length up to a few blocks
    xs = ["abcdefghijklmnopq"[:i] for i in range(18)] + ["é" * i for i in range(9)]
    assert hash_columns(xs, 2**20).tolist() == reference_columns(xs, 2**20)


def test_inputs() -> None:
    assert hash_columns([], 2**20).tolist() == []
    assert hash_columns(("w:a", "w:b"), 2**20).tolist() == reference_columns(["w:a", "w:b"], 2**20)
    cols = hash_columns(["w:a"], 2**20)
    cols += 1  # writable, as the arrays the sklearn loop gave were
    # str subclasses (numpy's str_) hash as str
    assert hash_columns(list(np.array(["w:a", "ü"])), 7).tolist() == reference_columns(
        ["w:a", "ü"], 7
    )


def test_errors_are_sklearns() -> None:
    with pytest.raises(UnicodeEncodeError) as ours:
        hash_columns(["w:a", "a\ud800"], 2**20)
    with pytest.raises(UnicodeEncodeError) as theirs:
        murmurhash3_32("a\ud800", 0, False)
    assert ours.value.args == theirs.value.args
    with pytest.raises(UnicodeEncodeError):
        hasher_columns(["a\ud800"], 2**20)
    for bad in ([1], ["a", None], [bytearray(b"a")], [["a"]]):
        with pytest.raises(TypeError):
            hash_columns(bad, 2**20)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hasher_columns([1], 2**20)  # type: ignore[list-item]
    for n in (0, -1):
        with pytest.raises(ValueError):
            hash_columns(["a"], n)
        with pytest.raises(ValueError):
            hash_columns([], n)
    with pytest.raises(TypeError):
        hash_columns(None, 7)  # type: ignore[arg-type]


# ---- Vectorizer.hash_sample: the old formulation (sklearn's loop) and the batch row --------


def old_hash_sample(v: Vectorizer, sample: Sample) -> HashedSample:
    """Vectorizer.hash_sample as it was, on sklearn's hashing (FeatureHasher's own loop when
    this scikit-learn has it, the public murmurhash3_32 otherwise)."""
    try:
        from sklearn.feature_extraction._hashing_fast import transform as loop
    except ImportError:  # pragma: no cover
        loop = None

    counts = Counter(sample.tokens)
    tokens = list(counts)
    if loop is not None:
        idx, _, tcounts = loop([counts.items()], v.n_features, np.float64, False, 0)
        tcols = np.asarray(idx, dtype=np.int64)
    else:  # pragma: no cover
        tcounts = np.fromiter(counts.values(), dtype=float, count=len(tokens))
        tcols = np.asarray(reference_columns(tokens, v.n_features), dtype=np.int64)
    meta = list(dict.fromkeys(sample.meta))
    mcols = np.asarray(reference_columns(meta, v.n_meta), dtype=np.int64)
    tvals = np.log1p(tcounts)
    cols, vals, tpos = tcols, tvals, np.arange(len(tcols))
    if len(set(tcols.tolist())) < len(tcols):
        cols, tpos = np.unique(tcols, return_inverse=True)
        vals = np.log1p(np.bincount(tpos, weights=tcounts, minlength=len(cols)))
    ucols_m, mpos = mcols, np.arange(len(mcols))
    if len(set(mcols.tolist())) < len(mcols):
        ucols_m, mpos = np.unique(mcols, return_inverse=True)
    return HashedSample(tokens, tcounts, tvals, tcols, meta, mcols, cols, vals, ucols_m, tpos, mpos)


def assert_same(got: HashedSample, want: HashedSample) -> None:
    assert got.tokens == want.tokens and got.meta == want.meta
    for name in (
        "token_counts",
        "token_values",
        "token_cols",
        "meta_cols",
        "cols",
        "vals",
        "mcols",
        "token_pos",
        "meta_pos",
    ):
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        # bit-identical: same values, and for the floats the same bits
        assert a.tobytes() == b.astype(a.dtype).tobytes(), name
    assert got.token_counts.dtype == np.float64 and got.token_cols.dtype == np.int64


def assert_batch_row(v: Vectorizer, h: HashedSample, sample: Sample) -> None:
    xt, xm = v.transform_blocks([sample])
    xt.sum_duplicates()  # sorted columns
    xm.sum_duplicates()
    order = np.argsort(h.cols)
    assert h.cols[order].tolist() == xt.indices.tolist()
    assert h.vals[order].tobytes() == xt.data.astype(np.float64).tobytes()
    assert sorted(h.mcols.tolist()) == xm.indices.tolist()


@pytest.fixture(scope="module")
def corpus_samples(corpus_messages: Any, ruleset: Any) -> list[Sample]:
    """~400 corpus messages (every 15th), with the project's rule hits as meta features."""
    _, raws, _ = corpus_messages
    out = []
    for raw in raws[::15]:
        pm = parse(raw)
        out.append(make_sample(pm, ruleset.evaluate(pm)))
    return out


@pytest.mark.parametrize(("n", "n_meta"), [(2**20, 2**16), (2**12, 64), (64, 8)])
def test_hash_sample_is_the_old_one_and_the_batch_row(
    corpus_samples: list[Sample], n: int, n_meta: int
) -> None:
    """Small spaces force collisions (several strings in one column)."""
    assert len(corpus_samples) > 300
    v = Vectorizer(n, n_meta)
    collided = 0
    for s in [
        *corpus_samples,
        make_sample(parse(PERSONAL)),
        make_sample(parse(SPAMMY), ["A", "B"], ["SPF_FAIL"]),
        Sample((), ()),
        Sample(("w:ü", "w:𝄞", "w:ü", "", INT32_MIN_KEY), ("st:x", "st:x")),
    ]:
        h = v.hash_sample(s)
        assert_same(h, old_hash_sample(v, s))
        assert_batch_row(v, h, s)
        collided += len(h.cols) < len(h.tokens)
    if n == 64:
        assert collided > 100  # the collision branch was exercised


# ---- the single-message path imports no scikit-learn ---------------------------------------


def test_single_message_path_imports_no_sklearn() -> None:
    code = textwrap.dedent(
        """
        import sys

        import mailsift.classifier.features as f
        from mailsift.message import parse
        from tests.classifier.messages import SPAMMY

        def sklearn_loaded():
            return sorted(m for m in sys.modules if m == "sklearn" or m.startswith("sklearn."))

        v = f.Vectorizer(2**20)
        s = f.make_sample(parse(SPAMMY), ["HTML_ONLY"], ["SPF_FAIL"])
        h = v.hash_sample(s)
        assert len(h.cols) > 10 and len(h.mcols) >= 3
        v.column_of(["w:free", "rule:HTML_ONLY"])
        f.hash_columns(["w:free"], 7)
        assert not sklearn_loaded(), sklearn_loaded()
        v.transform_blocks([s])  # the batch path does import it: the check above can fail
        assert "sklearn" in sys.modules
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
