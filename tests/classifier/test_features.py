"""Features: deterministic, hashed, stateless; other filters' headers never contribute."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsift.classifier.features import (
    UNLEARNED_RULES,
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
    assert "st:url_ip" in s.meta
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


def test_structure_features_hold_no_counts_and_no_html_facts() -> None:
    """Counts (images, URLs, size, parts, Received hops, capitals) and "it is HTML" describe
    the training mail's era and site, not spam: the structure features are categorical facts
    about the message's shape that hold across eras (no text, an IP link, MIME defects)."""
    st = structure_features(parse(SPAMMY))
    assert "st:url_ip" in st
    assert not any(f.split(":")[1] in ("img", "urls", "size", "parts", "rcv", "caps") for f in st)
    assert not any(f.startswith("st:html") for f in st)


def test_html_and_sender_info_rules_fire_but_are_no_evidence() -> None:
    """HTML_MESSAGE and friends, and SpamAssassin's informational sender tests, stay rule
    hits (reported with a verdict) but never enter the model's features, whichever rule
    source reports them."""
    html = ["HTML_MESSAGE", "MIME_HTML_ONLY", "MS_HTML_ONLY", "MS_HTML_HIDDEN_TEXT"]
    sender = ["FREEMAIL_FROM", "HEADER_FROM_DIFFERENT_DOMAINS", "FREEMAIL_FORGED_FROMDOMAIN"]
    hits = [*html, *sender, "FREEMAIL_FORGED_REPLYTO", "GTUBE"]
    s = make_sample(parse(SPAMMY), hits)
    assert s.rules == ["FREEMAIL_FORGED_REPLYTO", "GTUBE"]
    assert UNLEARNED_RULES == {*html, *sender}


def test_function_words_are_no_tokens_alone() -> None:
    sample = make_sample(parse(PERSONAL))
    words_ = {t[2:] for t in sample.tokens if t.startswith(("w:", "s:"))}
    assert words_ and not words_ & {"you", "your", "we", "our", "the", "are", "on", "for"}
    assert "from:name:<none>" not in sample.tokens
    from mailsift.classifier.features import _add_words

    out: list[str] = []
    _add_words(out, "w:", ["click", "your", "account", "of", "the"], bigrams=True)
    # a function word pairs with a content word in a bigram; two function words do not
    assert out == ["w:click", "w:account", "bw:click_your", "bw:your_account", "bw:account_of"]


def test_received_for_clause_is_not_a_token() -> None:
    raw = (
        b"Received: from mx.sender.example (mx.sender.example [192.0.2.1]) by in.site.example"
        b" with ESMTPS id 1 for <user@recipient.example>; Wed, 15 Apr 2026 23:36:00 GMT\n"
        b"From: a@sender.example\nTo: user@recipient.example\nSubject: hi\n\nhello there\n"
    )
    toks = make_sample(parse(raw)).tokens
    assert "rcv:dom:sender.example" in toks and "rcv:dom:site.example" in toks
    assert "rcv:dom:recipient.example" not in toks


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


# ---- fast paths: each gives what the plain regex gives ------------------------------------

_TOKEN_TEXTS = [
    "",
    "Hello, WORLD! hello. it's $100 (50%) at a@b.c -- x_y \t\x0b\x0c\x1c\x1d\x1e\x1f end",
    "caf\u00e9 na\u00efve \u00e9t\u00e9 \u20ac5 \u00a35 \u00a0nbsp\u00a0 \u0661\u0662 \u017f \u212a",
    "ABC1 _ABC ABC_ \u00c9TAT ABC\u00c9 AB ABCD x-RAY X-RAY MNOpq abc\u0301 ...!!!'''@@@---",
    "1999 123456789 3d7dce2a50604059 " + "a" * 40 + " " + "x1 " * 5,
    "\u4e2d\u6587 \u65e5\u672c\u8a9e text mixed\u3000ideographic\u3000space",
    "lone\ud800surrogate caf\udcff\u00e9 \u2019quoted\u2019 \u2022 bullet\u2028line \x85next",
]
_token_alphabet = st.sampled_from(
    [
        *"aZq9_$%!'.@- \t\n\x0b\x1c,;:()<>/",
        *("\u00e9", "\u20ac", "\u00a3", "\u00a0", "\u0661", "\u017f", "\u212a", "\u3000"),
        *("\u2019", "\u2022", "\u2028", "\x85", "\ud800", "\U0001f600", "\u4e2d"),
        *("ABC", "free", "http://x.example/"),
    ]
)


