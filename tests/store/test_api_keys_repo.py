"""``store.api_keys``: the API keys' rows on both backends."""

from __future__ import annotations

import pytest

from mailsift.store import Store
from mailsift.store.api_keys import ApiKeyRepo, KeyRecord


def test_keys_roundtrip_revoke_and_list(store: Store) -> None:
    repo = store.api_keys
    assert isinstance(repo, ApiKeyRepo)
    a = KeyRecord("aaaaaaaaaaaa", "mx1", "1" * 64, frozenset({"score", "feedback"}), "", 100.0)
    b = KeyRecord("bbbbbbbbbbbb", "webmail", "2" * 64, frozenset({"feedback"}), "al@x.test", 200.0)
    repo.add(b)
    repo.add(a)
    assert repo.get("aaaaaaaaaaaa") == a
    assert repo.get("cccccccccccc") is None
    row = store.query_one("SELECT scopes FROM api_keys WHERE key_id = 'aaaaaaaaaaaa'")
    assert row == {"scopes": "feedback score"}  # sorted, space-separated
    with pytest.raises(Exception):
        repo.add(a)
    assert [k.key_id for k in repo.list()] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert repo.revoke("aaaaaaaaaaaa", 300.0)
    assert not repo.revoke("aaaaaaaaaaaa", 400.0)
    assert not repo.revoke("cccccccccccc", 400.0)
    assert [k.key_id for k in repo.list()] == ["bbbbbbbbbbbb"]
    revoked = repo.list(include_revoked=True)[0]
    assert revoked.key_id == "aaaaaaaaaaaa" and revoked.revoked == 300.0
