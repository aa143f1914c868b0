"""Stateless message features: ParsedMessage + rule hits -> Sample -> hashed sparse matrix.

Nothing here is fitted: every feature is a string token hashed into a fixed-size space
(scikit-learn's ``FeatureHasher``, murmurhash3), so the model can ``partial_fit`` on live
feedback without a vocabulary refit and two processes always agree on a message's features.
The single-message paths hash with ``mmh3`` (the same columns, see :func:`hash_columns`),
so scoring never imports scikit-learn; only the batch :meth:`Vectorizer.transform_blocks`
(training) does.

A :class:`Sample` keeps the token strings themselves (cheap to pickle for joblib workers),
so an explanation can map the weights back to human-readable tokens.

Two blocks of features:

* **tokens** (counts, log-scaled by the model): header tokens (``s:`` Subject words, ``from:``
  / ``rt:`` / ``to:`` domains and display-name words, ``rcv:`` Received hosts and IPv4 /16
  prefixes, ``xm:`` X-Mailer / User-Agent words, ``ct:`` / ``cs:`` Content-Type and charset,
  ``mid:`` Message-ID domain and shape, ``h:`` header names; not the words of other headers'
  values: they age badly), body words ``w:`` and word bigrams ``b:`` of the text a reader
  sees (``ParsedMessage.shown_body``: not the plain-text alternative of an HTML message nor
  the HTML's hidden elements, where spam hides text written to look like ham; case-folded;
  numbers become shapes, long tokens are cut), URL features ``u:`` (registrable domain,
  host, TLD, IP literal) and attachment features ``att:``.
* **meta** (binary): rule hits ``rule:NAME``, SMTP check symbols ``sym:NAME`` and
  structural facts ``st:...`` (HTML-only, image / URL / size / caps-ratio buckets, defects).

Only ``ParsedMessage.headers`` is read, which never contains other filters' headers
(``X-Spam-*`` and friends are dropped by :mod:`mailsift.message`), so they never contribute.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mmh3
import numpy as np

from mailsift.classifier.stopwords import STOPWORDS
from mailsift.message import ParsedMessage, parse_address, registrable_domain
from mailsift.verdict import Symbol

if TYPE_CHECKING:  # the batch (training) path's: one message at a time needs neither
    import scipy.sparse as sp
    from sklearn.feature_extraction import FeatureHasher

# Bump when the token scheme changes: a model is only valid for the version it was trained on.
FEATURE_SET_VERSION = "8"

DEFAULT_N_META = 2**16  # hashed space of rule/symbol/structure features
MAX_BODY_CHARS = 40_000  # body text tokenised per message (spam shows its hand early)
MAX_TOKEN_LEN = 24
MAX_RECEIVED = 8
MAX_URLS = 100
MAX_HEADERS = 40
_WORD_RE = re.compile(r"[\w$€£%!'.@-]+")
_STRIP = ".'-!@"
_DIGIT_RE = re.compile(r"\d")
_ALNUM_SHAPE_RE = re.compile(r"[a-z]+|\d+")
# Received hosts and IPv4 addresses. Written as
#   \b(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b
#   \b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b
# but starting with a character class (so the regex engine skips other characters in C instead
# of trying a match at each): "\b" before a word character is "(?<!\w.)" after it, and
# "(?:X)+" is "X(?:X)*" (the later labels follow a dot, where the lookbehind always holds).
_IPV4_RE = re.compile(r"(\d(?<!\w.)\d{0,2})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\."
_HOST_RE = re.compile(
    r"([a-z0-9](?<!\w.)(?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:" + _LABEL + r")*[a-z]{2,24})\b"
)
_NAME_WORD_RE = re.compile(r"[^\W\d_]{2,}")
_RCV_FOR_RE = re.compile(r"\bfor\s+<?[^\s;>]*@[^\s;>]*>?")


@dataclass(frozen=True, slots=True)
class Sample:
    """What the model consumes: token strings (with repeats) and binary meta features."""

    tokens: tuple[str, ...]
    meta: tuple[str, ...]

    @property
    def rules(self) -> list[str]:
        return [m[5:] for m in self.meta if m.startswith("rule:")]

    @property
    def symbols(self) -> list[str]:
        return [m[4:] for m in self.meta if m.startswith("sym:")]


# ---- token helpers -------------------------------------------------------------------------


def normalise_word(word: str) -> str | None:
    """Case-folded word -> feature token; numbers become shapes, long tokens are cut."""
    w = word.strip(_STRIP)
    if not w:
        return None
    if not w.isalpha() and _DIGIT_RE.search(w):  # letters are never \d (most words)
        if w.isdigit():
            return "#" + ("9" * len(w) if len(w) <= 4 else "9+")
        if len(w) > 10:  # ids, hashes, tracking numbers: keep only the shape
            return (
                "#"
                + "".join("a" if p[0].isalpha() else "9" for p in _ALNUM_SHAPE_RE.findall(w))[:8]
            )
        w = _DIGIT_RE.sub("9", w)
    elif len(w) < 2:
        return None
    if len(w) > MAX_TOKEN_LEN:
        return w[:MAX_TOKEN_LEN] + "~"
    return w


class _Memo(dict[Any, Any]):
    """``fn(key)`` of each key seen, computed on first use and kept until ``limit`` keys are
    held, then started afresh. Looked up from C (``map(memo.__getitem__, ...)``), it costs half
    what ``functools.lru_cache`` does per call."""

    __slots__ = ("fn", "limit")

    def __init__(self, fn: Callable[[Any], Any], limit: int) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, key: Any) -> Any:
        value = self.fn(key)
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


# normalise_word of each raw word: words repeat across messages, and normalising each distinct
# one once per process is the largest saving of make_sample. 2**16 entries take what the
# former lru_cache of 2**15 took (~5 MB with the words; no link objects) and hit more often on
# a shuffled corpus stream (92.9% of words against 92.6%; 89.2% with 2**15 entries).
_NORMALISED = _Memo(normalise_word, 1 << 16)

# The ASCII characters _WORD_RE does not match, as spaces: for an ASCII text,
# ``text.translate(_NOT_WORD_ASCII).split()`` is ``_WORD_RE.findall(text)`` (the maximal runs
# of word characters; no word character is white space), without the regex engine's per
# character cost: 5x faster. ``\w`` is Unicode-wide: see raw_words for other texts.
_NOT_WORD_ASCII = {c: " " for c in range(128) if not _WORD_RE.fullmatch(chr(c))}
# the same tables for UTF-8 bytes (bytes >= 0x80 kept: they only encode non-ASCII characters)
_NOT_WORD_BYTES = bytes(0x20 if c in _NOT_WORD_ASCII else c for c in range(256))


def _segments(text: str, table: bytes) -> list[str]:
    """``text`` cut at its ASCII characters that ``table`` maps to a space and at white space
    (str.translate is slow on a non-ASCII text, bytes.translate is not). A segment is all
    word characters when it is ASCII; only the others still need the regex, whose matches
    never straddle a cut (the cuts are at non-word characters)."""
    data = text.encode("utf-8", "surrogatepass").translate(table)
    return data.decode("utf-8", "surrogatepass").split()


def raw_words(text: str) -> list[str]:
    """``_WORD_RE.findall(text)``."""
    if text.isascii():
        return text.translate(_NOT_WORD_ASCII).split()
    out: list[str] = []
    for seg in _segments(text, _NOT_WORD_BYTES):
        if seg.isascii():
            out.append(seg)
        else:
            out += _WORD_RE.findall(seg)
    return out


def words(text: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    # normalise_word never returns "": filter(None) drops exactly the None
    return list(filter(None, map(_NORMALISED.__getitem__, raw_words(text[:limit].lower()))))


def _add_words(out: list[str], prefix: str, ws: Sequence[str], bigrams: bool) -> None:
    """Word tokens and word-bigram tokens; function words (:mod:`.stopwords`) are no tokens
    on their own, nor is a bigram of two of them."""
    out += [prefix + w for w in ws if w not in STOPWORDS]
    if bigrams and len(ws) > 1:
        bp = "b" + prefix
        out += [
            f"{bp}{a}_{b}"
            for a, b in itertools.pairwise(ws)
            if a not in STOPWORDS or b not in STOPWORDS
        ]


def _shape(value: str) -> str:
    s = _LETTERS_RE.sub("a", value)
    s = _DIGITS_RE.sub("9", s)
    return s[:24]


_LETTERS_RE = re.compile(r"[A-Za-z]+")
_CHARSET_RE = re.compile(r'charset\s*=\s*"?([\w.:-]+)')
_DIGITS_RE = re.compile(r"\d+")


def _domain_of(addr: str) -> str:
    if "@" not in addr:
        return ""
    host = addr.rsplit("@", 1)[1].strip().strip(">").lower()
    return registrable_domain(host) if host else ""


# ---- feature families ----------------------------------------------------------------------


def header_tokens(pm: ParsedMessage) -> list[str]:
    out: list[str] = []
    # one pass over the headers (ParsedMessage.header scans them all for each lookup)
    names = [k.lower() for k, _ in pm.headers]
    first: dict[str, str] = {}
    received: list[str] = []
    for n, (_, v) in zip(names, pm.headers, strict=True):
        first.setdefault(n, v)
        if n == "received":
            received.append(v)
    subj = first.get("subject", "")  # = pm.subject
    _add_words(out, "s:", words(subj, 500), bigrams=True)
    if not subj:
        out.append("s:<none>")
    for field, prefix in (("from", "from"), ("reply-to", "rt"), ("sender", "snd")):
        value = first.get(field, "")
        if not value:
            continue
        addr = _addr(value)
        dom = _domain_of(addr)
        out.append(f"{prefix}:dom:{dom or '<none>'}")
        if prefix == "from":
            local = addr.split("@", 1)[0] if "@" in addr else ""
            out.append(f"from:local:{_shape(local)}")
            # display-name words; a bare address is no evidence either way
            name = _name_of(value)  # = pm.from_name (value is the From header)
            out.extend(f"from:name:{w.lower()}" for w in _NAME_WORD_RE.findall(name)[:6])
    to_addrs = pm.to_addrs
    for dom in sorted({_domain_of(a) for a in to_addrs[:20]} - {""})[:5]:
        out.append(f"to:dom:{dom}")
    if not to_addrs:
        out.append("to:<none>")
    for rcv in received[:MAX_RECEIVED]:
        # the "for <recipient>" clause names the receiving site's own user, not the sender
        low = _RCV_FOR_RE.sub(" ", rcv.lower())
        for a, b in _IPV4_RE.findall(low):
            out.append(f"rcv:ip16:{a}.{b}")
        for host in _HOST_RE.findall(low):
            out.append(f"rcv:dom:{registrable_domain(host)}")
    for field in ("x-mailer", "user-agent"):
        value = first.get(field, "")
        if value:
            out.extend("xm:" + w for w in words(value, 200)[:6])
    ctype = first.get("content-type", "").lower()
    out.append("ct:" + pm.content_type)
    m = _CHARSET_RE.search(ctype)
    if m:
        out.append("cs:" + m.group(1))
    mid = first.get("message-id", "").strip()  # = pm.message_id
    if mid:
        addr = mid.strip("<>")
        out.append("mid:dom:" + (_domain_of(addr) or "<none>"))
        out.append("mid:shape:" + _shape(addr.split("@", 1)[0]))
    else:
        out.append("mid:<none>")
    # header names only: the words of other headers' values (list names, ids, software
    # versions, dates) describe where the training mail came from and age badly (dropping
    # them: 1-ROCA% 0.0307 -> 0.0281 on CV, 0.062 -> 0.059 on the time split and
    # 0.41 -> 0.26 training on one half of the corpus's sources, testing on the other)
    out += ["h:" + n for n in names[:MAX_HEADERS]]
    return out


@functools.lru_cache(maxsize=4096)
def _name_of(value: str) -> str:
    return parse_address(value)[0]


def _addr(value: str) -> str:
    from mailsift.message import address_of

    return address_of(value)


def url_tokens(pm: ParsedMessage) -> list[str]:
    out: list[str] = []
    for u in pm.urls[:MAX_URLS]:
        if u.is_ip:
            out.append("u:ip")
            continue
        if u.domain:
            out.append("u:dom:" + u.domain)
            tld = u.domain.rsplit(".", 1)[-1]
            out.append("u:tld:" + tld)
        if u.host and u.host != u.domain:
            out.append("u:host:" + u.host)
        if u.url.lower().startswith("https"):
            out.append("u:https")
    return out


def attachment_tokens(pm: ParsedMessage) -> list[str]:
    out: list[str] = []
    for a in pm.attachments[:20]:
        out.append("att:type:" + a.content_type.lower())
        if "." in a.filename:
            out.append("att:ext:" + a.filename.rsplit(".", 1)[1].lower()[:10])
    return out


def body_tokens(pm: ParsedMessage) -> list[str]:
    return _body_tokens(pm.shown_body)


def _body_tokens(body: str) -> list[str]:
    out: list[str] = []
    _add_words(out, "w:", words(body), bigrams=True)
    return out


def structure_features(pm: ParsedMessage) -> list[str]:
    return _structure_features(pm, pm.body)


def _structure_features(pm: ParsedMessage, body: str) -> list[str]:
    # No counts (images, URLs, size, parts, Received hops, the share of capitals) and no
    # "is it HTML" facts: they describe the training mail's era and sites, not spam. In the
    # 2002 corpus many URLs and images, and HTML at all, meant spam; in later mail nearly
    # everything is HTML and a site's legitimate newsletters carry the most links and
    # images. Without them the model ranked later mail better on every out-of-source split
    # (docs/experiments.md).
    out: list[str] = []
    if not body or body.isspace():  # = not body.strip(), without the copy
        out.append("st:no_text")
    if pm.attachments:
        out.append("st:attachments")
    if pm.truncated:
        out.append("st:truncated")
    if any(u.is_ip for u in pm.urls):
        out.append("st:url_ip")
    for d in sorted(set(pm.defects))[:10]:
        out.append("st:defect:" + d.split(":", 1)[0][:40])
    return out


# Rules that still fire (and are reported in a verdict's rule list) but are no evidence for
# the model: they only say a message is HTML, which was rare in legitimate mail of the
# 2002 training corpus and is the norm since (same measurement as the structure features),
# or that it hides text: a newsletter's hidden preheader is as common in later legitimate
# mail as in spam, and the hidden text itself is kept out of the body tokens
# (``ParsedMessage.shown_body``). Likewise SpamAssassin's informational sender tests:
# FREEMAIL_FROM (a free mail provider's sender, scored 0.001 by SpamAssassin itself),
# HEADER_FROM_DIFFERENT_DOMAINS and FREEMAIL_FORGED_FROMDOMAIN (From and envelope domains
# differ: most mailing-list mail; their scores are commented out in the stock rules, so
# they would weigh a full point each). Their era and site say which way they point: a free
# mail sender is half the 2002 corpus's spam and a quarter of a 2019-2022 list's ham.
UNLEARNED_RULES = frozenset(
    {
        "HTML_MESSAGE",
        "MIME_HTML_ONLY",
        "MS_HTML_ONLY",
        "MS_HTML_HIDDEN_TEXT",
        "FREEMAIL_FROM",
        "HEADER_FROM_DIFFERENT_DOMAINS",
        "FREEMAIL_FORGED_FROMDOMAIN",
    }
)


def _names(items: Iterable[Symbol | str]) -> list[str]:
    return [i if isinstance(i, str) else i.name for i in items]


def make_sample(
    pm: ParsedMessage,
    rule_hits: Iterable[Symbol | str] = (),
    symbols: Iterable[Symbol | str] = (),
) -> Sample:
    """Everything the model needs about one message (no raw text kept)."""
    body = pm.body  # built once (text + rendered HTML when a message has both)
    tokens = header_tokens(pm)
    # body words: what the reader sees, not what the client hides (see body_tokens)
    tokens += _body_tokens(pm.shown_body)
    tokens += url_tokens(pm)
    tokens += attachment_tokens(pm)
    meta = ["rule:" + n for n in sorted(set(_names(rule_hits)) - UNLEARNED_RULES)]
    meta += ["sym:" + n for n in sorted(set(_names(symbols)))]
    meta += _structure_features(pm, body)
    return Sample(tuple(tokens), tuple(meta))


# ---- hashing -------------------------------------------------------------------------------


class Vectorizer:
    """Samples -> (token counts, binary meta) sparse matrices; stateless and deterministic.

    The token block holds ``log1p(count)``; the meta block holds 0/1. Models decide how to
    scale and join the blocks (see :mod:`mailsift.classifier.model`).
    """

    def __init__(self, n_features: int, n_meta: int = DEFAULT_N_META) -> None:
        self.n_features = n_features
        self.n_meta = n_meta
        # scikit-learn's hashers, made on the first batch transform (importing scikit-learn
        # costs a scoring worker ~70 MB; the single-message paths use hash_columns)
        self._hashers: tuple[FeatureHasher, FeatureHasher] | None = None

    @property
    def width(self) -> int:
        return self.n_features + self.n_meta

    def transform_blocks(self, samples: Sequence[Sample]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if self._hashers is None:
            from sklearn.feature_extraction import FeatureHasher

            self._hashers = (
                FeatureHasher(self.n_features, input_type="string", alternate_sign=False),
                FeatureHasher(self.n_meta, input_type="string", alternate_sign=False),
            )
        tok, meta = self._hashers
        xt = tok.transform(s.tokens for s in samples).tocsr()
        xt.data = np.log1p(xt.data)
        xm = meta.transform(s.meta for s in samples).tocsr()
        xm.data = np.minimum(xm.data, 1.0)
        return xt, xm

    def transform(self, samples: Sequence[Sample]) -> sp.csr_matrix:
        import scipy.sparse as sp

        xt, xm = self.transform_blocks(samples)
        return sp.hstack([xt, xm], format="csr")

    def token_columns(self, tokens: Sequence[str]) -> np.ndarray:
        """Column of each token-block feature string (in the joined matrix)."""
        return hash_columns(tokens, self.n_features)

    def meta_columns(self, meta: Sequence[str]) -> np.ndarray:
        """Column of each meta-block feature string (in the joined matrix)."""
        return hash_columns(meta, self.n_meta) + self.n_features

    def hash_sample(self, sample: Sample) -> HashedSample:
        """The sample's features hashed once (see :class:`HashedSample`)."""
        counts = Counter(sample.tokens)
        tokens = list(counts)
        tcounts = np.fromiter(counts.values(), dtype=np.float64, count=len(tokens))
        tcols = hash_columns(tokens, self.n_features)
        meta = list(dict.fromkeys(sample.meta))
        mcols = hash_columns(meta, self.n_meta)
        tvals = np.log1p(tcounts)
        cols, vals, tpos = tcols, tvals, _identity(len(tcols))
        if _has_repeats(tcols):  # distinct strings sharing a column
            cols, tpos = np.unique(tcols, return_inverse=True)
            vals = np.log1p(np.bincount(tpos, weights=tcounts, minlength=len(cols)))
        ucols_m, mpos = mcols, _identity(len(mcols))
        if _has_repeats(mcols):
            ucols_m, mpos = np.unique(mcols, return_inverse=True)
        return HashedSample(
            tokens, tcounts, tvals, tcols, meta, mcols, cols, vals, ucols_m, tpos, mpos
        )

    def column_of(self, features: Sequence[str]) -> np.ndarray:
        """Column index (in the joined matrix) of each prefixed feature string."""
        cols = np.zeros(len(features), dtype=np.int64)
        meta_at = [i for i, f in enumerate(features) if _is_meta(f)]
        if len(meta_at) == len(features):  # the scorer's case: rule / symbol weights
            return self.meta_columns(features)
        tok_at = [i for i, f in enumerate(features) if not _is_meta(f)]
        cols[tok_at] = self.token_columns([features[i] for i in tok_at])
        if meta_at:
            cols[meta_at] = self.meta_columns([features[i] for i in meta_at])
        return cols