@pytest.mark.parametrize("text", _TOKEN_TEXTS)
def test_words_fast_path_is_the_word_regex(text: str) -> None:
    from mailsift.classifier.features import _WORD_RE, raw_words

    for t in (text, text.lower(), text.encode("ascii", "ignore").decode()):
        assert raw_words(t) == _WORD_RE.findall(t)
        expected = [w for w in map(normalise_word, _WORD_RE.findall(t.lower())) if w]
        assert words(t) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_token_alphabet, max_size=50).map("".join))
def test_words_fast_path_is_the_word_regex_generated(text: str) -> None:
    from mailsift.classifier.features import _WORD_RE, raw_words

    assert raw_words(text) == _WORD_RE.findall(text)
    assert words(text) == [w for w in map(normalise_word, _WORD_RE.findall(text.lower())) if w]


def test_normalise_cache_is_bounded_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailsift.classifier.features import _NORMALISED

    monkeypatch.setattr(_NORMALISED, "limit", 4)
    _NORMALISED.clear()
    ws = ["Hello", "x1", "--", "1999", "a" * 40, "b", "3d7dce2a50604059", "hello"] * 3
    assert [_NORMALISED[w] for w in ws] == [normalise_word(w) for w in ws]
    assert len(_NORMALISED) <= 4
    _NORMALISED.clear()


_RECEIVED = [
    "from mail.example.com (mail.example.com [192.0.2.7]) by mx.example.org (postfix)"
    " with esmtp id 1a2b; tue, 1 oct 2002 10:00:00 +0000",
    "from [10.1.2.3] (helo=x-1.y--z.example.co.uk) by 1.2.3.4.5 with smtp; a.b.c1 9.9.9.9x",
    "from 0.0.0.0 ([::1]) _host.example.com host_.example.com a-.b.com -a.b.com a.b-.com",
    "from \u00e9host.example.com \u0661.2.3.4 12.34.56.789 1234.5.6.7 x1.2.3.4 "
    + "a" * 70
    + ".com",
    "by " + "a." * 200 + "com; from " + "1." * 10 + "1",
]


@pytest.mark.parametrize("text", _RECEIVED)
def test_received_regexes_are_the_word_boundary_spellings(text: str) -> None:
    import re

    from mailsift.classifier.features import _HOST_RE, _IPV4_RE

    ipv4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b")
    host = re.compile(r"\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b")
    assert _IPV4_RE.findall(text) == ipv4.findall(text)
    assert _HOST_RE.findall(text) == host.findall(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*"ab9z0.-_ []x;", "\u00e9", "\u0661", "com"]), max_size=40))
def test_received_regexes_are_the_word_boundary_spellings_generated(parts: list[str]) -> None:
    test_received_regexes_are_the_word_boundary_spellings("".join(parts))


def test_has_repeats_is_the_set_test() -> None:
    from mailsift.classifier.features import _has_repeats

    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 63, 64, 65, 500):
        for space in (7, 1 << 20):
            cols = rng.integers(0, space, size=n).astype(np.int64)
            assert _has_repeats(cols) == (len(set(cols.tolist())) < n)


def test_no_letter_is_a_digit() -> None:
    # normalise_word skips the \d search for alphabetic words
    import re
    import sys

    digit = re.compile(r"\d")
    assert not [c for c in range(sys.maxunicode + 1) if chr(c).isalpha() and digit.match(chr(c))]
