"""What rules read: SpamAssassin's views of a message, as the UTF-8 bytes every engine scans.

:class:`MessageViews` builds each view of one message once, on first use, and shares it
between all scan targets and eval tests: ``body`` (SpamAssassin's rendered body: the
Subject, then the visible text with each paragraph on one line, see :func:`render_body`),
``rawbody`` (decoded text and HTML source, unrendered), ``full`` (the raw message), header
values, each MIME part's first headers and the relays of the Received headers
(:mod:`.relays`: the ``X-Spam-Relays-*`` pseudo-headers, the ``ALL-TRUSTED``,
``ALL-INTERNAL``, ``ALL-UNTRUSTED`` and ``ALL-EXTERNAL`` header ranges and RelayEval's
tests).
:func:`header_request` gives the text of a header request (``name:modifiers``) as
SpamAssassin's ``get()`` does. Every view is cut at
``max_scan_bytes``; a header request's text at :data:`MAX_HEADER_BYTES`.
"""

from __future__ import annotations

import re
from typing import Any

from mailsift.classifier.rules.addresses import Address, parse_header_addresses
from mailsift.classifier.rules.relays import PSEUDO_HEADERS, Relays, Trust, message_relays
from mailsift.message import ParsedMessage, decode_header_value

MAX_HEADER_BYTES = 64 * 1024
# SpamAssassin's pseudo-headers for the header lines a part of the relays added (spelt as
# SpamAssassin compares them: case matters)
RELAY_RANGE_HEADERS = frozenset({"ALL-TRUSTED", "ALL-INTERNAL", "ALL-UNTRUSTED", "ALL-EXTERNAL"})


class MessageViews:
    """Lazily built byte views of one message, shared by all targets."""

    def __init__(self, pm: ParsedMessage, max_scan_bytes: int, trust: Trust | None = None) -> None:
        self.pm = pm
        self.max = max_scan_bytes
        self.trust = trust  # the configured trusted / internal networks (None: inferred)
        self._body: bytes | None = None
        self._rawbody: bytes | None = None
        self._full: bytes | None = None
        self._raw_head_and_body: bytes | None = None
        self._headers: dict[str, list[str]] | None = None
        self._raw_headers: dict[str, list[str]] | None = None
        self.memo: dict[Any, Any] = {}  # values eval tests share within one message

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = to_bytes(render_body(self.pm, self.max))[: self.max]
        return self._body

    @property
    def rawbody(self) -> bytes:
        if self._rawbody is None:
            parts = [p for p in (self.pm.text, self.pm.html) if p]
            self._rawbody = to_bytes("\n".join(parts))[: self.max]
        return self._rawbody

    @property
    def full(self) -> bytes:
        if self._full is None:
            self._full = self.pm.raw[: self.max]
        return self._full

    @property
    def raw_head_and_body(self) -> bytes:
        if self._raw_head_and_body is None:
            self._raw_head_and_body = self.pm.raw[: self.max].replace(b"\r\n", b"\n")
        return self._raw_head_and_body

    def relays(self) -> Relays:
        """The message's relays as SpamAssassin parses its Received headers (once)."""
        r: Relays | None = self.memo.get("relays")
        if r is None:
            r = message_relays(self.pm.raw_headers, self.trust)
            self.memo["relays"] = r
        return r

    def part_header_values(self, lname: str, raw: bool) -> list[bytes | None]:
        """The first ``lname`` header of each MIME part (top level first), None if absent."""
        key = ("part_headers", lname, raw)
        cached: list[bytes | None] | None = self.memo.get(key)
        if cached is not None:
            return cached
        top = self.header_values(lname, raw)
        out: list[bytes | None] = [to_bytes(top[0]) if top else None]
        for first in self.part_first_headers():
            value = first.get(lname)
            if value is not None and not raw:
                value = decode_header_value(value)
            out.append(None if value is None else to_bytes(value.strip()))
        self.memo[key] = out
        return out

    def part_first_headers(self) -> list[dict[str, str]]:
        """Each MIME part's headers as lower-cased name -> first value."""
        parts: list[dict[str, str]] | None = self.memo.get("part_first_headers")
        if parts is None:
            parts = []
            for headers in self.pm.part_headers:
                first: dict[str, str] = {}
                for k, v in headers:
                    first.setdefault(k.lower(), v)
                parts.append(first)
            self.memo["part_first_headers"] = parts
        return parts

    def header_names(self) -> set[str]:
        """Lower-cased names of the headers present (other filters' removed)."""
        if self._headers is None:
            self.header_values("", False)
        assert self._headers is not None
        return set(self._headers)

    def header_values(self, name: str, raw: bool) -> list[str]:
        if self._headers is None:
            self._headers = {}
            for k, v in self.pm.headers:
                self._headers.setdefault(k.lower(), []).append(v)
            self._raw_headers = {}
            for k, v in self.pm.raw_headers:
                self._raw_headers.setdefault(k.lower(), []).append(v.strip())
        src = self._raw_headers if raw else self._headers
        assert src is not None
        return src.get(name.lower(), [])


