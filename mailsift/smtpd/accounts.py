"""Mail accounts: who may AUTH (RFC 4954) and which local mailboxes exist.

Accounts live in a JSON file (``settings.smtp.accounts_file``), one entry per login, with an
argon2id password hash (argon2-cffi), a ``disabled`` flag, an ``admin`` flag (the web UI's
login reuses ``verify`` and ``is_admin``) and an optional ``expires`` time: an expired
("old") or disabled account can neither log in nor receive mail. The file is written
atomically (temporary file, fsync, rename) and re-read when it changes on disk, so
``mailsift accounts ...`` takes effect in a running server.

Logins are addresses (``alice@example.com``) compared case-insensitively.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

FILE_VERSION = 1


class AccountError(ValueError):
    """An account operation that cannot be done (unknown user, duplicate, bad name)."""


@dataclass(slots=True)
class Account:
    name: str
    password_hash: str
    disabled: bool = False
    admin: bool = False
    expires: float | None = None  # epoch seconds; after it the account is "old"
    created: float = 0.0

    def active(self, now: float | None = None) -> bool:
        if self.disabled:
            return False
        return self.expires is None or (now if now is not None else time.time()) < self.expires


def normalise_login(name: str) -> str:
    name = name.strip().lower()
    if not name or any(c.isspace() or ord(c) < 32 for c in name) or len(name) > 254:
        raise AccountError(f"bad account name {name!r}")
    return name


class Accounts:
    """The account file. Thread-safe; all methods may be called from any thread."""

    def __init__(self, path: Path | None, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._mtime: float | None = None
        # verifying an unknown user costs the same as a known one (no user enumeration)
        self._dummy_hash = self.hasher.hash("mailsift-dummy-password")
        self._load()

    # ---- persistence -------------------------------------------------------------------
    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            self._accounts = {}
            self._mtime = None
            return
        st = self.path.stat()
        data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        accounts = {}
        for name, entry in (data.get("accounts") or {}).items():
            accounts[name] = Account(name=name, **{k: v for k, v in entry.items() if k != "name"})
        self._accounts = accounts
        self._mtime = st.st_mtime_ns

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            mtime: float | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._load()

    def _save(self) -> None:
        if self.path is None:
            raise AccountError("no accounts file configured (settings.smtp.accounts_file)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": FILE_VERSION,
            "accounts": {n: asdict(a) for n, a in sorted(self._accounts.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=".accounts-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._mtime = self.path.stat().st_mtime_ns

    # ---- management --------------------------------------------------------------------
    def add(
        self, name: str, password: str, *, admin: bool = False, expires: float | None = None
    ) -> Account:
        name = normalise_login(name)
        if not password:
            raise AccountError("empty password")
        with self._lock:
            self._refresh()
            if name in self._accounts:
                raise AccountError(f"account {name} exists")
            acc = Account(
                name=name,
                password_hash=self.hasher.hash(password),
                admin=admin,
                expires=expires,
                created=time.time(),
            )
            self._accounts[name] = acc
            self._save()
            return acc

    def _update(self, name: str, **changes: object) -> Account:
        name = normalise_login(name)
        with self._lock:
            self._refresh()
            acc = self._accounts.get(name)
            if acc is None:
                raise AccountError(f"no account {name}")
            for k, v in changes.items():
                setattr(acc, k, v)
            self._save()
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
        with self._lock:
            self._refresh()
            return [Account(**asdict(a)) for _, a in sorted(self._accounts.items())]

    def __iter__(self) -> Iterator[Account]:
        return iter(self.list())

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._accounts)

    # ---- queries -----------------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        try:
            key = normalise_login(name)
        except AccountError:
            return None
        with self._lock:
            self._refresh()
            return self._accounts.get(key)

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
