"""``SqlSessionRepo``: the web UI's sessions and failed logins (tables of migration 0005),
the same SQL on SQLite and PostgreSQL. See ``mailsift.store.base.SessionRepo``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mailsift.store.base import Row, WebSession
from mailsift.store.failures import FailureLog

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore

_COLS = "session_sha256, user_name, csrf, credential, client_ip, created, expires"


def _session(row: Row) -> WebSession:
    return WebSession(
        session_sha256=row["session_sha256"],
        user=row["user_name"],
        csrf=row["csrf"],
        credential=row["credential"],
        created=float(row["created"]),
        expires=float(row["expires"]),
        client_ip=row["client_ip"],
    )


class SqlSessionRepo(FailureLog):
    """Sessions, and the failed logins of the web UI (``FailureLog`` on ui_login_failures)."""

    def __init__(self, db: SqlStore) -> None:
        super().__init__(db, "ui_login_failures")

    def create(self, session: WebSession) -> None:
        self.db.execute(
            f"INSERT INTO ui_sessions ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                session.session_sha256,
                session.user,
                session.csrf,
                session.credential,
                session.client_ip,
                session.created,
                session.expires,
            ],
        )

    def get(self, session_sha256: str, now: float | None = None) -> WebSession | None:
        row = self.db.query_one(
            f"SELECT {_COLS} FROM ui_sessions WHERE session_sha256 = ? AND expires > ?",
            [session_sha256, time.time() if now is None else now],
        )
        return _session(row) if row else None

    def delete(self, session_sha256: str) -> bool:
        n = self.db.execute("DELETE FROM ui_sessions WHERE session_sha256 = ?", [session_sha256])
        return n > 0

    def delete_user(self, user: str) -> int:
        return self.db.execute("DELETE FROM ui_sessions WHERE user_name = ?", [user])

    def purge(self, now: float | None = None) -> int:
        return self.db.execute(
            "DELETE FROM ui_sessions WHERE expires <= ?", [time.time() if now is None else now]
        )