def to_bytes(text: str) -> bytes:
    """``text`` in UTF-8: surrogates that stand for undecodable input bytes
    (``surrogateescape``) become those bytes again; in a text holding any other lone
    surrogate, every surrogate becomes ``?``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


_PARA_BREAK_RE = re.compile(r"[ \t\r\f\v\u00a0]*\n(?:[ \t\r\f\v\u00a0]*\n)+[ \t\r\f\v\u00a0\n]*")
_SPACES_RE = re.compile(r"[ \t\r\n\f\v\u00a0]{2,}|[\t\r\n\f\v\u00a0]")
_WS_RE = re.compile(r"[ \t\r\n\f\v\u00a0]+")
# two line ends with only blanks between them: where a paragraph ends (a literal "\n" first,
# which the regex engine finds by a fast search)
_PARA_SPLIT_RE = re.compile(r"\n[ \t\r\f\v\u00a0]*\n")
_BODY_SPACES = " \t\r\n\f\v\u00a0"
# what str.split() takes for white space beyond the blanks above, and NUL (which the
# regex rendering uses as its paragraph mark): a text holding any is rendered by the regexes
# (written out: deriving it from str.isspace over every code point cost 65 ms at import;
# tests/rules/test_views_fast.py checks it against that derivation)
_NOT_BODY_SPACE_RE = re.compile(
    "[\x00\x1c-\x1f\x85\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)


def render_body(pm: ParsedMessage, max_chars: int | None = None) -> str:
    """SpamAssassin's ``body`` view: Subject first, then one line per paragraph.

    A paragraph ends at a run of blanks holding two line ends or more; every other run of
    blanks (``_BODY_SPACES``) becomes one space. When the text has no other character
    ``str.split()`` takes for white space, one regex split into paragraphs and a
    ``str.split`` per paragraph give what the two regex substitutions give (each of which
    tries a match at every character): a run of blanks with two line ends holds a match of
    ``_PARA_SPLIT_RE``, and the empty pieces between the matches in one run are dropped.
    """
    text = pm.body if max_chars is None else pm.body[:max_chars]
    text = text.strip()
    if _NOT_BODY_SPACE_RE.search(text) is None:
        paras = [" ".join(p.split()) for p in _PARA_SPLIT_RE.split(text)]
        return pm.subject + "\n" + "\n".join(filter(None, paras)) + "\n"
    text = _PARA_BREAK_RE.sub("\x00", text)
    text = _SPACES_RE.sub(" ", text).replace(" \x00", "\x00").replace("\x00 ", "\x00")
    return pm.subject + "\n" + text.replace("\x00", "\n") + "\n"


def _relay_range(views: MessageViews, name: str, raw: bool) -> bytes | None:
    """SpamAssassin's ``ALL-TRUSTED`` / ``ALL-INTERNAL`` (the header lines up to and with
    the Received header after the last trusted / internal one) and ``ALL-UNTRUSTED`` /
    ``ALL-EXTERNAL`` (the lines from that Received header on), as ``ALL`` writes them;
    Received headers are counted by position, parsed or not (PerMsgStatus's
    ``get_all_hdrs_in_rcvd_index_range``). None when no line is in the range."""
    relays = views.relays()
    last = relays.last_trusted_index if name.endswith("TRUSTED") else relays.last_internal_index
    edge = last + 1  # the first Received header not in the trusted (internal) part
    leading = name in ("ALL-TRUSTED", "ALL-INTERNAL")
    pairs = views.pm.raw_headers if raw else views.pm.headers
    lines: list[str] = []
    index = -1
    for k, v in pairs:
        if k.lower() == "received":
            index += 1
        if leading or index >= edge:
            lines.append(f"{k}: {v.strip() if raw else v}\n")
        if leading and index == edge:  # that Received header is the last line
            break
    if not lines:
        return None
    return to_bytes("".join(lines))[:MAX_HEADER_BYTES]


def _addresses(values: list[str]) -> list[Address]:
    """SpamAssassin's ``parse_header_addresses`` of each raw value, in order."""
    return [a for v in values for a in parse_header_addresses(v)]


_ASCII_WS_RE = re.compile(r"[ \t\n\r\f\v]+")
_ASCII_NON_WS_RE = re.compile(r"[^ \t\n\r\f\v]")
_SINGLE_QUOTED_RE = re.compile(r"\A'(.*?)'\Z")


