"""Hyperscan database cache, pickling for joblib workers, load_ruleset, the CLI, threads."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typer.testing import CliRunner

from mailsift.classifier.rules import DEFAULT_RULES_DIR, RuleSet, configured_paths, load_ruleset
from mailsift.cli import app
from mailsift.config import load_settings
from mailsift.message import parse

from .conftest import DATA, hits

FIXTURES = sorted(DATA.glob("*.eml"))


def _all_hits(rs: RuleSet) -> list[set[str]]:
    return [hits(rs, parse(p.read_bytes())) for p in FIXTURES]


def test_cache_is_written_then_reused(tmp_path: Path) -> None:
    first = RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    assert not first.stats().cached
    files = list(tmp_path.glob("rules-*.hsdb"))
    assert len(files) == 1
    second = RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    assert second.stats().cached
    assert second.stats().hyperscan == first.stats().hyperscan > 0
    assert _all_hits(first) == _all_hits(second)


def test_changed_rules_get_a_new_cache_entry(tmp_path: Path) -> None:
    a = tmp_path / "a.cf"
    a.write_text("body A /alpha/\n")
    RuleSet.load([a], cache_dir=tmp_path / "c")
    a.write_text("body A /alpha/\nbody B /beta/\n")
    rs = RuleSet.load([a], cache_dir=tmp_path / "c")
    assert not rs.stats().cached
    assert len(list((tmp_path / "c").glob("rules-*.hsdb"))) == 2


def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    (cache,) = tmp_path.glob("rules-*.hsdb")
    data = bytearray(cache.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    cache.write_bytes(bytes(data))
    rs = RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    assert not rs.stats().cached
    assert any("unusable" in w for w in rs.warnings)
    assert _all_hits(rs) == _all_hits(RuleSet.load([DEFAULT_RULES_DIR], use_hyperscan=False))
    assert RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path).stats().cached


def test_pickle_round_trip_reloads_from_cache(tmp_path: Path) -> None:
    rs = RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    blob = pickle.dumps(rs)
    assert b"hyperscan" not in blob.lower() or len(blob) < 2_000_000
    clone = pickle.loads(blob)  # our own object, in-process: not untrusted input
    assert clone.stats().cached
    assert clone.names == rs.names
    assert _all_hits(clone) == _all_hits(rs)


def test_threads_share_a_ruleset(tmp_path: Path) -> None:
    rs = RuleSet.load([DEFAULT_RULES_DIR], cache_dir=tmp_path)
    expected = _all_hits(rs)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _i: _all_hits(rs), range(8)))
    assert all(r == expected for r in results)


def test_load_ruleset_order_and_overrides(tmp_path: Path) -> None:
    stock = tmp_path / "stock.cf"
    stock.write_text("body STOCK_RULE /stocky/\nbody GTUBE /never-matches/\nscore GTUBE 1\n")
    extra = tmp_path / "local.cf"
    extra.write_text(
        "body MS_BODY_EXCLAIM /!{9,}/\nscore MS_BODY_EXCLAIM 0.1\nscore STOCK_RULE 0\n"
    )
    settings = load_settings(
        rules={
            "stock_paths": [str(stock)],
            "extra_paths": [str(extra)],
            "cache_dir": str(tmp_path / "c"),
        }
    )
    assert configured_paths(settings) == [stock, DEFAULT_RULES_DIR, extra]
    rs = load_ruleset(settings)
    gt = (DATA / "gtube.eml").read_bytes()
    assert "GTUBE" in hits(rs, parse(gt))  # our definition (later) replaced the stock one
    got = hits(rs, parse(b"Subject: x\n\nstocky!!!\n"))
    assert "STOCK_RULE" not in got  # disabled by score 0 in the extra file
    assert "MS_BODY_EXCLAIM" not in got  # redefined by the extra file
    assert rs.score_of("MS_BODY_EXCLAIM") == 0.1
    no_stock = load_ruleset(
        load_settings(rules={"use_stock": False, "cache_dir": str(tmp_path / "c")})
    )
    assert "STOCK_RULE" not in no_stock.names


def test_cli_rules_check(tmp_path: Path) -> None:
    cf = tmp_path / "r.cf"
    cf.write_text(
        "body GOOD /ok/\nbody LOOK /(?<!x)y/\nbody BAD /(/\n"
        "body EV1 eval:check_foo()\nbody EV2 eval:check_bar()\nmeta M GOOD && LOOK\n"
    )
    runner = CliRunner()
    res = runner.invoke(
        app, ["rules", "check", str(cf), "--json", "--cache-dir", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["compiled"] == 3
    assert out["by_type"] == {"body": 2, "meta": 1}
    assert out["regex"] == {"hyperscan": 1, "hyperscan_prefilter_re": 1, "re_only": 0}
    assert out["skipped_reasons"]["eval test not implemented"] == 2
    assert out["skipped"] == 3
    res = runner.invoke(app, ["rules", "check", str(cf), "--verbose", "--no-hyperscan"])
    assert res.exit_code == 0
    assert "EV1: eval test not implemented: check_foo" in res.output
    assert "0 hyperscan, 0 hyperscan prefilter + re, 2 re only" in res.output
    res = runner.invoke(app, ["rules", "check", str(tmp_path / "missing")])
    assert res.exit_code == 2


def test_cli_rules_test(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["rules", "test", str(DATA / "gtube.eml"), "--rules", str(DEFAULT_RULES_DIR)]
    )
    assert res.exit_code == 0, res.output
    assert "GTUBE" in res.output
