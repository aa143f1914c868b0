"""Accounts in the store (both backends): argon2 hashes, flags, changes seen at once by
every reader, and the one import of a former accounts JSON file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailsift.smtpd.accounts import Account, AccountError, Accounts
from mailsift.store import Store, open_store
from tests.fixtures.smtp import TEST_HASHER, write_accounts_file


def test_accounts_lifecycle(store: Store, store_url: str) -> None:
    acc = Accounts(store, hasher=TEST_HASHER)
    acc.add("Bob@Example.org", "pw1", admin=True)
    with pytest.raises(AccountError):
        acc.add("bob@example.org", "again")
    assert acc.verify("bob@example.org", "pw1") and not acc.verify("bob@example.org", "pw2")
    assert not acc.verify("nobody@example.org", "pw1")
    assert acc.is_admin("BOB@example.org")
    row = store.query_one("SELECT password_hash FROM accounts WHERE name = 'bob@example.org'")
    assert row is not None and "argon2id" in row["password_hash"] and "pw1" not in str(row)
    # another process (the CLI) changes the store: a running reader sees it
    other_store = open_store(store_url)
    try:
        other = Accounts(other_store, hasher=TEST_HASHER)
        other.passwd("bob@example.org", "pw2")
        other.disable("bob@example.org")
        assert not acc.verify("bob@example.org", "pw2")  # disabled
        assert "bob@example.org" in acc.disabled and not acc.is_admin("bob@example.org")
        other.enable("bob@example.org")
        assert acc.verify("bob@example.org", "pw2")
        other.set_admin("bob@example.org", False)
        assert not acc.is_admin("bob@example.org")
        with pytest.raises(AccountError):
            other.disable("nobody@example.org")
    finally:
        other_store.close()
    assert [a.name for a in acc.list()] == ["bob@example.org"] and len(acc) == 1
    acc.add("old@example.org", "pw", expires=time.time() - 1)
    assert not acc.is_active("old@example.org") and "old@example.org" in acc.disabled
    assert acc.mailboxes() == {"bob@example.org"}


def test_accounts_file_imported_once(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    write_accounts_file(
        path,
        [
            Account("alice@example.org", TEST_HASHER.hash("alice-pw"), created=10.0),
            Account("admin@example.org", TEST_HASHER.hash("admin-pw"), admin=True),
            Account("dave@example.org", TEST_HASHER.hash("dave-pw"), disabled=True),
            Account("erin@example.org", TEST_HASHER.hash("erin-pw"), expires=1.0),
        ],
    )
    acc = Accounts(store, hasher=TEST_HASHER, import_file=path)
    assert [a.name for a in acc.list()] == [
        "admin@example.org",
        "alice@example.org",
        "dave@example.org",
        "erin@example.org",
    ]
    assert (
        acc.verify("alice@example.org", "alice-pw") and acc.get("alice@example.org").created == 10.0
    )  # type: ignore[union-attr]
    assert acc.is_admin("admin@example.org")
    assert not acc.verify("dave@example.org", "dave-pw")  # disabled
    assert not acc.verify("erin@example.org", "erin-pw")  # expired
    events = store.audit.recent(action="accounts.import")
    assert [(e.target, e.detail) for e in events] == [(str(path), {"count": 4})]

    # from now on the store is the only source: changes to the file are not imported again,
    # whoever opens the store with it
    acc.passwd("alice@example.org", "changed")
    data = json.loads(path.read_text())
    data["accounts"]["zed@example.org"] = dict(data["accounts"]["alice@example.org"])
    path.write_text(json.dumps(data))
    again = Accounts(store, hasher=TEST_HASHER, import_file=path)
    assert again.import_file(path) is None
    assert again.get("zed@example.org") is None
    assert again.verify("alice@example.org", "changed")
    assert len(store.audit.recent(action="accounts.import")) == 1


def test_missing_accounts_file_imports_nothing(store: Store, tmp_path: Path) -> None:
    acc = Accounts(store, hasher=TEST_HASHER, import_file=tmp_path / "none.json")
    assert len(acc) == 0
    # a file that appears later is imported, once (nothing was imported before)
    write_accounts_file(tmp_path / "none.json", [Account("a@example.org", TEST_HASHER.hash("p"))])
    assert acc.import_file(tmp_path / "none.json") == 1
    assert acc.import_file(tmp_path / "none.json") is None
