"""Databases made under the former per-area migration numbering upgrade in place: their
rows in ``schema_migrations`` take the sequential numbers and no script runs twice."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from mailsift.store import open_store
from mailsift.store.migrations import RENUMBERED, discover, split_statements

DATA = Path(__file__).parent / "data"
# the versions and names the former numbering recorded, in the order they were applied
OLD_LAYOUT = [
    (1, "core"),
    (2, "feedback_layers"),
    (100, "api_keys"),
    (200, "quarantine"),
    (210, "ui_sessions"),
    (500, "model_generation"),
]


def _old_database(url: str, dialect: str) -> None:
    """Apply the scripts of the former layout and record them under their old numbers."""
    scripts = {m.version: m for m in discover()}
    new_of = {old: RENUMBERED.get(old, old) for old, _ in OLD_LAYOUT}
    float_type = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    statements = [
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        f" applied {float_type} NOT NULL, checksum TEXT NOT NULL)"
    ]
    for old, name in OLD_LAYOUT:
        mig = scripts[new_of[old]]
        assert mig.name == name
        statements += split_statements(mig.script(dialect))
        statements.append(
            "INSERT INTO schema_migrations (version, name, applied, checksum) VALUES"
            f" ({old}, '{name}', {time.time()}, '{mig.checksum(dialect)}')"
        )
    statements += [
        "INSERT INTO api_keys (key_id, name, token_sha256, scopes, owner, created)"
        f" VALUES ('0123456789ab', 'old key', '{'a' * 64}', 'score', '', 1796000003)",
        "INSERT INTO quarantine (id, verdict_id, sender, recipients, subject, created, expires)"
        f" VALUES ('{'f' * 32}', 'v-old-1', 'spammer@bad.example', '[\"alice@example.com\"]',"
        " 'Cheap meds', 1796000004, 1798592004)",
        "INSERT INTO model_generation (name, generation, updated)"
        " VALUES ('serving', 'gen-1', 1796000006)",
    ]
    if dialect == "sqlite":
        path = url[len("sqlite:///") :]
        with sqlite3.connect(path) as conn:
            for stmt in statements:
                conn.execute(stmt)
    else:
        with psycopg.connect(url, autocommit=True) as pg, pg.transaction():
            for stmt in statements:
                pg.execute(stmt.encode())


def test_old_numbering_upgrades_in_place(store_url: str) -> None:
    dialect = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    _old_database(store_url, dialect)
    store = open_store(store_url)
    try:
        rows = store.query("SELECT version, name FROM schema_migrations ORDER BY version")
        current = {m.version: m.name for m in discover()}
        assert {int(r["version"]): r["name"] for r in rows} == current
        # nothing of the old layout re-ran (it would have failed on the existing tables),
        # and only migrations newer than the old layout were applied
        assert max(current) >= 6
        key = store.query_one("SELECT name, scopes FROM api_keys WHERE key_id = '0123456789ab'")
        assert key == {"name": "old key", "scopes": "score"}
        q = store.query_one("SELECT verdict_id, subject FROM quarantine")
        assert q == {"verdict_id": "v-old-1", "subject": "Cheap meds"}
        gen = store.query_one("SELECT generation FROM model_generation WHERE name = 'serving'")
        assert gen == {"generation": "gen-1"}
        assert store.migrate() == []
    finally:
        store.close()
    again = open_store(store_url)
    try:
        assert again.applied_migrations() == sorted(current)
    finally:
        again.close()


def test_sqlite_database_of_the_former_release_upgrades(tmp_path: Path) -> None:
    """A dump of a store made by the release with per-area numbers (1, 2, 100, 200, 210,
    500), holding a verdict, a report, a list entry, an API key, a quarantine entry, a web
    session and the model generation."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "old_numbering.sqlite.sql").read_text(encoding="utf-8"))
        old = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert old == [1, 2, 100, 200, 210, 500]
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.applied_migrations() == [m.version for m in discover()]
        v = store.verdicts.get("v-old-1")
        assert v is not None and v.rules == [("GTUBE", 1000.0)] and v.action == "spam"
        assert store.verdicts.sample("v-old-1") == b"Subject: old\r\n\r\nbody\r\n"
        assert [f.label for f in store.feedback.recent()] == ["spam"]
        assert [e.pattern for e in store.lists.entries("block")] == ["spammer.example"]
        assert store.sessions.get("b" * 64, now=1796000006.0) is not None
        row = store.query_one("SELECT subject FROM quarantine")
        assert row == {"subject": "Cheap meds"}
    finally:
        store.close()


@pytest.mark.parametrize("old,new", sorted(RENUMBERED.items()))
def test_renumbered_scripts_keep_their_names(old: int, new: int) -> None:
    names = {m.version: m.name for m in discover()}
    assert names[new] == dict(OLD_LAYOUT)[old]
