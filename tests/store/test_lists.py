"""StoreListPolicy: patterns, precedence (white wins), per-recipient lists, cache."""

from __future__ import annotations

import pytest

from mailsift.store import ListEntry, Store, open_store
from mailsift.store.lists import StoreListPolicy, validate_pattern
from mailsift.verdict import Envelope


def env(mail_from: str = "", *rcpts: str, ip: str | None = None) -> Envelope:
    return Envelope(client_ip=ip, mail_from=mail_from or None, rcpt_to=tuple(rcpts))


@pytest.fixture
def policy(store: Store) -> StoreListPolicy:
    return StoreListPolicy(store, ttl=0.0)


def test_pattern_forms(policy: StoreListPolicy) -> None:
    policy.add("block", "spammer@bad.test")
    policy.add("block", "*@exact.test")
    policy.add("block", "suffix.test")
    policy.add("block", "news-*@*.shop.test")
    policy.add("block", "198.51.100.0/24")
    policy.add("block", "2001:db8::/32")

    def kind(sender: str, ip: str | None = None) -> str | None:
        d = policy.decide(env(sender, "u@x.test", ip=ip), "")
        return d.kind if d else None

    assert kind("Spammer@BAD.test") == "block"
    assert kind("other@bad.test") is None
    assert kind("a@exact.test") == "block"
    assert kind("a@sub.exact.test") is None  # *@domain is that domain only
    assert kind("a@suffix.test") == "block"
    assert kind("a@deep.sub.suffix.test") == "block"  # domain covers subdomains
    assert kind("a@notsuffix.test") is None
    assert kind("news-42@eu.shop.test") == "block"
    assert kind("news-42@shop.test") is None
    assert kind("ok@good.test", ip="198.51.100.77") == "block"
    assert kind("ok@good.test", ip="198.51.101.1") is None
    assert kind("ok@good.test", ip="2001:db8::5") == "block"
    assert kind("ok@good.test", ip="not-an-ip") is None


def test_header_from_also_matches(policy: StoreListPolicy) -> None:
    policy.add("block", "*@bad.test")
    d = policy.decide(env("bounce@lists.test", "u@x.test"), "Eve@Bad.Test")
    assert d is not None and d.kind == "block" and "*@bad.test" in d.reason


def test_allow_beats_block(policy: StoreListPolicy) -> None:
    """A sender on both lists is allowed."""
    policy.add("block", "example.org")
    policy.add("allow", "boss@example.org")
    assert policy.decide(env("boss@example.org", "u@x.test"), "").kind == "allow"
    assert policy.decide(env("intern@example.org", "u@x.test"), "").kind == "block"


def test_user_lists(policy: StoreListPolicy) -> None:
    policy.add("trusted", "*@friends.test", owner="alice@x.test", actor="alice@x.test")
    policy.add("untrusted", "pest@annoy.test", owner="alice@x.test")
    policy.add("block", "friends.test")
    # trusted (user) wins over the global block list
    d = policy.decide(env("bob@friends.test", "Alice@X.test"), "")
    assert d is not None and d.kind == "trusted" and "alice@x.test" in d.reason
    # only for that recipient
    assert policy.decide(env("bob@friends.test", "carol@x.test"), "").kind == "block"
    assert policy.decide(env("pest@annoy.test", "alice@x.test"), "").kind == "untrusted"
    assert policy.decide(env("pest@annoy.test", "carol@x.test"), "") is None
    # mixed recipients: the user list applies only when every recipient agrees
    assert policy.decide(env("pest@annoy.test", "alice@x.test", "carol@x.test"), "") is None
    d = policy.decide_for_recipient("alice@x.test", env("pest@annoy.test", "carol@x.test"), "")
    assert d is not None and d.kind == "untrusted"


def test_global_allow_beats_user_untrusted(policy: StoreListPolicy) -> None:
    policy.add("untrusted", "*@corp.test", owner="alice@x.test")
    policy.add("allow", "corp.test")
    assert policy.decide(env("ceo@corp.test", "alice@x.test"), "").kind == "allow"


def test_cache_and_invalidation(store: Store, store_url: str) -> None:
    other_process = open_store(store_url)  # another process: its own store object
    try:
        slow = StoreListPolicy(other_process, ttl=3600.0)
        writer = StoreListPolicy(store, ttl=3600.0)
        assert slow.decide(env("x@spam.test", "u@x.test"), "") is None
        writer.add("block", "spam.test")
        # another process keeps its snapshot until the ttl, then refreshes
        assert slow.decide(env("x@spam.test", "u@x.test"), "") is None
        slow.ttl = 0.0
        assert slow.decide(env("x@spam.test", "u@x.test"), "").kind == "block"
    finally:
        other_process.close()
    # writes through the same store object are seen at once, by any policy over it
    same = StoreListPolicy(store, ttl=3600.0)
    assert same.decide(env("x@other.test", "u@x.test"), "") is None
    store.lists.add(ListEntry("block", "other.test"))
    assert same.decide(env("x@other.test", "u@x.test"), "").kind == "block"
    assert writer.decide(env("x@spam.test", "u@x.test"), "").kind == "block"
    assert writer.remove("block", "spam.test", actor="admin")
    assert writer.decide(env("x@spam.test", "u@x.test"), "") is None
    actions = [(e.actor, e.action, e.target) for e in store.audit.recent()]
    assert actions[0] == ("admin", "lists.remove", "block:spam.test")
    assert ("system", "lists.add", "block:spam.test") in actions


def test_cached_snapshot_is_offered_only_while_fresh(store: Store) -> None:
    """``cached()`` (what the SMTP checks decide with on the event loop) is the snapshot
    ``decide`` would use without asking the store; a local edit or the ttl ends it."""
    policy = StoreListPolicy(store, ttl=3600.0)
    assert policy.cached() is None  # nothing read yet
    assert policy.decide(env("x@spam.test", "u@x.test"), "") is None
    snap = policy.cached()
    assert snap is not None
    assert policy.decide(env("x@spam.test", "u@x.test"), "", snap) is None
    store.lists.add(ListEntry("block", "spam.test"))
    assert policy.cached() is None  # edited through this store object: read again
    assert policy.decide(env("x@spam.test", "u@x.test"), "").kind == "block"
    snap = policy.cached()
    assert snap is not None
    assert policy.decide(env("x@spam.test", "u@x.test"), "", snap).kind == "block"
    assert policy.decide_for_recipient("u@x.test", env("x@spam.test"), "", snap).kind == "block"
    policy.ttl = 0.0
    assert policy.cached() is None


def test_validation(policy: StoreListPolicy) -> None:
    for bad in ["", "has space@x.test", "@", "user@", "localhost", "a b"]:
        with pytest.raises(ValueError):
            validate_pattern(bad)
    assert validate_pattern("@Example.COM") == "*@example.com"
    assert validate_pattern("10.0.0.0/8") == "10.0.0.0/8"
    with pytest.raises(ValueError):
        policy.add("trusted", "a@b.test")  # needs an owner
    with pytest.raises(ValueError):
        policy.add("allow", "a@b.test", owner="alice@x.test")
    with pytest.raises(ValueError):
        policy.add("grey", "a@b.test")
    assert policy.add("allow", "a@b.test") and not policy.add("allow", "A@B.test")
    assert [e.pattern for e in policy.entries(kind="allow")] == ["a@b.test"]