def _has_repeats(cols: np.ndarray) -> bool:
    """Whether a column occurs twice (``len(set(cols.tolist())) < len(cols)``); for the
    hundreds of token columns of a message, a sort and one comparison are 5x cheaper than
    building a set of Python ints."""
    if len(cols) < 64:
        return len(set(cols.tolist())) < len(cols)
    ordered = np.sort(cols)
    return bool(np.count_nonzero(ordered[1:] == ordered[:-1]))


_IDENTITY = np.arange(1 << 16)
_IDENTITY.flags.writeable = False


def _identity(n: int) -> np.ndarray:
    return _IDENTITY[:n] if n <= len(_IDENTITY) else np.arange(n)


def hash_columns(features: Sequence[str], n: int) -> np.ndarray:
    """Column of each string in a hashed space of width ``n``: exactly FeatureHasher's
    (``alternate_sign=False``: murmurhash3_32 of the UTF-8 bytes, seed 0, ``abs`` with
    ``abs(-2**31) = 2**31``, modulo), by ``mmh3``, without building a sparse matrix or
    importing scikit-learn. A str is encoded strictly first, as scikit-learn does: a lone
    surrogate raises UnicodeEncodeError (``mmh3.hash`` given such a str crashes the
    process); bytes are hashed as they are; anything else raises TypeError."""
    if n <= 0:
        raise ValueError("n must be positive")
    try:
        keys = map(str.encode, features)
        h = np.fromiter(map(mmh3.hash, keys), dtype=np.int64, count=len(features))
    except TypeError:  # bytes items, or items that are no strings (mmh3 refuses those)
        h = np.fromiter(
            (mmh3.hash(f.encode() if isinstance(f, str) else f) for f in features),
            dtype=np.int64,
            count=len(features),
        )
    return np.abs(h) % n


