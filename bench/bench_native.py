"""The package's C modules against maintained libraries, on the whole shared corpus.

    .venv/bin/python -m bench.bench_native hashing [--repeat 5]
    .venv/bin/python -m bench.bench_native pcre [--repeat 3]   # needs: pip install pcre2
    .venv/bin/python -m bench.bench_native htmldepth [--repeat 3]   # needs: pip install lxml

Every message of ``../shared/corpora`` (the SpamAssassin archives and the modern ones) is
read and parsed first; then, per subcommand:

* **hashing**: the feature strings the extractor makes for each message (its tokens, its
  structure features and ``rule:NAME`` for the configured rules' hits), hashed by
  ``features.hash_columns`` (``mmh3``, strings encoded first), by ``mmh3`` on the strings
  as they are, and by the C module ``_hashing`` it replaced where a build still has it:
  columns identical to scikit-learn's ``murmurhash3_32`` (FeatureHasher's hash) in the
  token space (2**20), the meta space (2**16) and 2**32 (``abs`` of the hash), and signed
  hashes identical on every distinct string; time per message of the scorer's hashing
  (``hash_sample``'s two calls), against the scoring path (parse + rules + features).
* **pcre**: every rule the engine runs through PCRE2 (prefilter confirmations, ``multiple``
  counts, patterns Hyperscan does not hold, small targets, ``mimeheader`` rules), searched
  and counted on the text the engine gives it in every message by ``_pcre`` and by the
  ``pcre2`` PyPI bindings: identical answers, and the time of those calls; then the
  engine's per-rule values on every message with each matcher deciding, and its time per
  message.
* **htmldepth**: ``_htmldepth.cap`` against the nesting depth of the same HTML as
  ``html.parser`` tokenizes it, as selectolax (lexbor, the tree builder the bound protects)
  builds it, and as lxml (libxml2's HTML parser) builds it: the same decision (beyond
  ``MAX_HTML_DEPTH`` or not) on every HTML part of the corpus, time per part; then time
  on a few hostile shapes.

Timings alternate the candidates and keep each one's best of ``--repeat`` rounds; they are
CPU time of this thread, noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mailsift.config import PROJECT_ROOT, load_settings
from mailsift.message import ParsedMessage, parse
from mailsift.pipeline.corpus import iter_corpus

CORPORA = PROJECT_ROOT.parent / "shared" / "corpora"


def corpus_raws() -> list[bytes]:
    """Every message of the shared corpora, in corpus order."""
    out: list[bytes] = []
    for sub in ("spamassassin", "modern"):
        out.extend(item.raw for item in iter_corpus(CORPORA / sub))
    return out


def best_of(rounds: int, candidates: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Thread CPU seconds of each candidate, best of ``rounds``, candidates alternating."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = time.thread_time()
            fn()
            best[name] = min(best[name], time.thread_time() - t0)
    return best


def ruleset() -> Any:
    from mailsift.classifier.rules import load_ruleset

    return load_ruleset(load_settings())


# ---- hashing -----------------------------------------------------------------------------


def mmh3_plain(features: Sequence[str], n: int) -> np.ndarray:
    """mmh3 called on the strings as they are (not safe on lone surrogates: measured only)."""
    import mmh3

    h = np.fromiter(map(mmh3.hash, features), dtype=np.int64, count=len(features))
    return np.abs(h) % n


def reference(features: Sequence[str], n: int) -> np.ndarray:
    """scikit-learn's murmurhash3_32 (FeatureHasher's hash), one string at a time."""
    from sklearn.utils import murmurhash3_32

    h = np.array([murmurhash3_32(f, 0, False) for f in features], dtype=np.int64)
    return np.abs(h) % n


def cmd_hashing(rounds: int) -> None:
    import mmh3
    from sklearn.utils import murmurhash3_32

    from mailsift.classifier.features import DEFAULT_N_META, hash_columns, make_sample

    candidates: dict[str, Callable[[Sequence[str], int], np.ndarray]] = {}
    try:  # the C module this replaced, where a build of an earlier commit still has it
        _hashing = importlib.import_module("mailsift.classifier._hashing")

        def native(features: Sequence[str], n: int) -> np.ndarray:
            return np.frombuffer(_hashing.columns(features, n), dtype=np.int64)

        candidates["_hashing (C)"] = native
    except ImportError:
        print("mailsift.classifier._hashing is not built: mmh3 against scikit-learn only")
    candidates["hash_columns (mmh3)"] = hash_columns
    candidates["mmh3 plain"] = mmh3_plain

    n_tok = load_settings().model.n_features
    rs = ruleset()
    msgs: list[tuple[list[str], list[str]]] = []
    path_s = 0.0
    surrogates = 0
    for raw in corpus_raws():
        t0 = time.thread_time()
        pm = parse(raw)
        s = make_sample(pm, rs.evaluate(pm))
        path_s += time.thread_time() - t0
        tokens = list(Counter(s.tokens))
        meta = list(dict.fromkeys(s.meta))
        surrogates += sum(not _encodes(t) for t in tokens + meta)
        msgs.append(([t for t in tokens if _encodes(t)], [m for m in meta if _encodes(m)]))
    every = [t for tok, _ in msgs for t in tok] + [m for _, meta in msgs for m in meta]
    every += ["rule:" + n for n in rs.names]
    print(f"messages: {len(msgs)}; feature strings: {len(every)} ({len(set(every))} distinct)")
    print(f"strings that do not encode (lone surrogates, left out above): {surrogates}")
    for n in (n_tok, DEFAULT_N_META, 2**32):
        want = reference(every, n)
        same = {k: bool(np.array_equal(fn(every, n), want)) for k, fn in candidates.items()}
        print(f"columns mod {n} identical to scikit-learn's: {same}")
    distinct = sorted(set(every))
    signed = all(mmh3.hash(x.encode()) == murmurhash3_32(x, 0, False) for x in distinct)
    print(f"signed mmh3 hash = scikit-learn's murmurhash3_32 on every distinct string: {signed}")

    def run(fn: Callable[[Sequence[str], int], np.ndarray]) -> Callable[[], None]:
        def go() -> None:
            for tok, meta in msgs:
                fn(tok, n_tok)
                fn(meta, DEFAULT_N_META)

        return go

    t = best_of(rounds, {k: run(fn) for k, fn in candidates.items()})
    per = {k: v / len(msgs) * 1e6 for k, v in t.items()}
    path_us = path_s / len(msgs) * 1e6
    print(f"scoring path without the hashing (parse + rules + features): {path_us:.0f} us/message")
    base = next(iter(per.values()))
    for k, v in per.items():
        delta = (v - base) / (path_us + base) * 100
        print(f"{k}: {v:.1f} us/message; scoring path {delta:+.2f}% against the first")


def _encodes(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---- pcre --------------------------------------------------------------------------------


class Pcre2Regex:
    """The ``pcre2`` bindings behind ``_pcre.Regex``'s two calls (a limit error of theirs
    is raised as ``_pcre.LimitError`` so that the engine decides with ``re`` as it does)."""

    def __init__(self, pattern: bytes, flags: int) -> None:
        import pcre2

        fl = 0
        if flags & re.IGNORECASE:
            fl |= pcre2.IGNORECASE
        if flags & re.MULTILINE:
            fl |= pcre2.MULTILINE
        if flags & re.DOTALL:
            fl |= pcre2.DOTALL
        self._p = pcre2.compile(pattern, fl, jit=True)

    def search(self, data: bytes, pos: int = 0) -> bool:
        try:
            return self._p.search(data, pos) is not None
        except Exception as exc:
            raise _limit_error(exc) from exc

    def count(self, data: bytes, pos: int = 0, limit: int = sys.maxsize) -> int:
        try:
            return sum(1 for _ in itertools.islice(self._p.finditer(data, pos), limit))
        except Exception as exc:
            raise _limit_error(exc) from exc


def _limit_error(exc: Exception) -> Exception:
    from mailsift.classifier.rules import _pcre

    return _pcre.LimitError(str(exc))


def pcre_work(rs: Any, pms: list[ParsedMessage]) -> list[tuple[Any, list[bytes]]]:
    """Each entry the engine decides with PCRE2, with the texts it reads in every message."""
    from mailsift.classifier.rules.views import MessageViews, header_request, to_bytes

    views = [MessageViews(pm, rs.max_scan_bytes) for pm in pms]
    work: list[tuple[Any, list[bytes]]] = []
    fixed = {"body": "body", "rawbody": "rawbody", "full": "full"}
    for t in rs._all_targets():
        entries = [e for e in t.entries if e.pc is not None]
        if not entries:
            continue
        if t.key in fixed:
            texts = [getattr(v, fixed[t.key]) for v in views]
        elif t.key == "uri":
            texts = [to_bytes(u.url) for pm in pms for u in pm.urls[:200]]
        else:
            ht = next(h for h in rs._headers.values() if h.target is t)
            texts = [x for v in views if (x := header_request(v, ht.name, ht.modifiers))]
        work.extend((e, texts) for e in entries)
    for e, lname, raw, unset in rs._mime:
        texts = [unset if x is None else x for v in views for x in v.part_header_values(lname, raw)]
        work.append((e, texts))
    return work


def cmd_pcre(rounds: int) -> None:
    import pcre2

    from mailsift.classifier.rules import _pcre

    rs = ruleset()
    pms = [parse(raw) for raw in corpus_raws()]
    work = pcre_work(rs, pms)
    print(f"PCRE2: _pcre {_pcre.version()}, pcre2 bindings {pcre2.__libpcre2_version__}")
    print(f"messages: {len(pms)}; rules decided by PCRE2: {len(work)}")
    theirs = [(e, Pcre2Regex(e.hs_pattern, e.py.flags), texts) for e, texts in work]
    calls = differ = limits = 0
    for e, p2, texts in theirs:
        for data in texts:
            calls += 1
            try:
                a = e.pc.count(data, 0, e.multiple) if e.multiple else e.pc.search(data, 0)
            except _pcre.LimitError:
                a = "limit"
            try:
                b = p2.count(data, 0, e.multiple) if e.multiple else p2.search(data, 0)
            except _pcre.LimitError:
                b = "limit"
            limits += "limit" in (a, b)
            if a != b:
                differ += 1
                if differ <= 10:
                    print(f"  differs: {rs.names[e.rule]} {a!r} != {b!r}")
    print(f"calls: {calls}; answers that differ: {differ}; limit errors: {limits}")

    def run(pick: Callable[[Any, Any], Any]) -> Callable[[], None]:
        def go() -> None:
            for e, p2, texts in theirs:
                m = pick(e.pc, p2)
                if e.multiple:
                    for data in texts:
                        m.count(data, 0, e.multiple)
                else:
                    for data in texts:
                        m.search(data, 0)

        return go

    t = best_of(rounds, {"_pcre": run(lambda a, b: a), "pcre2": run(lambda a, b: b)})
    for k, v in t.items():
        print(f"{k}: {v:.2f} s for {calls} calls ({v / calls * 1e6:.2f} us/call)")

    # the engine with each matcher deciding: per-rule values and time per message
    ours = rs
    alt = rs.variant()
    for t_ in alt._all_targets():
        for e in t_.entries:
            if e.pc is not None:
                e.pc = Pcre2Regex(e.hs_pattern, e.py.flags)
    for e, *_ in alt._mime:
        if e.pc is not None:
            e.pc = Pcre2Regex(e.hs_pattern, e.py.flags)
    same = sum(ours.hit_values(pm) == alt.hit_values(pm) for pm in pms)
    print(f"engine per-rule values identical on {same} of {len(pms)} messages")

    def engine(r: Any) -> Callable[[], None]:
        def go() -> None:
            for pm in pms:
                r.hit_values(pm)

        return go

    t = best_of(rounds, {"_pcre": engine(ours), "pcre2": engine(alt)})
    for k, v in t.items():
        print(f"engine with {k}: {v / len(pms) * 1e3:.3f} ms/message")


# ---- htmldepth ---------------------------------------------------------------------------

VOID = frozenset(
    [
        "area",
        "base",
        "basefont",
        "bgsound",
        "br",
        "col",
        "embed",
        "frame",
        "hr",
        "image",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)

# flat or deep shapes that make an HTML5 tree builder's work grow faster than the input
HOSTILE = {
    "20,000 nested <div>": "<div>" * 20_000 + "x" + "</div>" * 20_000,
    "40,000 unclosed <font>": "<font>" * 40_000 + "x",
    "40,000 nested lists": "<ul><li>" * 40_000,
    "stray end tags": "<div></b>" * 40_000 + "x",
    "one select of 20,000 options": "<select>" + "<option>x" * 20_000,
}


def depth_html_parser(html: str) -> int:
    """Deepest element nesting as ``html.parser`` tokenizes it: a start tag opens (void
    elements, html, head and body excepted), an end tag closes up to the innermost open
    element of its name."""
    from html.parser import HTMLParser

    class Depth(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=False)
            self.stack: list[str] = []
            self.open: Counter[str] = Counter()
            self.deepest = 0

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag not in VOID and tag not in ("html", "head", "body"):
                self.stack.append(tag)
                self.open[tag] += 1
                self.deepest = max(self.deepest, len(self.stack))

        def handle_endtag(self, tag: str) -> None:
            if not self.open[tag]:  # closes nothing (no search through the stack)
                return
            while True:
                name = self.stack.pop()
                self.open[name] -= 1
                if name == tag:
                    return

    p = Depth()
    p.feed(html)
    p.close()
    return p.deepest


def depth_selectolax(html: str) -> int:
    """Deepest element nesting of the tree lexbor (selectolax) builds, below <html>."""
    from selectolax.lexbor import LexborHTMLParser

    root = LexborHTMLParser(html).root
    if root is None:
        return 0
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        child = node.child
        while child is not None:
            if child.tag and not child.tag.startswith("-"):
                stack.append((child, d + 1))
            child = child.next
    return deepest


def depth_lxml(html: str) -> int:
    """Deepest element nesting of the tree libxml2's HTML parser (lxml) builds."""
    import lxml.etree
    import lxml.html

    try:
        doc = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return 0
    deepest = d = 0
    for event, _ in lxml.etree.iterwalk(doc, events=("start", "end")):
        d += 1 if event == "start" else -1
        deepest = max(deepest, d)
    return deepest


