"""API keys in a real store (SQLite and PostgreSQL): hashed at rest, scopes, revocation."""

from __future__ import annotations

import pytest

from mailsift.api.keys import ApiKeys, hash_token, parse_scopes
from mailsift.store import Store


def test_create_verify_revoke(store: Store) -> None:
    keys = ApiKeys(store, cache_seconds=0)
    key, token = keys.create("mx1", ["score"])
    assert token.startswith("msk_") and key.key_id in token
    # only the hash is stored, never the token
    row = store.query_one("SELECT * FROM api_keys WHERE key_id = ?", (key.key_id,))
    assert row is not None and row["token_sha256"] == hash_token(token)
    assert token not in str(row)

    got = keys.verify(token)
    assert got is not None and got.key_id == key.key_id
    assert got.allows("score") and not got.allows("feedback") and not got.allows("admin")

    # a token with the right id and a wrong secret, a malformed one, an unknown one
    assert keys.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")) is None
    assert keys.verify("not-a-token") is None
    assert keys.verify("msk_000000000000_" + "x" * 43) is None

    assert keys.revoke(key.key_id)
    assert not keys.revoke(key.key_id)
    assert keys.verify(token) is None
    assert [k.key_id for k in keys.list()] == []
    listed = keys.list(include_revoked=True)
    assert [k.key_id for k in listed] == [key.key_id] and listed[0].revoked is not None


def test_admin_implies_every_scope_and_owner(store: Store) -> None:
    keys = ApiKeys(store, cache_seconds=0)
    admin, _ = keys.create("ops", "admin")
    assert all(admin.allows(s) for s in ("score", "feedback", "admin"))
    _, token = keys.create("webmail", "feedback", owner="alice@example.com")
    verified = keys.verify(token)
    assert verified is not None and verified.owner == "alice@example.com"
    assert verified.allows("feedback") and not verified.allows("score")


def test_cache_hides_store_until_expiry(sqlite_store: Store) -> None:
    keys = ApiKeys(sqlite_store, cache_seconds=3600)
    key, token = keys.create("cached", "score")
    assert keys.cached(token) == (False, None)  # not verified yet: a miss
    assert keys.verify(token) is not None
    hit, cached = keys.cached(token)
    assert hit and cached is not None and cached.key_id == key.key_id
    # a wrong secret is refused from the cache too
    assert keys.cached(token[:-1] + ("A" if token[-1] != "A" else "B"))[1] is None
    # revoking through this instance drops the cache entry at once
    assert keys.revoke(key.key_id)
    assert keys.verify(token) is None


@pytest.mark.parametrize("bad", ["", "root", "score,superuser", []])
def test_bad_scopes_refused(bad: str | list[str]) -> None:
    with pytest.raises(ValueError, match="scopes must be among"):
        parse_scopes(bad)
