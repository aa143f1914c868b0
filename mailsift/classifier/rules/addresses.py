"""SpamAssassin's address header parser, for the rules' ``:addr`` / ``:name`` requests.

A port of ``Mail::SpamAssassin::Util::_parse_header_addresses`` (SpamAssassin 4.0.1's
internal parser, the only one it uses without Email::Address::XS): a relaxed reader that
keeps what the stdlib's strict parser drops (``a@b.com <a@b.com>`` gives the address and
the name ``a@b.com ``; unquoted commas and missing brackets give what could be read). The
regexes are SpamAssassin's with ASCII ``\\s`` (Perl's on octets); Perl's ``$`` (end or
before a final newline) is written ``\\n?\\Z``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

# characters of a header value parsed: longer values are cut (a bound on the work for
# hostile input, where some regexes take quadratic time: 0.13 s at this length)
MAX_VALUE = 4096
# values up to this many characters are parsed once (the same values recur from message
# to message)
MAX_CACHED = 1024


class Address(NamedTuple):
    """One entry of SpamAssassin's parse: ``phrase`` (the name, else the comment) and
    ``address``, each None when absent."""

    phrase: str | None
    address: str | None


_F = re.ASCII | re.IGNORECASE | re.DOTALL
# "(?:|(?:...)*+)" in SpamAssassin: the empty alternative matches only where the starred
# group matches empty too, so it is dropped (two ways to match each "" made """"""... exponential)
_QUOTED = r'"(?:[^"\\]++|\\.)*+"'
_MAILRE = rf"(?:{_QUOTED}|[^@\s<>()\[\],:;]+)@(?:[^\"\s<>()\[\],:;]+|\[[\d:.]+\])"
_MAILRE_FULL = re.compile(rf"{_MAILRE}\n?\Z", _F)
_PHRASE = rf'(?:{_QUOTED}|[^",;<]++)+'


def _address_re(dup: str, rep: str) -> re.Pattern[str]:
    """One address: [phrase] <address> (duplicate enclosures skipped), or a bare address,
    or a phrase alone; then an optional comment and a comma / semicolon or the end."""
    return re.compile(
        r"\s*(?:"
        rf"(?:({_PHRASE})\s*)?"
        r"<\s*+([^>@]*\S+|\s*)\s*>"
        rf"(?:\s*<\s*+(?:(?:{_QUOTED})?{dup}|\s*)\s*>){rep}"
        rf"|({_MAILRE})|({_PHRASE})"
        r")"
        r"(?:\s*\(((?:[^()\\]++|\\.)*+)\))?"
        r"\s*(?:[,;]|\Z)",
        _F,
    )


# "<\s*+": the blanks after "<" are taken at once (giving some back to the next term
# reaches no other end; "<" followed by many blanks took quadratic time).
# SpamAssassin's regex: the ways to split "< >< >< >..." into duplicate enclosures grow
# exponentially with their number, so it is used on values with a few "<" only
_ADDRESS_RE = _address_re(r"\S+", "*")
MAX_ANGLES = 8
# else the duplicate enclosures are taken without backtracking into them (the same answer
# unless text after the last ">" would only fit with fewer)
_ADDRESS_SAFE_RE = _address_re(r"\S++", "*+")
_GROUP_RE = re.compile(r'^[^"()<>]+:\s*(.*?)\s*(?:;.*)?', _F)
_COMMENT_RE = re.compile(r"\((?:[^()\\]++|\\.)*+\)", _F)
_PHRASE_PART_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"|([^"]++)', _F)
_LAST_DITCH_RE = re.compile(rf"<({_MAILRE})>", _F)
_HOST_OF_RE = re.compile(r"[^@]*@([^@]*)", _F)
# Perl's s/^(([^\@]*)\@([^\@]*)).*/$1/ (no /s: the text after a newline stays)
_CUT_AT_SECOND_AT_RE = re.compile(r"^([^@]*@[^@]*).*")
_TRAILING_WS_RE = re.compile(r"\s+\Z", re.ASCII)
_NON_WS_RE = re.compile(r"\S", re.ASCII)
_BACKSLASH_NOT_PAIRED_RE = re.compile(r"\\(?!\\)")
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\n?\Z")


def is_fqdn_valid(host: str) -> bool:
    """``is_fqdn_valid(idn_to_ascii(host), 1)`` without an IDN library (SpamAssassin's
    setup here): at least two dot-separated labels of 1-63 letters, digits, ``-`` (not
    first or last) and ``_`` (not in the last two labels), 253 characters at most after
    trailing dots are removed."""
    host = host.lower().rstrip(".")
    if len(host.encode("utf-8", "surrogateescape")) > 253:
        return False
    labels = host.split(".")
    cnt = len(labels)
    if cnt < 2:
        return False
    for label in labels:
        if not 1 <= len(label) <= 63 or not _LABEL_RE.match(label):
            return False
        if cnt <= 2 and "_" in label:
            return False
        cnt -= 1
    return True


def _valid(address: str | None) -> bool:
    """``_valid_parsed_address``: not a ``""@`` address, not one lone double quote."""
    return address is not None and not address.startswith('""@') and address.count('"') != 1


def _unquote_phrase(phrase: str) -> str:
    """The phrase with quoted parts unquoted (backslash escapes removed) and comments
    dropped from the unquoted parts."""
    out = []
    for m in _PHRASE_PART_RE.finditer(phrase):
        quoted, plain = m.groups()
        if quoted is not None:
            out.append(_BACKSLASH_NOT_PAIRED_RE.sub("", quoted).replace("\\\\", "\\"))
        else:
            out.append(_COMMENT_RE.sub("", plain))
    return "".join(out)


def _parse(value: str) -> tuple[Address, ...]:
    if len(value) > MAX_VALUE:  # cut after the last comma within the bound, if any
        cut = value.rfind(",", 0, MAX_VALUE)
        value = value[: cut if cut > 0 else MAX_VALUE]
    s = _TRAILING_WS_RE.sub("", value, count=1)
    s = s.replace("\\\\", "")
    s = _GROUP_RE.sub(r"\1", s, count=1)  # a group's name and its ending ";" dropped
    if not _NON_WS_RE.search(s):
        return ()
    results: list[Address] = []
    pos = 0
    address_re = _ADDRESS_RE if s.count("<") <= MAX_ANGLES else _ADDRESS_SAFE_RE
    while True:
        m = address_re.match(s, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        bracketed, bare, plain_phrase, comment = m.group(2, 3, 4, 5)
        phrase = m.group(1) if m.group(1) is not None else plain_phrase
        address = bracketed if bracketed is not None else bare
        if bracketed is not None:
            address = _COMMENT_RE.sub("", bracketed)
            if not _MAILRE_FULL.match(address):
                address = None
        if not _valid(address):
            address = None
        if phrase is not None:
            phrase = _unquote_phrase(phrase)
            host = _HOST_OF_RE.match(phrase)
            if (
                address is None
                and _MAILRE_FULL.match(phrase)
                and _valid(phrase)
                and host is not None
                and is_fqdn_valid(host.group(1))
            ):
                address, phrase = phrase, None
            elif (address is not None and phrase == address) or phrase == "":
                phrase = None
        if phrase is None and comment is not None:
            phrase = comment
        if address is not None:
            address = _CUT_AT_SECOND_AT_RE.sub(r"\1", address, count=1)
        results.append(Address(phrase, address))
    rest = s[pos:]
    if "@" in rest:  # unparsed text: take the bracketed addresses in it
        for am in _LAST_DITCH_RE.finditer(rest):
            if _valid(am.group(1)):
                results.append(Address(None, _CUT_AT_SECOND_AT_RE.sub(r"\1", am.group(1), 1)))
    return tuple(results)


_parse_cached = lru_cache(maxsize=8192)(_parse)


def parse_header_addresses(value: str) -> tuple[Address, ...]:
    """SpamAssassin's ``parse_header_addresses`` of one raw header value: its entries in
    order (an entry may have no address, or no phrase), empty when nothing was read."""
    if len(value) <= MAX_CACHED:
        return _parse_cached(value)
    return _parse(value)
