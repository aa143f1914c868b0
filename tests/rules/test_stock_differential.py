"""The stock SpamAssassin rules: compile counts, and Hyperscan == Python re on real mail.

The differential test is the strong one: every compiled stock rule (the sub-rules and
score-0 rules a scoring rule depends on included; the others are pruned, as SpamAssassin
does) must give the same value with the serving engine (Hyperscan databases, exact +
prefilter, with PCRE2 deciding what Hyperscan cannot) as with Python ``re`` alone, over a
sample of the public corpus.
"""

from __future__ import annotations

from mailsift.classifier.rules import RuleSet, load_ruleset
from mailsift.config import load_settings
from mailsift.message import parse


def test_stock_rules_compile_the_large_majority(stock_rules: RuleSet) -> None:
    st = stock_rules.stats()
    regex = st.hyperscan + st.prefilter + st.re_only
    assert regex >= 1200
    assert st.hyperscan >= 1000  # answered by hyperscan alone
    assert st.re_only <= 50
    assert st.metas >= 750
    reasons = dict(stock_rules.skipped)
    assert reasons["RCVD_IN_SBL"].startswith(("eval test not implemented", "inside inactive block"))
    assert not any(r.startswith("regex error") for r in reasons.values())
    # every regex rule that was not compiled has a reason, none crashed the load
    assert all(reason for _, reason in stock_rules.skipped)


def test_stock_cache_reused(stock_rules: RuleSet, stock_cache) -> None:  # type: ignore[no-untyped-def]
    again = load_ruleset(load_settings(rules={"cache_dir": str(stock_cache)}))
    assert again.stats().cached
    assert again.names == stock_rules.names


def test_slow_stock_rules_are_excluded_by_default(stock_rules: RuleSet) -> None:
    reasons = dict(stock_rules.skipped)
    assert reasons["__MY_MALWARE"] == "excluded by configuration"
    assert reasons["__FILL_THIS_FORM_LONG1"] == "excluded by configuration"
    assert "GTUBE" in stock_rules.names and "MS_META_PHISH" in stock_rules.names


def test_stock_mimeheader_rules_run(stock_rules: RuleSet) -> None:
    # the MIMEHeader plugin's rules (attachment names and types) and the metas over them
    assert stock_rules.rule_kind("TVD_FW_GRAPHIC_NAME_LONG") == "mimeheader"
    assert stock_rules.stats().by_type["mimeheader"] >= 30
    raw = (
        b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n--B\r\n"
        b'Content-Type: image/gif; name="qwertyuiop.gif"\r\n\r\nGIF89a\r\n--B--\r\n'
    )
    assert "TVD_FW_GRAPHIC_NAME_LONG" in {s.name for s in stock_rules.evaluate(parse(raw))}


def test_unused_stock_rules_are_pruned(stock_rules: RuleSet) -> None:
    reasons = dict(stock_rules.skipped)
    # scored 0 in 50_scores.cf and used by no meta: never run
    assert reasons["FUZZY_MONEY"].startswith("unused")
    assert "FUZZY_MONEY" not in stock_rules.names
    pruned = [n for n, r in stock_rules.skipped if r.startswith("unused")]
    assert len(pruned) >= 200
    # every scoring rule survives, and every rule a kept meta names is compiled or skipped
    # for a reason of its own (never pruned)
    kept = set(stock_rules.names)
    assert not any(n in kept for n in pruned)


def test_hyperscan_and_re_agree_on_corpus(
    stock_rules: RuleSet, stock_rules_re: RuleSet, corpus_sample: list[bytes]
) -> None:
    assert stock_rules.names == stock_rules_re.names
    names = stock_rules.names
    mismatches: dict[str, int] = {}
    total_hits = 0
    for raw in corpus_sample:
        pm = parse(raw)
        a = stock_rules.hit_values(pm)
        b = stock_rules_re.hit_values(pm)
        total_hits += sum(1 for v in a if v)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                mismatches[names[i]] = mismatches.get(names[i], 0) + 1
    assert mismatches == {}
    assert total_hits > len(corpus_sample) * 5  # the rules really fire on real mail


def test_stock_gtube_and_default_together(stock_rules: RuleSet) -> None:
    from .conftest import DATA

    pm = parse((DATA / "gtube.eml").read_bytes())
    assert "GTUBE" in {s.name for s in stock_rules.evaluate(pm)}
