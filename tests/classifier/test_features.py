"""Features: deterministic, hashed, stateless; other filters' headers never contribute."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mailsift.classifier.features import (
    Sample,
    Vectorizer,
    make_sample,
    normalise_word,
    structure_features,
    words,
)
from mailsift.message import parse
from mailsift.verdict import Symbol
from tests.classifier.messages import PERSONAL, SPAMMY, with_header


def test_sample_is_deterministic_and_picklable() -> None:
    a = make_sample(parse(SPAMMY), [Symbol("HTML_ONLY")], [Symbol("SPF_FAIL", source="check")])
    b = make_sample(parse(SPAMMY), ["HTML_ONLY"], ["SPF_FAIL"])
    assert a == b
    assert pickle.loads(pickle.dumps(a)) == a
    assert "rule:HTML_ONLY" in a.meta and "sym:SPF_FAIL" in a.meta
    assert a.rules == ["HTML_ONLY"] and a.symbols == ["SPF_FAIL"]


def test_feature_families_present() -> None:
    s = make_sample(parse(SPAMMY))
    toks = set(s.tokens)
    assert "s:free" in toks and "bs:make_$$$" in toks
    assert "from:dom:cheap-meds-online.biz" in toks
    assert "u:ip" in toks
    assert "w:guaranteed" in toks and "bw:click_here" in toks
    assert "ct:text/html" in toks and "cs:iso-8859-1" in toks
    assert "st:html_only" in s.meta and "st:url_ip" in s.meta
    p = make_sample(parse(PERSONAL))
    assert "xm:mutt" in p.tokens and "mid:dom:example.org" in p.tokens
    assert "from:name:bob" in p.tokens and "to:dom:example.com" in p.tokens


def test_word_normalisation() -> None:
    assert normalise_word("1999") == "#9999"
    assert normalise_word("123456789") == "#9+"
    assert normalise_word("a" * 40) == "a" * 24 + "~"
    assert normalise_word("x1") == "x9"
    assert normalise_word("3d7dce2a50604059") == "#9a9a9a9"
    assert words("Hello, WORLD! hello.") == ["hello", "world", "hello"]


def test_foreign_filter_headers_never_contribute() -> None:
    tagged = with_header(PERSONAL, b"X-Spam-Status: Yes, score=25.0 required=5.0 tests=BAYES_99")
    tagged = with_header(tagged, b"X-Spam-Flag: YES")
    tagged = with_header(tagged, b"X-Barracuda-Spam-Score: 9.9")
    a, b = make_sample(parse(PERSONAL)), make_sample(parse(tagged))
    assert a.meta == b.meta
    # only the size bucket could differ; tokens are identical
    assert a.tokens == b.tokens
    assert not any("spam" in t and t.startswith("h:") for t in b.tokens)


def test_vectorizer_is_stateless_and_hashes_into_fixed_space() -> None:
    s1 = make_sample(parse(PERSONAL))
    s2 = make_sample(parse(SPAMMY))
    v1, v2 = Vectorizer(2**18), Vectorizer(2**18)
    x1 = v1.transform([s1, s2])
    x2 = v2.transform([s2])
    assert x1.shape == (2, 2**18 + v1.n_meta)
    assert np.allclose(x1[1].toarray(), x2.toarray())
    # every feature maps to the column the hasher puts it in
    feats = ["w:hello", "rule:GTUBE", "st:html_only"]
    cols = v1.column_of(feats)
    x = v1.transform([Sample(("w:hello",), ("rule:GTUBE", "st:html_only"))])
    assert sorted(x.indices.tolist()) == sorted(cols.tolist())
    assert cols[1] >= 2**18 and cols[0] < 2**18


def test_structure_buckets() -> None:
    st = structure_features(parse(SPAMMY))
    assert any(f.startswith("st:caps:") for f in st)
    assert "st:urls:2" in st  # two links


def test_hash_columns_match_feature_hasher() -> None:
    from sklearn.feature_extraction import FeatureHasher

    from mailsift.classifier.features import hash_columns

    feats = [*dict.fromkeys(make_sample(parse(SPAMMY)).tokens), "ü:naïve", "w:€", ""]
    for n in (2**20, 2**16, 7):
        fh = FeatureHasher(n, input_type="string", alternate_sign=False)
        ref = [fh.transform([[f]]).indices[0] for f in feats]
        assert hash_columns(feats, n).tolist() == ref


def test_hash_sample_is_the_batch_row() -> None:
    """Distinct columns and values of Vectorizer.hash_sample == the sparse matrix row, also
    when distinct strings share a column (a tiny space forces collisions)."""
    for n in (2**18, 64):
        v = Vectorizer(n, n_meta=8)
        for s in (make_sample(parse(PERSONAL)), make_sample(parse(SPAMMY), ["A", "B", "C"])):
            h = v.hash_sample(s)
            xt, xm = v.transform_blocks([s])
            xt.sum_duplicates()
            xm.sum_duplicates()
            got = dict(zip(h.cols.tolist(), h.vals.tolist(), strict=True))
            assert got == pytest.approx(dict(zip(xt.indices.tolist(), xt.data.tolist())))
            assert sorted(h.mcols.tolist()) == xm.indices.tolist()
            assert h.tokens == list(dict.fromkeys(s.tokens))
            assert h.cols[h.token_pos].tolist() == h.token_cols.tolist()
            assert h.mcols[h.meta_pos].tolist() == h.meta_cols.tolist()


def test_caps_count_is_the_capitals_regex() -> None:
    from mailsift.classifier.features import _CAPS_RE, _WORDISH_RE

    text = "FREE money NOW!!! ABC1 _ABC ABC_ ÉTAT ABCÉ AB ABCD x-RAY X-RAY MNOpq " * 3
    caps = sum(map(str.isupper, _WORDISH_RE.findall(text)))
    assert caps == len(_CAPS_RE.findall(text)) > 0
