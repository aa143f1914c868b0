"""build_checks: the enabled checks, in stage order, wired to the given resolver and stores."""

from __future__ import annotations

from mailsift.smtpd.checks import build_checks
from mailsift.smtpd.checks.base import Check, Stage
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.store.greylist import SqliteGreylistStore
from tests.checks.helpers import make_settings


def test_all_checks_in_stage_order(dns_settings, sqlite_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(dns_settings, tmp_path, barring={"sender": ["*@netcom.com"]})
    resolver = make_resolver(settings.dns)
    checks = build_checks(settings, resolver=resolver, store=sqlite_store)
    assert all(isinstance(c, Check) for c in checks)
    stages = [c.stage for c in checks]
    assert stages == sorted(stages)
    assert [c.name for c in checks] == [
        "lists_client", "dnsbl", "rdns",
        "helo",
        "lists_sender", "barring_sender", "spf",
        "barring_recipient", "lists_recipient", "greylist",
        "antivirus", "dkim", "dmarc", "uribl",
    ]  # fmt: skip
    assert {c.stage for c in checks} == set(Stage)
    assert all(getattr(c, "resolver", resolver) is resolver for c in checks)
    assert (tmp_path / "greylist.db").exists()  # the default SQLite greylist store


def test_disabled_checks_are_left_out(dns_settings, sqlite_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        dns_settings,
        tmp_path,
        dnsbl={"enabled": False},
        rdns={"enabled": False},
        greylist={"enabled": False},
        antivirus={"enabled": False},
        auth={"spf": False, "dkim": False, "arc": False, "dmarc": False},
        barring={"recipient": []},
    )
    names = [c.name for c in build_checks(settings, store=sqlite_store)]
    assert names == ["lists_client", "lists_sender", "lists_recipient"]


def test_greylist_store_can_be_shared(dns_settings, sqlite_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = SqliteGreylistStore(tmp_path / "shared.db")
    settings = make_settings(dns_settings, tmp_path)
    (grey,) = [c for c in build_checks(settings, store=sqlite_store, greylist_store=shared)
               if c.name == "greylist"]  # fmt: skip
    assert grey.store is shared  # type: ignore[attr-defined]
