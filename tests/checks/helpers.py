"""Shared test helpers for the checks: settings against the test DNS world, contexts."""

from __future__ import annotations

from typing import Any

from mailsift.config import DnsblZone, Settings, load_settings
from mailsift.smtpd.checks.base import CheckResult, SmtpContext, Stage
from mailsift.smtpd.runner import CheckRunner

ZEN = DnsblZone(
    zone="zen.dnsbl.test",
    weight=4.0,
    symbol="ZEN",
    codes={"127.0.0.2": "SBL", "127.0.0.3": "SBL_CSS", "127.0.0.4": "XBL", "127.0.0.10": "PBL"},
)
OTHER = DnsblZone(zone="other.dnsbl.test", weight=1.5)
DBL = DnsblZone(
    zone="dbl.dnsbl.test",
    weight=3.0,
    kind="domain",
    symbol="DBL",
    codes={"127.0.1.2": "SPAM", "127.0.1.4": "PHISH"},
)


def make_settings(dns_settings, tmp_path=None, **blocks) -> Settings:  # type: ignore[no-untyped-def]
    """Settings for the checks, DNS pointed at the test server, DNSBL zones configured."""
    base: dict = {
        "dns": dns_settings.model_dump(),
        "dnsbl": {"zones": [ZEN.model_dump(), OTHER.model_dump(), DBL.model_dump()]},
        "smtp": {"hostname": "mx.mailsift.test", "local_domains": ["mailsift.test"]},
        "rdns": {"our_ips": ["203.0.113.25"]},
    }
    if tmp_path is not None:
        base["paths"] = {"var_dir": str(tmp_path)}
    for k, v in blocks.items():
        base[k] = {**base.get(k, {}), **v}
    return load_settings(**base)


def names(res) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.name for s in res.symbols}


def ctx(ip: str = "192.0.2.10", **kw) -> SmtpContext:  # type: ignore[no-untyped-def]
    return SmtpContext(client_ip=ip, **kw)


async def run_in_runner(check: Any, ctx: SmtpContext) -> CheckResult | None:
    """`check` at its stage through the filter's ``CheckRunner`` (which applies the skip
    flags): its recorded result, None when it was skipped without one."""
    out = await CheckRunner([check]).run(Stage(check.stage), ctx)
    return out.results[0] if out.results else None
