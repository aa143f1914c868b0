"""``mailsift checks``: the checks in order with stage, state, skip flags, symbols, scores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_checks_command(tmp_path: Path, toml: str) -> str:
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(toml, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSIFT_")}
    env["MAILSIFT_CONFIG"] = str(cfg)
    done = subprocess.run(
        [sys.executable, "-m", "mailsift.cli", "checks"],
        env=env, capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path,
    )  # fmt: skip
    return done.stdout


def test_lists_checks_in_order_with_scores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = run_checks_command(
        tmp_path,
        '[checks]\norder = ["rdns", "lists_client", "greylist"]\n'
        "[greylist]\nenabled = false\n"
        "[scores]\nRDNS_NONE = 2.5\n",
    )
    heads = [line.split() for line in out.splitlines() if not line.startswith("       ")]
    # the ordered checks first (by stage, then the configured order), then the others
    assert [h[:4] for h in heads[:3]] == [
        ["1", "rdns", "CONNECT", "enabled"],
        ["2", "lists_client", "CONNECT", "enabled"],
        ["3", "greylist", "RCPT", "disabled"],
    ]
    rest = {h[1]: h for h in heads[3:]}
    assert {"dnsbl", "helo", "spf", "dkim", "dmarc", "antivirus", "uribl"} <= set(rest)
    assert all(h[0] == "-" for h in rest.values())
    assert "skips: authenticated, relay_clients, whitelisted" in out.splitlines()[0]
    lines = [line.split() for line in out.splitlines()]
    assert ["RDNS_NONE", "2.50*", "client", "IP", "has", "no", "PTR", "record"] in lines
    assert ["RDNS_NOT_FCRDNS", "1.00"] == next(x[:2] for x in lines if x[0] == "RDNS_NOT_FCRDNS")
    assert "DNSBL_<ZONE>_<REASON>: the zone's weight" in out