def depth_cap(html: str) -> int:
    """The depth ``_htmldepth.cap`` counts: the least bound it leaves the document within
    (1 for depths 0 and 1: it takes no bound below 1; ``MAX_HTML_DEPTH + 1`` beyond)."""
    from mailsift import _htmldepth
    from mailsift.message import MAX_HTML_DEPTH

    lo, hi = 1, MAX_HTML_DEPTH + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _htmldepth.cap(html, mid) is None:
            hi = mid
        else:
            lo = mid + 1
    return lo


def cmd_htmldepth(rounds: int) -> None:
    from mailsift import _htmldepth
    from mailsift.message import MAX_HTML_DEPTH

    htmls = [pm.html for pm in (parse(raw) for raw in corpus_raws()) if pm.html]
    print(f"HTML parts: {len(htmls)}, {sum(map(len, htmls)) / 1e6:.1f} M characters")

    def cap(html: str) -> bool:
        return _htmldepth.cap(html, MAX_HTML_DEPTH) is not None

    candidates: dict[str, Callable[[str], bool]] = {
        "_htmldepth.cap": cap,
        "html.parser": lambda h: depth_html_parser(h) > MAX_HTML_DEPTH,
        "selectolax (lexbor)": lambda h: depth_selectolax(h) > MAX_HTML_DEPTH,
        "lxml": lambda h: depth_lxml(h) > MAX_HTML_DEPTH,
    }
    want = [cap(h) for h in htmls]
    print(f"parts beyond the bound ({MAX_HTML_DEPTH}) by _htmldepth.cap: {sum(want)}")
    for name, fn in candidates.items():
        got = [fn(h) for h in htmls]
        agree = sum(a == b for a, b in zip(got, want, strict=True))
        print(f"{name}: beyond the bound {sum(got)}; same decision on {agree} of {len(htmls)}")
    # each library's depth (html, head and body left out; 0 read as 1) against cap's
    ours = [depth_cap(h) for h in htmls]
    for name, depth in (
        ("html.parser", lambda h: max(1, depth_html_parser(h))),
        ("selectolax (lexbor)", lambda h: max(1, depth_selectolax(h) - 2)),
        ("lxml", lambda h: max(1, depth_lxml(h) - 2)),
    ):
        theirs = [depth(h) for h in htmls]
        pairs = list(zip(theirs, ours, strict=True))
        print(
            f"{name} depth vs _htmldepth's: equal {sum(a == b for a, b in pairs)}, "
            f"shallower {sum(a < b for a, b in pairs)}, deeper {sum(a > b for a, b in pairs)} "
            f"(by at most {max(a - b for a, b in pairs)}); deepest {max(theirs)} vs {max(ours)}"
        )

    def run(fn: Callable[[str], bool]) -> Callable[[], None]:
        def go() -> None:
            for h in htmls:
                fn(h)

        return go

    t = best_of(rounds, {k: run(fn) for k, fn in candidates.items()})
    for k, v in t.items():
        print(f"{k}: {v / len(htmls) * 1e6:.1f} us/part ({v:.2f} s for the corpus)")
    for shape, html in HOSTILE.items():
        cells = []
        for name, fn in candidates.items():
            t0 = time.thread_time()
            beyond = fn(html)
            cells.append(
                f"{name} {'beyond' if beyond else 'within'} {time.thread_time() - t0:.3f} s"
            )
        print(f"{shape}: " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("module", choices=["hashing", "pcre", "htmldepth"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    {"hashing": cmd_hashing, "pcre": cmd_pcre, "htmldepth": cmd_htmldepth}[args.module](args.repeat)


if __name__ == "__main__":
    main()
