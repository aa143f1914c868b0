"""API keys: bearer tokens with scopes, stored hashed in the store (``store.api_keys``).

A token looks like ``msk_<key id>_<secret>``: the key id (12 hex digits) is public and names
the key in listings and logs; the secret is 256 bits from ``secrets``. The store keeps only
the sha256 of the whole token (a fast hash is enough for a random token of that entropy:
there is nothing to brute-force), and compares hashes in constant time.

Scopes: ``score`` (score messages, read verdicts and models), ``feedback`` (report spam/ham,
edit a user's trusted/untrusted senders), ``trusted`` (``feedback`` as a trusted reporter:
its reports teach everyone at once, e.g. a spam-trap feed or a help desk) and ``admin``
(everything, including the global lists, keys and model reload; a trusted reporter too).
``delegate`` (``feedback`` for a mail server that authenticates its users, e.g. Dovecot's
learn pipe: it names the user, and the report is that user's own, never trusted; all its
votes count as one domain). A ``feedback`` key that is neither must be bound to one user
(``owner``): it acts only for that user (their feedback, their lists, their quarantine); an
unbound one may not speak for anyone.

Verified keys are cached per process for ``settings.api.key_cache_seconds`` so a scoring
request costs no store round trip; a revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from mailsift.store.api_keys import KeyRecord
from mailsift.store.base import Store

SCOPES = ("score", "feedback", "trusted", "delegate", "admin")
TOKEN_PREFIX = "msk_"  # noqa: S105 (a public prefix, not a secret)
_TOKEN_RE = re.compile(r"^msk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    owner: str = ""  # "" : acts for any user
    created: float = 0.0
    revoked: float | None = None

    def allows(self, scope: str) -> bool:
        """True when the key holds ``scope`` (admin implies every scope, trusted implies
        feedback)."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        return scope == "feedback" and bool({"trusted", "delegate"} & self.scopes)

    @property
    def delegate(self) -> bool:
        """A mail server reporting for the users it authenticates (a Dovecot learn pipe):
        it names any user, and the report is that user's, never a trusted one."""
        return "delegate" in self.scopes

    @property
    def trusted(self) -> bool:
        """Whether its reports are trusted global lessons (admin or trusted scope)."""
        return "admin" in self.scopes or "trusted" in self.scopes

    @property
    def active(self) -> bool:
        return self.revoked is None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (key id, token) pair."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> frozenset[str]:
    items = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    out = frozenset(s.strip().lower() for s in items if s.strip())
    unknown = out - set(SCOPES)
    if unknown or not out:
        raise ValueError(
            f"scopes must be among {', '.join(SCOPES)} (got {sorted(unknown) or 'none'})"
        )
    return out


def _key(rec: KeyRecord) -> ApiKey:
    return ApiKey(rec.key_id, rec.name, rec.scopes, rec.owner, rec.created, rec.revoked)


class ApiKeys:
    """Create, revoke, list and verify API keys kept in a store."""

    def __init__(self, store: Store, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str, ApiKey]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scopes: str | list[str], owner: str = "") -> tuple[ApiKey, str]:
        """Make a key; returns it and its token (shown once, never stored)."""
        if not name.strip():
            raise ValueError("a key needs a name")
        key_id, token = new_token()
        key = ApiKey(key_id, name.strip(), parse_scopes(scopes), owner.strip(), time.time())
        self.store.api_keys.add(
            KeyRecord(key.key_id, key.name, hash_token(token), key.scopes, key.owner, key.created)
        )
        return key, token

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False when there is no such active key."""
        done = self.store.api_keys.revoke(key_id, time.time())
        with self._lock:
            self._cache.pop(key_id, None)
        return done

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        return [_key(r) for r in self.store.api_keys.list(include_revoked)]

    def get(self, key_id: str) -> ApiKey | None:
        rec = self.store.api_keys.get(key_id)
        return _key(rec) if rec else None

    def cached(self, token: str) -> tuple[bool, ApiKey | None]:
        """(hit, key) from the in-process cache only: no store access."""
        m = _TOKEN_RE.match(token)
        if m is None:
            return True, None
        with self._lock:
            cached = self._cache.get(m.group(1))
        if cached is None or cached[0] <= time.monotonic():
            return False, None
        return True, self._check(token, cached[1], cached[2])

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None (unknown, malformed, revoked)."""
        hit, key = self.cached(token)
        if hit:
            return key
        m = _TOKEN_RE.match(token)
        assert m is not None  # cached() answers malformed tokens
        rec = self.store.api_keys.get(m.group(1))
        if rec is None:
            return None
        stored, key = rec.token_sha256, _key(rec)
        if self.cache_seconds > 0:
            with self._lock:
                self._cache[key.key_id] = (time.monotonic() + self.cache_seconds, stored, key)
        return self._check(token, stored, key)

    @staticmethod
    def _check(token: str, stored: str, key: ApiKey) -> ApiKey | None:
        if not hmac.compare_digest(stored, hash_token(token)) or not key.active:
            return None
        return key


def key_summary(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "owner": key.owner,
        "created": key.created,
        "revoked": key.revoked,
    }
