"""Greylisting: the store contract on SQLite and real Redis, and the check's policy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mailsift.config import GreylistSettings
from mailsift.smtpd.checks.base import CheckAction, SmtpContext
from mailsift.smtpd.checks.greylist import Greylist, client_network, normalise_sender
from mailsift.store.greylist import (
    GreylistStore,
    RedisGreylistStore,
    SqliteGreylistStore,
    open_greylist_store,
)
from tests.checks.helpers import run_in_runner
from tests.store.greylist_contract import assert_client_passes_count, assert_triplets_round_trip

REDIS_URL = "redis://127.0.0.1:6379/0"
DAY = 86400.0


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path) -> Iterator[GreylistStore]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s: GreylistStore = SqliteGreylistStore(tmp_path / "greylist.db")
        yield s
        s.close()
        return
    prefix = f"mailsift-test:{uuid.uuid4().hex}:"
    s = RedisGreylistStore(REDIS_URL, prefix)
    yield s
    s.close()
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*"))
    if keys:
        r.delete(*keys)
    r.close()


# ---- the store contract (both backends) --------------------------------------------------------


def test_store_triplets_round_trip_and_expire(store: GreylistStore) -> None:
    assert_triplets_round_trip(store)
    assert store.purge(1000.0) >= 1
    assert store.get_triplet("k", 0.0) is None


def test_store_client_passes_count_and_expire(store: GreylistStore) -> None:
    assert_client_passes_count(store)


def test_open_greylist_store_urls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = open_greylist_store(f"sqlite:///{tmp_path}/g.db")
    assert isinstance(s, SqliteGreylistStore)
    s.close()
    r = open_greylist_store(REDIS_URL, prefix=f"mailsift-test:{uuid.uuid4().hex}:")
    assert isinstance(r, RedisGreylistStore)
    r.close()
    with pytest.raises(Exception, match="unknown greylist backend"):
        open_greylist_store("ftp://nope")


# ---- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Alice+news@Example.COM", "alice@example.com"),
        ("prvs=1234abcd=bob@example.com", "bob@example.com"),
        ("bounce-12345-678@lists.example.com", "bounce-#-#@lists.example.com"),
        ("<carol@example.com>", "carol@example.com"),
        ("", ""),
    ],
)
def test_normalise_sender(raw: str, norm: str) -> None:
    assert normalise_sender(raw) == norm


def test_client_networks() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_network("::ffff:192.0.2.9") == "192.0.2.0/24"


# ---- the policy -------------------------------------------------------------------------------


def attempt(
    ip: str = "192.0.2.10", sender: str = "a@good.test", rcpt: str = "bob@mailsift.test", **kw
) -> SmtpContext:  # type: ignore[no-untyped-def]
    return SmtpContext(client_ip=ip, mail_from=sender, current_rcpt=rcpt, rcpt_to=[rcpt], **kw)


async def run(check: Greylist, **kw):  # type: ignore[no-untyped-def]
    return await check.run(attempt(**kw))


def names(res) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.name for s in res.symbols]


async def test_first_attempt_deferred_retry_accepted_then_remembered(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    check = Greylist(GreylistSettings(), store, clock)
    first = await run(check)
    assert first.action is CheckAction.TEMPFAIL
    assert first.enhanced_code == "4.7.1"
    assert first.reason == "Greylisted, please try again later"
    assert names(first) == ["GREYLIST_DEFERRED"]

    clock.advance(60)  # too early
    early = await run(check)
    assert early.action is CheckAction.TEMPFAIL and names(early) == ["GREYLIST_EARLY"]
    assert early.details["retry_after"] == "240"

    clock.advance(300)  # after the delay, same /24, extension and BATV ignored
    ok = await run(check, ip="192.0.2.11", sender="prvs=0123abc=a+x@good.test")
    assert ok.action is CheckAction.ACCEPT and names(ok) == ["GREYLIST_PASSED"]

    clock.advance(30 * DAY)  # remembered
    known = await run(check)
    assert known.action is CheckAction.ACCEPT and names(known) == ["GREYLIST_KNOWN"]

    clock.advance(34 * DAY)  # refreshed by the last delivery: still known
    assert names(await run(check)) == ["GREYLIST_KNOWN"]
    clock.advance(36 * DAY)  # forgotten after 35 days of silence
    assert names(await run(check)) == ["GREYLIST_DEFERRED"]


async def test_retry_after_the_window_starts_over(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    check = Greylist(GreylistSettings(), store, clock)
    assert names(await run(check)) == ["GREYLIST_DEFERRED"]
    clock.advance(3 * DAY)
    assert names(await run(check)) == ["GREYLIST_DEFERRED"]
    clock.advance(301)
    assert names(await run(check)) == ["GREYLIST_PASSED"]


async def test_other_network_sender_or_recipient_is_a_new_triplet(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    check = Greylist(GreylistSettings(), store, clock)
    await run(check)
    clock.advance(301)
    assert names(await run(check)) == ["GREYLIST_PASSED"]
    assert names(await run(check, ip="198.51.100.1")) == ["GREYLIST_DEFERRED"]
    assert names(await run(check, sender="z@good.test")) == ["GREYLIST_DEFERRED"]
    assert names(await run(check, rcpt="carol@mailsift.test")) == ["GREYLIST_DEFERRED"]
    assert names(await run(check, ip="2001:db8::1")) == ["GREYLIST_DEFERRED"]
    clock.advance(301)
    assert names(await run(check, ip="2001:db8::ffff")) == ["GREYLIST_PASSED"]  # same /64


async def test_client_whitelisted_after_n_passes(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    check = Greylist(GreylistSettings(auto_whitelist_after=3), store, clock)
    for i in range(3):
        await run(check, sender=f"user{chr(97 + i)}@good.test")
        clock.advance(301)
        assert names(await run(check, sender=f"user{chr(97 + i)}@good.test")) == ["GREYLIST_PASSED"]
    fresh = await run(check, ip="192.0.2.200", sender="new@other.test", rcpt="x@mailsift.test")
    assert fresh.action is CheckAction.ACCEPT
    assert names(fresh) == ["GREYLIST_CLIENT_WHITELISTED"]
    other = await run(check, ip="198.51.100.5", sender="new@other.test")
    assert other.action is CheckAction.TEMPFAIL


async def test_sender_pool_listed_by_domain(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    check = Greylist(GreylistSettings(sender_pool_domains=["bigmail.test"]), store, clock)
    first = await run(check, ip="198.51.100.1", sender="news@out.bigmail.test")
    assert first.action is CheckAction.TEMPFAIL
    assert first.details["triplet"].startswith("pool:bigmail.test|")
    clock.advance(301)
    retry = await run(check, ip="203.0.113.99", sender="news@out.bigmail.test")  # other pool IP
    assert names(retry) == ["GREYLIST_PASSED"]


@pytest.mark.parametrize(
    ("kw", "why"),
    [({"auth_user": "alice"}, "authenticated"), ({"in_relay_network": True}, "relay network")],
)
async def test_skips(store, kw, why) -> None:  # type: ignore[no-untyped-def]
    check = Greylist(GreylistSettings(), store, FakeClock())
    res = await run_in_runner(check, attempt(**kw))
    assert res is not None and res.action is CheckAction.ACCEPT
    assert names(res) == ["GREYLIST_SKIPPED"] and res.symbols[0].description == why


async def test_whitelisted_sessions_are_not_greylisted(store) -> None:  # type: ignore[no-untyped-def]
    check = Greylist(GreylistSettings(), store, FakeClock())
    ctx = attempt(whitelisted=True)
    assert await run_in_runner(check, ctx) is None
    assert not ctx.results


async def test_store_down_is_a_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dead = RedisGreylistStore("redis://127.0.0.1:1/0", "x:", timeout=0.5)  # nothing listens
    res = await Greylist(GreylistSettings(), dead, FakeClock()).run(attempt())
    assert res.action is CheckAction.TEMPFAIL and names(res) == ["GREYLIST_TEMPERROR"]
    lenient = await Greylist(GreylistSettings(on_error="accept"), dead, FakeClock()).run(attempt())
    assert lenient.action is CheckAction.ACCEPT


async def test_expired_state_is_purged_as_we_go(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from mailsift.smtpd.checks import greylist as greylist_module

    monkeypatch.setattr(greylist_module, "PURGE_EVERY", 2)
    store = SqliteGreylistStore(tmp_path / "g.db")
    clock = FakeClock()
    check = Greylist(GreylistSettings(), store, clock)
    await run(check, sender="old@good.test")  # deferred, kept for the retry window
    clock.advance(3 * DAY)  # the retry window passed
    await run(check, sender="new@good.test")  # the second decision purges
    rows = (
        sqlite3.connect(tmp_path / "g.db").execute("SELECT key FROM greylist_triplets").fetchall()
    )
    assert [r[0].split("|")[1] for r in rows] == ["new@good.test"]
    store.close()