def _display_name(phrase: str) -> str:
    """``get(":name")`` of a phrase: MIME words decoded, blanks collapsed and trimmed and
    single quotes around it removed (unless it is all blank)."""
    name = decode_header_value(phrase)
    if _ASCII_NON_WS_RE.search(name):
        name = _ASCII_WS_RE.sub(" ", name).strip(" ")
        name = _SINGLE_QUOTED_RE.sub(r"\1", name, count=1)
    return name


def _first_addr(views: MessageViews, name: str) -> str | None:
    """``get("name:first:addr")``: the first address of the first ``name`` header."""
    values = views.header_values(name, True)[:1]
    if not values:
        return None
    return next((a for _, a in _addresses(values) if a is not None), None)


def _after_received(pm: ParsedMessage, lname: str) -> bool:
    """A ``lname`` header comes after a Received header."""
    seen = False
    for k, _ in pm.raw_headers:
        k = k.lower()
        if k == "received":
            seen = True
        elif k == lname and seen:
            return True
    return False


def envelope_sender(views: MessageViews) -> str | None:
    """The envelope sender as SpamAssassin's ``get_envelope_from`` finds it (once a message):
    the envelope-from the last untrusted relay (else the first trusted one) recorded, when
    it is an address or empty; none when an X-Sender address comes with a fetchmail
    Received header; else the first address of X-Envelope-From, Envelope-Sender or
    Return-Path, each only when no such header comes after a Received header (a late
    X-Envelope-From ends the search)."""
    memo = views.memo
    if "envelope_sender" in memo:
        found: str | None = memo["envelope_sender"]
        return found
    found = None
    relays = views.relays()
    hop = (
        relays.untrusted[0] if relays.untrusted else relays.trusted[-1] if relays.trusted else None
    )
    env = hop.envfrom if hop is not None else None
    if env is not None and (env.find("@") > 0 or env == ""):
        found = env
    elif (
        (xs := _first_addr(views, "X-Sender")) is not None
        and "@" in xs
        and any("(fetchmail" in r for r in views.header_values("Received", False))
    ):
        found = None
    else:
        for name in ("X-Envelope-From", "Envelope-Sender", "Return-Path"):
            addr = _first_addr(views, name)
            if addr is None:
                continue
            if _after_received(views.pm, name.lower()):
                if name == "X-Envelope-From":
                    break
                continue
            found = addr
            break
    memo["envelope_sender"] = found
    return found


def header_request(views: MessageViews, name: str, modifiers: tuple[str, ...]) -> bytes | None:
    """The text SpamAssassin's ``get(name:modifiers)`` gives, or None when absent."""
    raw = "raw" in modifiers
    pm = views.pm
    lname = name.lower()
    if lname in PSEUDO_HEADERS:
        # SpamAssassin's relay metadata: always present (empty without relays), one value
        # without a newline; a real header of that name is another filter's and was dropped
        text = views.relays().pseudo_header(lname)
        assert text is not None
        return text.encode("latin-1")[:MAX_HEADER_BYTES]
    if name == "ALL":
        pairs = pm.raw_headers if raw else pm.headers
        if not pairs:
            return None
        return to_bytes("".join(f"{k}: {v.strip() if raw else v}\n" for k, v in pairs))[
            :MAX_HEADER_BYTES
        ]
    if name in RELAY_RANGE_HEADERS:
        return _relay_range(views, name, raw)
    need_raw = raw or "addr" in modifiers or "name" in modifiers
    if lname == "tocc":
        values = views.header_values("To", need_raw) + views.header_values("Cc", need_raw)
    elif name == "MESSAGEID":
        values = [
            v
            for h in ("X-Message-Id", "Resent-Message-Id", "X-Original-Message-ID", "Message-Id")
            for v in views.header_values(h, need_raw)
            if v.strip()
        ]
    elif lname == "envelopefrom":
        env = envelope_sender(views)
        values = [env] if env else []
    else:
        values = views.header_values(name, need_raw)
    if not values:
        return None
    if "first" in modifiers:
        values = values[:1]
    elif "last" in modifiers:
        values = values[-1:]
    if "addr" in modifiers or "name" in modifiers:
        addrs = _addresses(values)
        if "addr" in modifiers:
            out = [a for _, a in addrs if a is not None]
        else:
            out = [n if raw else _display_name(n) for n, _ in addrs if n is not None]
        if not out:
            return None
        return to_bytes("\n".join(out))[:MAX_HEADER_BYTES]
    return to_bytes("".join(v + "\n" for v in values))[:MAX_HEADER_BYTES]
