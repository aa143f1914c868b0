"""Rule-evaluation speed: stock SpamAssassin rules + our defaults over corpus messages.

Run: ``.venv/bin/python -m bench.bench_rules [--messages 500] [--re-messages 100]``

Loads the configured rule set (``load_ruleset``: stock rules when installed, our defaults;
the Hyperscan databases come from the cache under ``var/cache/rules`` after the first run),
parses ~500 messages read in place from the SpamAssassin public corpus archives (parsing is
not timed), then times ``RuleSet.hit_values`` per message: mean / p50 / p99 in ms, with the
split of regex rules between Hyperscan (exact), Hyperscan prefilter + confirmation, and
no Hyperscan. What Hyperscan cannot decide alone is decided by the native PCRE2 matcher
(``rules.pcre``, the default) or Python ``re``: both are timed, and the same rules with
PCRE2 alone and with ``re`` alone on fewer messages, for comparison. Figures are noisy on
a shared machine: run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mailsift.classifier.rules import RuleSet, configured_paths, engine, load_ruleset
from mailsift.config import load_settings
from mailsift.message import ParsedMessage, parse
from mailsift.pipeline.corpus import sample_messages


def corpus_messages(corpus: Path, total: int) -> list[bytes]:
    """About ``total`` messages, the same number from each archive."""
    archives = [p for p in corpus.iterdir() if p.name.endswith(".tar.bz2")]
    return sample_messages(corpus, max(1, total // max(1, len(archives))))[:total]


def time_rules(rs: RuleSet, messages: list[ParsedMessage]) -> list[float]:
    for pm in messages[:5]:  # warm-up: scratch allocation, lazy imports
        rs.hit_values(pm)
    times: list[float] = []
    for pm in messages:
        t0 = time.perf_counter()
        rs.hit_values(pm)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def summary(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{label}: {len(times)} messages, mean {statistics.fmean(times):.2f} ms, "
        f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--re-messages", type=int, default=100)
    args = ap.parse_args()
    settings = load_settings()
    corpus = settings.paths.corpus
    if corpus is None or not corpus.is_dir():
        raise SystemExit("corpus not found: set MAILSIFT_CORPUS")

    t0 = time.perf_counter()
    rs = load_ruleset(settings)
    load_s = time.perf_counter() - t0
    st = rs.stats()
    print(f"rule files: {', '.join(str(p) for p in configured_paths(settings))}")
    print(
        f"rules: {len(rs.names)} compiled ({st.metas} meta, {st.evals} eval), "
        f"{len(rs.skipped)} skipped; loaded in {load_s:.1f} s (cache {'hit' if st.cached else 'miss'})"
    )
    print(
        f"regex rules: {st.hyperscan} hyperscan exact, {st.prefilter} hyperscan prefilter + "
        f"confirmation, {st.re_only} without hyperscan; decided by "
        f"{'PCRE2 ' + str(engine.PCRE_VERSION) if rs.use_pcre else 'Python re'}"
    )

    raws = corpus_messages(corpus, args.messages)
    t0 = time.perf_counter()
    parsed = [parse(r) for r in raws]
    parse_ms = (time.perf_counter() - t0) * 1000.0 / max(1, len(parsed))
    sizes = sorted(len(r) for r in raws)
    print(
        f"messages: {len(parsed)}, median size {sizes[len(sizes) // 2]} bytes, parse {parse_ms:.2f} ms/msg (not timed below)"
    )

    print(summary("hyperscan + pcre2" if rs.use_pcre else "hyperscan + re", time_rules(rs, parsed)))
    if rs.use_pcre:
        print(summary("hyperscan + re", time_rules(rs.variant(use_pcre=False), parsed)))
        rs_pcre = rs.variant(use_hyperscan=False)
        print(summary("pcre2 only", time_rules(rs_pcre, parsed[: args.re_messages])))
    rs_re = rs.variant(use_hyperscan=False, use_pcre=False)
    print(summary("python re only", time_rules(rs_re, parsed[: args.re_messages])))


if __name__ == "__main__":
    main()
