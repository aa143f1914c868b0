"""``FailureLog``: failed logins kept in one table (the same SQL on SQLite and PostgreSQL),
counted over a window by a throttle: the web UI's (``ui_login_failures``, migration 0005,
``store.sessions``) and SMTP AUTH's (``smtp_auth_failures``, migration 0009,
``store.auth_failures``). Rows are (created, client_ip, user_name); the throttle deletes the
ones older than its window."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.store.sql import SqlStore


class FailureLog:
    def __init__(self, db: SqlStore, table: str) -> None:
        self.db = db
        self.table = table

    def record_failure(self, client_ip: str, user: str, when: float | None = None) -> None:
        self.db.execute(
            f"INSERT INTO {self.table} (created, client_ip, user_name) VALUES (?, ?, ?)",
            [time.time() if when is None else when, client_ip, user],
        )

    def failures(self, since: float, client_ip: str | None = None, user: str | None = None) -> int:
        sql = f"SELECT COUNT(*) AS n FROM {self.table} WHERE created >= ?"
        params: list[object] = [since]
        if client_ip is not None:
            sql += " AND client_ip = ?"
            params.append(client_ip)
        if user is not None:
            sql += " AND user_name = ?"
            params.append(user)
        row = self.db.query_one(sql, params)
        return int(row["n"]) if row else 0

    def clear_failures(self, client_ip: str, user: str) -> int:
        return self.db.execute(
            f"DELETE FROM {self.table} WHERE client_ip = ? AND user_name = ?", [client_ip, user]
        )

    def purge_failures(self, before: float) -> int:
        return self.db.execute(f"DELETE FROM {self.table} WHERE created < ?", [before])
