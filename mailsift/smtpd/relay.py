"""Relay control and recipient validation at RCPT time (RFC 5321 3.6, 7.9).

The forward path is resolved before anything is decided:

* a source route ``<@hop:user@remote>`` whose final domain is not ours is refused with
  ``550 5.7.1 cannot relay for remote`` (for every client: RFC 5321 section 3.6.1 says
  routes SHOULD NOT be used; a relay client writes the plain address); a route to one of our
  own domains is stripped (RFC 5321 appendix C) and the address treated as local;
* a local part with ``%`` addressed to us (``user%remote@local``) is refused with
  ``550 5.7.1 forwarding percent hack is not permitted``;
* UUCP bang paths (``remote!user``, ``remote!user@local``) and quoted local parts hiding an
  address (``"user@remote"@local``, ``"user%remote"@local``) are refused;
* a path without a domain is refused (only ``<postmaster>`` is accepted, RFC 5321 4.5.1);
* an IP literal (``user@[192.0.2.1]``) is local only when it is one of our addresses.

Then: a local domain is delivered when the mailbox exists (``settings.smtp.mailboxes_file``
and/or the active accounts) and is not disabled or expired, else ``550 5.1.1``. Any other
domain is relayed only for clients inside ``settings.smtp.relay_networks`` (CIDR), for
authenticated users, or to recipients on the "always allow relaying to these recipients"
list (``settings.smtp.relay_allowed_recipients``, Type 2 wildcards); otherwise
``550 5.7.1 relaying denied``. The HELO name and the MAIL FROM address never count.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path as FsPath

from mailsift.config import SmtpSettings
from mailsift.smtpd.accounts import Accounts
from mailsift.smtpd.addresses import Path, PathSyntaxError, parse_path
from mailsift.wildcard import WildcardList

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RcptDecision:
    accepted: bool
    reply: str  # the SMTP reply line to send ("250 2.1.5 OK" or the refusal)
    deliver_to: str = ""  # the address handed to the next hop
    local: bool = False  # a mailbox of ours (False: relayed)
    reason: str = ""  # short tag for logs/tests: "local", "relay-network", "percent-hack"...


def _refuse(reply: str, reason: str) -> RcptDecision:
    return RcptDecision(False, reply, reason=reason)


def parse_networks(cidrs: Iterable[str]) -> list[IpNetwork]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def ip_in(ip: str | None, networks: Iterable[IpNetwork]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == n.version and addr in n for n in networks)


class Mailboxes:
    """The mailboxes file (one address per line, ``#`` comments), re-read when it changes."""

    def __init__(self, path: FsPath | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._names: set[str] = set()

    def names(self) -> set[str]:
        if self.path is None:
            return set()
        with self._lock:
            try:
                mtime: int | None = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._mtime = mtime
                self._names = set()
                if mtime is not None:
                    for line in self.path.read_text(encoding="utf-8").splitlines():
                        line = line.split("#", 1)[0].strip().lower()
                        if line:
                            self._names.add(line)
            return self._names


class RecipientPolicy:
    """Decides one RCPT TO: resolve the forward path, then local delivery or relay."""

    def __init__(self, smtp: SmtpSettings, accounts: Accounts | None = None) -> None:
        self.smtp = smtp
        self.local_domains = {d.strip().lower().rstrip(".") for d in smtp.local_domains}
        self.primary_domain = (smtp.local_domains or [smtp.hostname])[0].lower()
        self.relay_networks = parse_networks(smtp.relay_networks)
        self.relay_allowed = WildcardList(smtp.relay_allowed_recipients)
        self.mailboxes = Mailboxes(smtp.mailboxes_file)
        self.accounts = accounts

    # ---- facts ---------------------------------------------------------------------------
    def in_relay_network(self, client_ip: str | None) -> bool:
        return ip_in(client_ip, self.relay_networks)

    def is_local_domain(self, domain: str, our_ips: Iterable[str] = ()) -> bool:
        domain = domain.lower().rstrip(".")
        if domain.startswith("["):
            literal = Path(text="", domain=domain).ip_literal or ""
            try:
                lit = ipaddress.ip_address(literal)
            except ValueError:
                return False
            for ip in our_ips:
                try:
                    if ipaddress.ip_address(ip.split("%", 1)[0]) == lit:
                        return True
                except ValueError:
                    continue
            return False
        return domain in self.local_domains or domain == self.smtp.hostname.lower()

    def _restricted(self) -> bool:
        """True when the set of mailboxes is known (a file or accounts exist). Whether any
        account exists is asked of the store at most every few seconds
        (``Accounts.exist``), not at every RCPT."""
        return self.smtp.mailboxes_file is not None or (
            self.accounts is not None and self.accounts.exist()
        )

    def mailbox_exists(self, address: str) -> bool:
        address = address.lower()
        if self.accounts is not None:
            acc = self.accounts.get(address)
            if acc is not None:
                return acc.active()  # disabled or old accounts receive nothing
        if not self._restricted():
            return True
        return address in self.mailboxes.names()

    # ---- the decision --------------------------------------------------------------------
    def decide(
        self,
        path_text: str,
        *,
        client_ip: str | None,
        authenticated: bool,
        our_ips: Iterable[str] = (),
    ) -> RcptDecision:
        try:
            path = parse_path(path_text)
        except PathSyntaxError as exc:
            if path_text.count("@") > 1:
                return _refuse(
                    f"550 5.7.1 <{path_text}>: address form not permitted ({exc})", "syntax"
                )
            return _refuse(f"501 5.1.3 Bad recipient address syntax ({exc})", "syntax")
        if path.null:
            return _refuse("501 5.1.3 Bad recipient address syntax (null path)", "syntax")
        our_ips = list(our_ips)
        local_domain = bool(path.domain) and self.is_local_domain(path.domain, our_ips)
        may_relay = authenticated or self.in_relay_network(client_ip)

        # 1. source routes
        if path.route and not local_domain:
            return _refuse(f"550 5.7.1 cannot relay for {path.domain}", "source-route")
        # 2. no domain at all: bang paths, quoted addresses, bare names
        local = path.unquoted_local
        if not path.domain:
            if "!" in local:
                return _refuse("550 5.7.1 UUCP bang paths are not permitted", "bang-path")
            if "@" in local or "%" in local:
                return _refuse("550 5.7.1 quoted forward paths are not permitted", "quoted-address")
            if local.lower() == "postmaster":
                return RcptDecision(
                    True,
                    "250 2.1.5 OK",
                    deliver_to=f"postmaster@{self.primary_domain}",
                    local=True,
                    reason="postmaster",
                )
            return _refuse(
                "550 5.7.1 relaying denied: recipient address needs a domain", "no-domain"
            )
        # 3. hidden forward paths inside the local part (for us, or for non-relay clients)
        if local_domain or not may_relay:
            if path.quoted and ("@" in local or "%" in local or "!" in local):
                return _refuse("550 5.7.1 quoted forward paths are not permitted", "quoted-address")
            if "%" in local:
                return _refuse("550 5.7.1 forwarding percent hack is not permitted", "percent-hack")
            if "!" in local:
                return _refuse("550 5.7.1 UUCP bang paths are not permitted", "bang-path")
        # 4. local delivery
        if local_domain:
            return self._local(path)
        # 5. relaying
        if authenticated:
            return RcptDecision(True, "250 2.1.5 OK", path.address, reason="authenticated")
        if self.in_relay_network(client_ip):
            return RcptDecision(True, "250 2.1.5 OK", path.address, reason="relay-network")
        if self.relay_allowed.matches(path.address):
            return RcptDecision(True, "250 2.1.5 OK", path.address, reason="relay-allowed")
        return _refuse("550 5.7.1 relaying denied", "relay-denied")

    def _local(self, path: Path) -> RcptDecision:
        domains = [path.domain] if not path.domain.startswith("[") else sorted(self.local_domains)
        if path.local.lower() == "postmaster":
            return RcptDecision(
                True,
                "250 2.1.5 OK",
                deliver_to=f"postmaster@{domains[0] if domains else self.primary_domain}",
                local=True,
                reason="postmaster",
            )
        for domain in domains:
            address = f"{path.local}@{domain}"
            if self.mailbox_exists(address):
                return RcptDecision(True, "250 2.1.5 OK", address, local=True, reason="local")
        return _refuse(
            f"550 5.1.1 <{path.address}>: Recipient address rejected: User unknown",
            "unknown-user",
        )
