"""Small helpers the checks share: the parsed message of a session, address parts, names.

No symbols of its own.
"""

from __future__ import annotations

import re

from mailsift.config import MessageSettings
from mailsift.message import ParsedMessage, parse
from mailsift.smtpd.checks.base import SmtpContext

PARSED_KEY = "mailsift.parsed"


def parsed_message(ctx: SmtpContext, settings: MessageSettings | None = None) -> ParsedMessage:
    """The DATA of the session parsed once (cached in ``ctx.extra``) with the size caps."""
    raw = ctx.raw_message or b""
    cached = ctx.extra.get(PARSED_KEY)
    if isinstance(cached, ParsedMessage) and cached.raw is raw:
        return cached
    s = settings or MessageSettings()
    pm = parse(
        raw,
        max_parse_bytes=s.max_parse_bytes,
        max_text_chars=s.max_text_chars,
        max_parts=s.max_parts,
    )
    ctx.extra[PARSED_KEY] = pm
    return pm


def domain_of(address: str | None) -> str:
    """The lower-case domain of an address ("" when there is none)."""
    a = (address or "").strip().strip("<>")
    if "@" not in a:
        return ""
    return a.rsplit("@", 1)[1].strip().rstrip(".").lower()


def local_part_of(address: str | None) -> str:
    a = (address or "").strip().strip("<>")
    return a.rsplit("@", 1)[0] if "@" in a else a


def symbol_part(text: str) -> str:
    """`text` as an UPPER_SNAKE fragment for a symbol name."""
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_") or "X"


_AR_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@\[\]:]+")


def ar_value(value: str) -> str:
    """An Authentication-Results property value (RFC 8601 2.2) that cannot break the header.

    Addresses and names stay as they are; anything else (``;``, spaces, parentheses, quotes,
    which a sender controls in MAIL FROM, From or a DKIM-Signature) becomes a quoted-string,
    so nobody can smuggle a clause such as ``dkim=pass`` into our own header.
    """
    v = "".join(ch for ch in value if ch.isprintable())[:256]
    if v and _AR_SAFE.fullmatch(v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ar_comment(text: str) -> str:
    """Text for an RFC 8601 comment: no parentheses, backslashes or control characters."""
    return "".join(ch for ch in text if ch.isprintable() and ch not in "()\\")[:100].strip()
