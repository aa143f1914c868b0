"""SMTP paths (RFC 5321 section 4.1.2): parse the argument of MAIL FROM / RCPT TO as given.

aiosmtpd's own parser silently drops a source route (``<@a,@b:user@c>``) and unquotes local
parts, which hides exactly what relay control has to see. ``split_path`` keeps the path text
as the client sent it; ``parse_path`` takes it apart into route, local part and domain
without losing anything, so that ``mailsift.smtpd.relay`` can resolve the real destination
(source routes, the percent hack, UUCP bang paths, quoted local parts hiding an address).

Limits from RFC 5321 section 4.5.3.1: local part 64 octets, domain 255, path 256.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256


class PathSyntaxError(ValueError):
    """The path is not a syntactically valid (or acceptable) SMTP path."""


@dataclass(frozen=True, slots=True)
class Path:
    """One SMTP path: ``<@route1,@route2:local@domain>``; ``null`` for ``<>``."""

    text: str  # the path as given, without the angle brackets
    local: str = ""  # local part exactly as given (quotes kept)
    domain: str = ""  # lower-case, trailing dot removed; "" when the path has no domain
    route: tuple[str, ...] = ()  # source-route hops, lower-case
    null: bool = False

    @property
    def quoted(self) -> bool:
        return self.local.startswith('"')

    @property
    def unquoted_local(self) -> str:
        """The local part with quoting removed (``"a\\"b"`` -> ``a"b``)."""
        if not self.quoted:
            return self.local
        inner = self.local[1:-1]
        out, esc = [], False
        for ch in inner:
            if esc:
                out.append(ch)
                esc = False
            elif ch == "\\":
                esc = True
            else:
                out.append(ch)
        return "".join(out)

    @property
    def address(self) -> str:
        """``local@domain`` without the route (what a mailbox is called)."""
        if self.null:
            return ""
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def ip_literal(self) -> str | None:
        """The address inside ``[...]`` (``IPv6:`` prefix removed), or None."""
        d = self.domain
        if not (d.startswith("[") and d.endswith("]")):
            return None
        inner = d[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        return inner


def split_path(arg: str) -> tuple[str, str] | None:
    """Split ``<path> params`` (or a bare ``path params``) into (path text, params).

    Returns None when the brackets or quotes do not balance. ``<>`` gives ``("<>", rest)``
    (aiosmtpd's convention for the null path). Quotes and backslashes are honoured, so a
    ``>`` inside a quoted local part does not end the path.
    """
    s = arg.strip()
    if not s:
        return None
    if not s.startswith("<"):
        token, _, rest = s.partition(" ")
        return token, rest.strip()
    in_quote = esc = False
    for i, ch in enumerate(s[1:], start=1):
        if esc:
            esc = False
        elif ch == "\\" and in_quote:
            esc = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == "<" and not in_quote:
            return None
        elif ch == ">" and not in_quote:
            inner = s[1:i]
            rest = s[i + 1 :].strip()
            return ("<>" if inner == "" else inner), rest
    return None


def _split_at_unquoted(s: str, sep: str) -> list[str]:
    parts, cur, in_quote, esc = [], [], False, False
    for ch in s:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if ch == "\\" and in_quote:
            cur.append(ch)
            esc = True
            continue
        if ch == '"':
            in_quote = not in_quote
        if ch == sep and not in_quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if in_quote:
        raise PathSyntaxError("unbalanced quotes")
    parts.append("".join(cur))
    return parts


def _clean_domain(d: str) -> str:
    d = d.strip().lower()
    if d.endswith(".") and not d.startswith("["):
        d = d[:-1]
    return d


def _valid_domain(d: str) -> bool:
    if not d or len(d) > MAX_DOMAIN:
        return False
    if d.startswith("[") and d.endswith("]"):
        inner = d[1:-1]
        if inner.startswith("ipv6:"):
            inner = inner[5:]
        try:
            ipaddress.ip_address(inner)
        except ValueError:
            return False
        return True
    labels = d.split(".")
    for label in labels:
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isalnum() or c == "-" or ord(c) > 127 for c in label):
            return False
    return True


def parse_path(text: str) -> Path:
    """Take a path (as returned by ``split_path``) apart. Raises PathSyntaxError.

    Deliberately accepts the forms relay control must *see* to refuse them with the right
    text (``%``, ``!``, quoted ``@``); rejects what is simply malformed (``@@``, two
    unquoted ``@``, empty labels, over-long parts).
    """
    if text == "<>":
        return Path(text="<>", null=True)
    if len(text) > MAX_PATH:
        raise PathSyntaxError("path too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise PathSyntaxError("control characters in path")
    route: tuple[str, ...] = ()
    mailbox = text
    if text.startswith("@"):
        # A-d-l ":" Mailbox; the route ends at the first unquoted colon
        head, sep, mailbox = text.partition(":")
        if not sep or not mailbox:
            raise PathSyntaxError("bad source route")
        hops = []
        for hop in head.split(","):
            hop = hop.strip()
            if not hop.startswith("@") or not _valid_domain(_clean_domain(hop[1:])):
                raise PathSyntaxError("bad source route")
            hops.append(_clean_domain(hop[1:]))
        route = tuple(hops)
    parts = _split_at_unquoted(mailbox, "@")
    if len(parts) == 1:
        local, domain = parts[0], ""
    elif len(parts) == 2:
        local, domain = parts
        if not domain:
            raise PathSyntaxError("empty domain")
    else:
        raise PathSyntaxError("more than one unquoted '@'")
    if not local:
        raise PathSyntaxError("empty local part")
    if len(local) > MAX_LOCAL_PART:
        raise PathSyntaxError("local part too long")
    if not local.startswith('"') and (
        local.startswith(".") or local.endswith(".") or ".." in local or " " in local
    ):
        raise PathSyntaxError("bad local part")
    if local.startswith('"') and not (len(local) >= 2 and local.endswith('"')):
        raise PathSyntaxError("bad quoted local part")
    domain = _clean_domain(domain)
    if domain and not _valid_domain(domain):
        raise PathSyntaxError("bad domain")
    return Path(text=text, local=local, domain=domain, route=route)
