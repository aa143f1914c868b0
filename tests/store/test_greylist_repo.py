"""The SQL greylist backend: its tables are a store migration, its queries ``store.greylist``
(both backends); a greylist file made before keeps its state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailsift.store import Store
from mailsift.store.greylist import (
    GreylistStoreError,
    SqlGreylistStore,
    SqliteGreylistStore,
    Triplet,
    open_greylist_store,
    sqlite_greylist_counts,
)
from mailsift.store.migrations import discover
from tests.store.greylist_contract import assert_client_passes_count, assert_triplets_round_trip

# the schema the SQLite greylist created for itself before it was a store migration
FORMER_SCHEMA = """
CREATE TABLE IF NOT EXISTS greylist_triplets (
    key TEXT PRIMARY KEY, first_seen REAL NOT NULL, passed REAL, last_seen REAL NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS greylist_clients (
    client TEXT PRIMARY KEY, passes INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS greylist_triplets_expires ON greylist_triplets(expires);
"""


def test_greylist_contract_on_both_backends(store: Store) -> None:
    grey = SqlGreylistStore(store)
    assert grey.dependency == store.dialect
    assert_triplets_round_trip(grey)
    grey.put_triplet("w", Triplet(100.0, None, 100.0, 2000.0))

    assert_client_passes_count(grey)

    assert grey.counts(170.0) == {"waiting": 1, "passed": 1, "clients": 1}
    assert grey.purge(1000.0) == 2  # the passed triplet and the client
    assert grey.counts(170.0) == {"waiting": 1, "passed": 0, "clients": 0}


def test_former_greylist_file_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "greylist.db"
    with sqlite3.connect(path) as db:
        db.executescript(FORMER_SCHEMA)
        db.execute("INSERT INTO greylist_triplets VALUES ('a|b|c', 100.0, 150.0, 150.0, 900.0)")
        db.execute("INSERT INTO greylist_clients VALUES ('192.0.2.0/24', 3, 900.0)")
    grey = SqliteGreylistStore(path)
    try:
        assert grey.get_triplet("a|b|c", 200.0) == Triplet(100.0, 150.0, 150.0, 900.0)
        assert grey.add_client_pass("192.0.2.0/24", 200.0, 1000.0) == 4
        assert grey.store.applied_migrations() == [m.version for m in discover()]
    finally:
        grey.close()


def test_postgresql_greylist_url(pg_store_url: str) -> None:
    grey = open_greylist_store(pg_store_url)
    try:
        assert isinstance(grey, SqlGreylistStore) and grey.dependency == "postgresql"
        grey.put_triplet("k", Triplet(1.0, None, 1.0, 50.0))
        assert grey.get_triplet("k", 2.0) == Triplet(1.0, None, 1.0, 50.0)
    finally:
        grey.close()


def test_counts_of_a_missing_file_create_nothing(tmp_path: Path) -> None:
    assert sqlite_greylist_counts(tmp_path / "none.db", 0.0) is None
    assert not (tmp_path / "none.db").exists()


def test_in_memory_sqlite_greylist_refused() -> None:
    with pytest.raises(GreylistStoreError, match="needs a file"):
        open_greylist_store("sqlite:///")
