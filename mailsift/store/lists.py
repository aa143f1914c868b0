"""Sender lists from the store as a ``mailsift.verdict.ListPolicy``.

Kinds: ``trusted`` / ``untrusted`` belong to one recipient (``owner``: that user's address);
``allow`` / ``block`` are global. What a decision does (the scorer applies it):

- ``allow`` or ``trusted``: never spam ("white list wins": it overrides the anti-spam score);
- ``block``: always spam (rejected); ``untrusted``: always spam for that recipient.

Precedence: a white entry beats a black one (a sender on both the block and the allow list is
allowed, as the checklist says), so the order is trusted, allow, block, untrusted. A recipient's
own list applies when *every* envelope recipient of the message has the same decision (one
verdict per message; mixed recipients fall back to the global lists and the score).

Patterns (case-insensitive, stored lower-case):

=========================== ==================================================================
``alice@example.com``       that address only
``*@example.com``           any address at exactly example.com (``@example.com`` is the same)
``example.com``             any address at example.com or any of its subdomains
``*@*.example.com``, ...    other wildcards: mailsift's Type 2 syntax (``*`` ``?`` ``$`` ``%``,
                            see ``mailsift.wildcard``), matched against the whole address
``192.0.2.7``, ``2001:db8::/32``  the connecting client's IP address / network (CIDR)
=========================== ==================================================================

A sender matches through the envelope MAIL FROM or the header From address. Both are
forgeable: a white entry trusts a name, not a proof (SPF/DKIM/DMARC checks score forgery; a
white list still wins, as the checklist asks). Lookups use an in-memory snapshot of the lists,
refreshed when the store's list version changes (checked at most every ``ttl`` seconds for
other processes' writes; writes through the same store object are seen at once).
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailsift.store.base import GLOBAL_LIST_KINDS, LIST_KINDS, USER_LIST_KINDS, ListEntry, Store
from mailsift.verdict import Envelope, ListDecision
from mailsift.wildcard import compile_wildcard

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_WILDCARD_CHARS = re.compile(r"[*?$%]")


def validate_pattern(pattern: str) -> str:
    """Normalise a list pattern, or raise ValueError with the reason."""
    p = pattern.strip().lower()
    if p.startswith("@"):
        p = "*" + p
    if not p or any(c.isspace() for c in p) or len(p) > 320:
        raise ValueError(f"bad list pattern {pattern!r}")
    if _as_network(p) is not None:
        return p
    if "@" in p:
        local, _, domain = p.rpartition("@")
        if not local or not domain:
            raise ValueError(f"bad list pattern {pattern!r}: need local@domain or *@domain")
    elif not _WILDCARD_CHARS.search(p) and "." not in p:
        raise ValueError(f"bad list pattern {pattern!r}: not an address, domain or IP/CIDR")
    return p


def _as_network(p: str) -> IpNetwork | None:
    if not re.fullmatch(r"[0-9a-f:.]+(/\d{1,3})?", p) or ("." not in p and ":" not in p):
        return None
    try:
        return ipaddress.ip_network(p, strict=False)
    except ValueError:
        return None


def normalize_address(addr: str | None) -> str:
    a = (addr or "").strip().strip("<>").strip().lower()
    return a if "@" in a else ""


@dataclass(slots=True)
class Matcher:
    """Compiled entries of one list."""

    addresses: dict[str, str] = field(default_factory=dict)  # exact address -> pattern
    domains: dict[str, str] = field(default_factory=dict)  # *@domain (exact domain)
    suffixes: dict[str, str] = field(default_factory=dict)  # domain and its subdomains
    wildcards: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    networks: list[tuple[IpNetwork, str]] = field(default_factory=list)

    def add(self, pattern: str) -> None:
        net = _as_network(pattern)
        if net is not None:
            self.networks.append((net, pattern))
        elif pattern.startswith("*@") and not _WILDCARD_CHARS.search(pattern[2:]):
            self.domains[pattern[2:]] = pattern
        elif _WILDCARD_CHARS.search(pattern):
            self.wildcards.append((compile_wildcard(pattern), pattern))
        elif "@" in pattern:
            self.addresses[pattern] = pattern
        else:
            self.suffixes[pattern.strip(".")] = pattern

    def match(self, senders: Iterable[str], ip: str | None) -> str | None:
        """The pattern that matches one of the senders or the client IP, else None."""
        for addr in senders:
            if addr in self.addresses:
                return self.addresses[addr]
            domain = addr.rpartition("@")[2]
            if domain in self.domains:
                return self.domains[domain]
            labels = domain.split(".")
            for i in range(len(labels)):
                hit = self.suffixes.get(".".join(labels[i:]))
                if hit is not None:
                    return hit
            for rx, pat in self.wildcards:
                if rx.fullmatch(addr):
                    return pat
        if ip and self.networks:
            try:
                addr_ip = ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                return None
            for net, pat in self.networks:
                if addr_ip.version == net.version and addr_ip in net:
                    return pat
        return None


@dataclass(slots=True)
class _Snapshot:
    version: int
    global_lists: dict[str, Matcher]  # allow / block
    user_lists: dict[tuple[str, str], Matcher]  # (kind, owner) -> matcher


class StoreListPolicy:
    """``ListPolicy`` over ``store.lists`` with a cached snapshot; also edits the lists."""

    def __init__(self, store: Store, ttl: float = 2.0) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None
        self._checked = 0.0
        self._local = -1

    # ---- cache -----------------------------------------------------------------------------
    def invalidate(self) -> None:
        with self._lock:
            self._snap = None

    def cached(self) -> _Snapshot | None:
        """The snapshot in memory while it is fresh (checked against the store's list
        version within ``ttl`` s, no local edit since), else None: a caller on an event
        loop decides with it at once (``decide(..., snapshot=)``) and goes to a thread
        only when the store must be asked."""
        snap = self._snap
        local = getattr(self.store.lists, "local_version", 0)
        if (
            snap is not None
            and time.monotonic() - self._checked < self.ttl
            and local == self._local
        ):
            return snap
        return None

    def _snapshot(self) -> _Snapshot:
        snap = self.cached()
        if snap is not None:
            return snap
        now = time.monotonic()
        local = getattr(self.store.lists, "local_version", 0)
        with self._lock:
            version = self.store.lists.version()
            if self._snap is None or self._snap.version != version:
                self._snap = self._load(version)
            self._checked = now
            self._local = local
            return self._snap

    def _load(self, version: int) -> _Snapshot:
        glob = {k: Matcher() for k in GLOBAL_LIST_KINDS}
        users: dict[tuple[str, str], Matcher] = {}
        for e in self.store.lists.entries():
            if e.kind in GLOBAL_LIST_KINDS and not e.owner:
                glob[e.kind].add(e.pattern)
            elif e.kind in USER_LIST_KINDS and e.owner:
                users.setdefault((e.kind, e.owner), Matcher()).add(e.pattern)
        return _Snapshot(version, glob, users)

    # ---- decisions -------------------------------------------------------------------------
    def decide(
        self, envelope: Envelope, from_addr: str, snapshot: _Snapshot | None = None
    ) -> ListDecision | None:
        snap = snapshot or self._snapshot()
        senders = [
            a
            for a in dict.fromkeys(
                (normalize_address(envelope.mail_from), normalize_address(from_addr))
            )
            if a
        ]
        ip = envelope.client_ip
        rcpts = [r for r in (normalize_address(r) for r in envelope.rcpt_to) if r]
        trusted = self._all_recipients(snap, "trusted", rcpts, senders, ip)
        if trusted:
            return ListDecision("trusted", trusted)
        hit = snap.global_lists["allow"].match(senders, ip)
        if hit:
            return ListDecision("allow", f"{_who(senders, ip)} on the global allow list ({hit})")
        hit = snap.global_lists["block"].match(senders, ip)
        if hit:
            return ListDecision("block", f"{_who(senders, ip)} on the global block list ({hit})")
        untrusted = self._all_recipients(snap, "untrusted", rcpts, senders, ip)
        if untrusted:
            return ListDecision("untrusted", untrusted)
        return None

    def decide_for_recipient(
        self,
        recipient: str,
        envelope: Envelope,
        from_addr: str,
        snapshot: _Snapshot | None = None,
    ) -> ListDecision | None:
        """The decision for one recipient (for callers that split a message per recipient)."""
        env = Envelope(
            client_ip=envelope.client_ip,
            helo=envelope.helo,
            mail_from=envelope.mail_from,
            rcpt_to=(recipient,),
            auth_user=envelope.auth_user,
            client_name=envelope.client_name,
        )
        return self.decide(env, from_addr, snapshot)

    def _all_recipients(
        self, snap: _Snapshot, kind: str, rcpts: list[str], senders: list[str], ip: str | None
    ) -> str | None:
        if not rcpts:
            return None
        hits = []
        for r in rcpts:
            m = snap.user_lists.get((kind, r))
            hit = m.match(senders, ip) if m is not None else None
            if hit is None:
                return None
            hits.append(f"{r}: {hit}")
        return f"{_who(senders, ip)} on the recipient's {kind} list ({'; '.join(hits)})"

    # ---- editing ---------------------------------------------------------------------------
    def add(
        self, kind: str, pattern: str, owner: str = "", actor: str = "", comment: str = ""
    ) -> bool:
        """Add an entry (validated, audited); False when it was already there."""
        kind, owner = _check_kind(kind, owner)
        p = validate_pattern(pattern)
        with self.store.transaction():
            added = self.store.lists.add(ListEntry(kind, p, owner, 0.0, actor, comment))
            if added:
                self.store.audit.record(actor or "system", "lists.add", _target(kind, owner, p))
        self.invalidate()
        return added

    def remove(self, kind: str, pattern: str, owner: str = "", actor: str = "") -> bool:
        kind, owner = _check_kind(kind, owner)
        p = pattern.strip().lower()
        p = "*" + p if p.startswith("@") else p
        with self.store.transaction():
            removed = self.store.lists.remove(kind, p, owner)
            if removed:
                self.store.audit.record(actor or "system", "lists.remove", _target(kind, owner, p))
        self.invalidate()
        return removed

    def entries(self, kind: str | None = None, owner: str | None = None) -> list[ListEntry]:
        return self.store.lists.entries(kind=kind, owner=owner)


def _check_kind(kind: str, owner: str) -> tuple[str, str]:
    kind = kind.strip().lower()
    owner = normalize_address(owner) if owner else ""
    if kind not in LIST_KINDS:
        raise ValueError(f"unknown list kind {kind!r} (one of {', '.join(LIST_KINDS)})")
    if kind in USER_LIST_KINDS and not owner:
        raise ValueError(f"a {kind} entry belongs to a user: give the user's address")
    if kind in GLOBAL_LIST_KINDS and owner:
        raise ValueError(f"{kind} is a global list: it has no user")
    return kind, owner


def _target(kind: str, owner: str, pattern: str) -> str:
    return f"{kind}:{owner + ':' if owner else ''}{pattern}"


def _who(senders: list[str], ip: str | None) -> str:
    if senders:
        return "sender " + " / ".join(senders)
    return f"client {ip}" if ip else "sender"
