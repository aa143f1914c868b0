"""Mail accounts: who may AUTH (RFC 4954) and which local mailboxes exist.

Accounts live in the store (``store.accounts``, SQLite or PostgreSQL), one row per login,
with an argon2id password hash (argon2-cffi), a ``disabled`` flag, an ``admin`` flag (the web
UI's login reuses ``verify`` and ``is_admin``) and an optional ``expires`` time: an expired
("old") or disabled account can neither log in nor receive mail. Every call but ``exist``
reads the store, so ``mailsift accounts ...`` takes effect in a running server at once, on
every node sharing the store.

Accounts used to live in a JSON file (``settings.smtp.accounts_file``). When a store is first
opened with such a file configured, the file's accounts are imported into it once
(``import_file``); from then on the store is the only source and the file is not read again.

Logins are addresses (``alice@example.com``) compared case-insensitively.

``exist`` (is there any account at all?) keeps its answer for ``EXIST_REFRESH_SECONDS``: the
SMTP filter asks it at every RCPT to an address that is no account (with no accounts and no
mailboxes file every local address is a mailbox). An account added through the same object
counts at once; one added by another process (the first account restricts the mailboxes to
the known ones) within that time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailsift.store.accounts import Account
from mailsift.store.base import Store

__all__ = ["Account", "AccountError", "Accounts", "normalise_login", "read_accounts_file"]

log = logging.getLogger(__name__)

# how long ``Accounts.exist`` keeps its answer: an account added by another process (``mailsift
# accounts add``, another node) counts within this time
EXIST_REFRESH_SECONDS = 5.0


class AccountError(ValueError):
    """An account operation that cannot be done (unknown user, duplicate, bad name)."""


def normalise_login(name: str) -> str:
    name = name.strip().lower()
    if not name or any(c.isspace() or ord(c) < 32 for c in name) or len(name) > 254:
        raise AccountError(f"bad account name {name!r}")
    return name


def read_accounts_file(path: Path) -> list[Account]:
    """The accounts of a JSON accounts file (``{"version": 1, "accounts": {login: {...}}}``,
    as the former file-based accounts wrote it)."""
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    out = []
    for name, entry in (data.get("accounts") or {}).items():
        fields = {k: v for k, v in entry.items() if k != "name"}
        out.append(Account(name=normalise_login(name), **fields))
    return out


class Accounts:
    """The accounts in a store. Thread-safe; all methods may be called from any thread.

    ``import_file``: an accounts JSON file to import once into the store (see the module
    docstring); nothing happens when the store imported one before or the file is missing.
    """

    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher | None = None,
        *,
        import_file: Path | None = None,
        exist_refresh: float = EXIST_REFRESH_SECONDS,
    ) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self.exist_refresh = exist_refresh
        self._exist_lock = threading.Lock()
        self._exist: bool | None = None  # None: ask the store
        self._exist_at = 0.0  # time.monotonic() of that answer
        # verifying an unknown user costs the same as a known one (no user enumeration)
        self._dummy_hash = self.hasher.hash("mailsift-dummy-password")
        if import_file is not None:
            self.import_file(Path(import_file))

    def import_file(self, path: Path) -> int | None:
        """Import the accounts of ``path`` unless this store imported accounts before (or
        the file does not exist); returns how many were added (None: nothing imported)."""
        if not path.is_file():
            return None
        added = self.store.accounts.import_once(str(path.resolve()), read_accounts_file(path))
        self._forget_exist()
        if added is not None:
            self.store.audit.record("mailsift", "accounts.import", str(path), {"count": added})
            log.warning(
                "imported %d account(s) from %s into the store; the store is now the only "
                "source of accounts and the file is no longer read",
                added,
                path,
            )
        return added

    # ---- management --------------------------------------------------------------------
    def add(
        self, name: str, password: str, *, admin: bool = False, expires: float | None = None
    ) -> Account:
        name = normalise_login(name)
        if not password:
            raise AccountError("empty password")
        acc = Account(
            name=name,
            password_hash=self.hasher.hash(password),
            admin=admin,
            expires=expires,
            created=time.time(),
        )
        added = self.store.accounts.add(acc)
        self._forget_exist()
        if not added:
            raise AccountError(f"account {name} exists")
        return acc

    def _update(self, name: str, **changes: Any) -> Account:
        name = normalise_login(name)
        acc = self.store.accounts.update(name, **changes)
        if acc is None:
            raise AccountError(f"no account {name}")
        return acc

    def passwd(self, name: str, password: str) -> Account:
        if not password:
            raise AccountError("empty password")
        return self._update(name, password_hash=self.hasher.hash(password))

    def disable(self, name: str) -> Account:
        return self._update(name, disabled=True)

    def enable(self, name: str) -> Account:
        return self._update(name, disabled=False)

    def set_admin(self, name: str, admin: bool) -> Account:
        return self._update(name, admin=admin)

    def list(self) -> list[Account]:
        return self.store.accounts.list()

    def __iter__(self) -> Iterator[Account]:
        return iter(self.list())

    def __len__(self) -> int:
        return self.store.accounts.count()

    def exist(self) -> bool:
        """Whether there is any account (disabled and expired ones too), as ``len(self) > 0``
        but asked of the store at most every ``exist_refresh`` seconds (module docstring)."""
        with self._exist_lock:
            now = time.monotonic()
            if self._exist is None or now - self._exist_at >= self.exist_refresh:
                self._exist = self.store.accounts.count() > 0
                self._exist_at = now
            return self._exist

    def _forget_exist(self) -> None:
        with self._exist_lock:
            self._exist = None

    # ---- queries -----------------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        try:
            key = normalise_login(name)
        except AccountError:
            return None
        return self.store.accounts.get(key)

    def verify(self, user: str, password: str) -> bool:
        """True only for an active account with this password (argon2, constant work)."""
        acc = self.get(user)
        target = acc.password_hash if acc is not None else self._dummy_hash
        ok: bool
        try:
            ok = bool(self.hasher.verify(target, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        return bool(ok and acc is not None and acc.active())

    def is_admin(self, user: str) -> bool:
        acc = self.get(user)
        return bool(acc is not None and acc.active() and acc.admin)

    def is_active(self, user: str) -> bool:
        acc = self.get(user)
        return acc is not None and acc.active()

    def credential(self, user: str) -> str | None:
        """A fingerprint of the active account's password hash (None: unknown or inactive).
        Every ``passwd`` changes it (a new salt even for the same password): the web UI
        keeps it with each session and ends the sessions it no longer matches."""
        acc = self.get(user)
        if acc is None or not acc.active():
            return None
        return hashlib.sha256(acc.password_hash.encode("utf-8")).hexdigest()

    @property
    def disabled(self) -> set[str]:
        """Logins that exist but may not log in or receive mail (disabled or expired)."""
        now = time.time()
        return {a.name for a in self.list() if not a.active(now)}

    def mailboxes(self) -> set[str]:
        now = time.time()
        return {a.name for a in self.list() if a.active(now)}