@dataclass(slots=True)
class HashedSample:
    """One sample hashed once, for the single-message paths (scoring, explanation,
    feedback): its distinct feature strings with their columns, and the row the batch
    :meth:`Vectorizer.transform_blocks` would give it, as (sorted distinct columns, values).

    Token columns index the token block, meta columns the meta block (add ``n_features``
    for the joined space). Distinct strings may share a column (hash collisions): the row
    sums their counts per column, as the sparse matrix does."""

    tokens: list[str]  # distinct token strings, first-seen order
    token_counts: np.ndarray  # occurrences of each
    token_values: np.ndarray  # log1p(count) of each
    token_cols: np.ndarray  # column of each (token block)
    meta: list[str]  # distinct meta strings, first-seen order
    meta_cols: np.ndarray  # column of each (meta block)
    cols: np.ndarray  # distinct token columns
    vals: np.ndarray  # log1p(count) per distinct token column
    mcols: np.ndarray  # distinct meta columns (value 1 each)
    token_pos: np.ndarray  # position of each token string's column in ``cols``
    meta_pos: np.ndarray  # position of each meta string's column in ``mcols``


def _is_meta(feature: str) -> bool:
    return feature.startswith(("rule:", "sym:", "st:"))


def feature_values(sample: Sample) -> tuple[list[str], np.ndarray, list[str]]:
    """(distinct tokens, their values log1p(count), distinct meta features (value 1))."""
    counts = Counter(sample.tokens)
    tokens = list(counts)
    values = np.log1p(np.fromiter(counts.values(), dtype=float, count=len(tokens)))
    return tokens, values, list(dict.fromkeys(sample.meta))
