"""Raw RFC 5322 bytes -> ParsedMessage, once, without ever raising.

The stdlib ``email`` package (``policy.default``) splits the MIME structure; headers are read
from ``raw_items()`` and RFC 2047-decoded here (cheaper than building header objects).
Bounded work: at most ``max_parse_bytes`` of a message are handed to the parser and at most
``max_text_chars`` of decoded text are kept; when a cap bites, ``truncated`` is set and a
defect says so.

Headers that other filters add (``X-Spam-*``, ``X-Barracuda-*``, ``X-Virus-*`` ...) and
``Authentication-Results`` from authserv-ids we do not trust are removed from every view a
feature can see; their names are listed in ``dropped_headers``.
"""

from __future__ import annotations

import binascii
import contextlib
import email
import email.header
import email.parser
import email.utils
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage, Message
from functools import lru_cache
from typing import Any

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from mailsift import _htmldepth
from mailsift.uri_list import URI_TAGS_CSS, HtmlUris

DEFAULT_MAX_PARSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_TEXT_CHARS = 200_000
DEFAULT_MAX_PARTS = 200
# HTML elements nested deeper than this are flattened before the HTML5 tree builder sees the
# document: its work per tag grows with the nesting, so unbounded nesting costs it O(n^2)
# (20,000 nested <div> took 0.7 s). Real mail stays far below (the SpamAssassin corpus: 2,299
# tags at most in a message, all of it rendered unchanged).
MAX_HTML_DEPTH = 256

# Headers written by other filters: untrusted input, never features.
FOREIGN_HEADER_RE = re.compile(
    r"^(x-spam|x-barracuda|x-virus|x-amavis|x-av-|x-antivirus|x-antispam|x-rspamd|x-dspam"
    r"|x-bogosity|x-crm114|x-proofpoint|x-mimecast|x-forefront-antispam|x-microsoft-antispam"
    r"|x-ms-exchange-organization-scl|x-ms-exchange-organization-antispam|x-greylist|x-quarantine"
    r"|x-mailsift|x-policyd|x-ironport|x-sophos|x-trendmicro|x-symantec|x-mcafee|x-cloudmark"
    r"|x-vade|x-vr-spam|x-yahoo-spam|x-gmx-antispam|x-ui-filterresults|x-scanned-by|x-filtered-by"
    r"|x-spf-|x-dkim-|x-mailscanner|x-sa-|x-junk|x-uce|x-razor|x-pyzor|x-dcc-)",
    re.IGNORECASE,
)

# A link as written: ``(?:(?:https?|ftp)://|www\.)`` case-insensitively, then 2-2000 URL
# characters. Spelt without re.IGNORECASE and starting with one character class, so that the
# regex engine skips every character that is not h, f or w in C instead of trying a match at
# each position (4x faster on the corpus). The classes list exactly what IGNORECASE matches,
# U+017F (long s, which case-folds to s) included: tests/message checks both spellings agree.
_URL_RE = re.compile(
    r"""[hHfFwW](?:(?<=[hH])[tT][tT][pP][sS\u017f]?://|(?<=[fF])[tT][pP]://|(?<=[wW])[wW][wW]\.)"""
    r"""[^\s<>"'`{}|\\^]{2,2000}"""
)
_TRAILING_PUNCT = ".,;:!?)]}>'\""
_FROM_LINE_RE = re.compile(rb"^From [^\r\n]*\r?\n")
# the start of a blank line (the character before it): the feed parser splits lines at
# "\r\n", "\r" and "\n"
_BLANK_LINE_RE = re.compile(r"\n[\r\n]|\r\r")
_ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
# MIME parameter headers, folded lines included. The stdlib's parameter parser is quadratic
# in the number of parameters: a spam with 7,000 empty ones ("; ; ; ...") costs it seconds.
_MIME_PARAM_HEADER_RE = re.compile(
    rb"(?im)^content-(?:type|disposition)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*"
)
_EMPTY_PARAMS_RE = re.compile(rb";(?:\s*;)+")
MAX_MIME_PARAM_HEADER = 2048


@dataclass(frozen=True, slots=True)
class Url:
    url: str
    host: str  # lower-case host name or IP literal, "" when unparseable
    domain: str  # registrable domain (eTLD+1) or the IP, "" when unknown
    text: str | None = None  # shown link text (HTML anchors), None for plain-text URLs
    source: str = "text"  # "text" or "html"
    is_ip: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # decoded size in bytes
    disposition: str = ""


@dataclass(slots=True)
class ParsedMessage:
    raw: bytes  # the message as received (never modified)
    size: int
    digest: str  # sha256 hex of `raw`
    headers: list[tuple[str, str]] = field(default_factory=list)  # decoded, foreign removed
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # undecoded, unfolded
    # headers of each MIME part below the top level (walk order), undecoded and unfolded
    part_headers: list[list[tuple[str, str]]] = field(default_factory=list)
    dropped_headers: list[str] = field(default_factory=list)
    envelope_from: str | None = None  # mbox "From " line sender, if present
    content_type: str = "text/plain"
    text: str = ""  # text/plain parts, joined
    html: str = ""  # text/html source, joined (capped)
    html_text: str = ""  # text/html rendered to text
    # what a reader's mail client shows: the text parts that are no multipart/alternative
    # sibling of an HTML part, and the rendered HTML without its hidden elements
    shown_text: str = ""
    html_shown_text: str = ""
    # multipart/alternative parts that offer HTML, and their other text parts (joined)
    html_alternatives: int = 0
    alternative_text: str = ""
    urls: list[Url] = field(default_factory=list)
    # the URIs SpamAssassin's HTML parser records (uri_list.HtmlUris), for the uri rules
    html_uris: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    images: int = 0  # inline/attached images plus <img> tags
    html_tags: int = 0
    # per text/html part, as SpamAssassin's HTML parser records it for HTMLEval's
    # html_image_only: the length of the part's decoded source (characters when it reads
    # as UTF-8, else bytes) and whether it holds an <img> tag
    html_part_images: list[tuple[int, bool]] = field(default_factory=list)
    # per image/gif, image/png and image/jp(e)g part sent in base64 (its last
    # Content-Transfer-Encoding), as SpamAssassin's ImageInfo plugin reads it: the kind
    # ("gif", "png", "jpeg") and the width and height in its header (0, 0 when unreadable)
    image_dims: list[tuple[str, int, int]] = field(default_factory=list)
    # MIMEEval's mime_qp_long_line: a part in quoted-printable has an undecoded line over 78
    # characters (see _qp_long_line)
    qp_long_line: bool = False
    parts: int = 0
    defects: list[str] = field(default_factory=list)
    truncated: bool = False

    # ---- header access -------------------------------------------------------------------
    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def header(self, name: str, default: str = "") -> str:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def raw_header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.raw_headers if k.lower() == n]

    def has_header(self, name: str) -> bool:
        n = name.lower()
        return any(k.lower() == n for k, _ in self.headers)

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def from_addr(self) -> str:
        return address_of(self.header("From"))

    @property
    def from_name(self) -> str:
        return parse_address(self.header("From"))[0]

    @property
    def reply_to(self) -> str:
        return address_of(self.header("Reply-To"))

    @property
    def to_addrs(self) -> list[str]:
        to: list[str] = []
        cc: list[str] = []
        for k, v in self.headers:  # = header_all("To") + header_all("Cc"), one pass
            n = k.lower()
            if n == "to":
                to.append(v)
            elif n == "cc":
                cc.append(v)
        return list(recipients(tuple(to + cc)))

    @property
    def message_id(self) -> str:
        return self.header("Message-ID").strip()

    @property
    def date(self) -> datetime | None:
        return parse_date(self.header("Date"))

    @property
    def body(self) -> str:
        """The visible text: plain parts, else the rendered HTML (what a reader sees)."""
        if self.text and not self.text.isspace():  # = self.text.strip(), without the copy
            return self.text if not self.html_text else self.text + "\n" + self.html_text
        return self.html_text

    @property
    def shown_body(self) -> str:
        """The text a reader sees (:attr:`body` also holds what a client never shows: the
        plain-text alternative of an HTML message and the HTML's hidden elements)."""
        if self.shown_text and not self.shown_text.isspace():
            if not self.html_shown_text:
                return self.shown_text
            return self.shown_text + "\n" + self.html_shown_text
        return self.html_shown_text

    @property
    def header_block(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.headers)

    @property
    def is_html_only(self) -> bool:
        return bool(self.html) and (not self.text or self.text.isspace())


# ---- helpers -------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def address_of(value: str) -> str:
    try:
        return parse_address(value)[1].lower()
    except Exception:
        return ""


def parse_address(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr(value)``: (display name, address), ("", "") when unreadable.

    A value of one of the simple shapes (:func:`_simple_addresses`: the stdlib's
    ``getaddresses`` of one such value is that one pair, which is what ``parseaddr`` gives
    for it) is read by one regex instead of the stdlib's character-by-character parser: 1
    instead of 12 us a value; 87% of the distinct address header values of the corpora."""
    simple = _simple_addresses((value,))
    if simple is not None:
        return simple[0]
    return email.utils.parseaddr(value)


# address header values longer than this (together) are not cached (bounds the cache)
MAX_CACHED_ADDRESSES = 1024

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDR = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
# the shapes nearly every address header has: a@b, <a@b>, Some Name <a@b>, "Name" <a@b>
_SIMPLE_ADDRESS_RE = re.compile(
    rf'[ \t]*(?:({_PLAIN_ADDR})|(?:({_ATOM}(?:[ \t]+{_ATOM})*)|"([^"\\\r\n]*)")?'
    rf"[ \t]*<({_PLAIN_ADDR})>)[ \t]*"
)


def parse_addresses(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``email.utils.getaddresses(values)`` (the values joined with ", " and parsed as one
    list) as (name, address) pairs, empty pairs dropped; odd input gives what could be read,
    never an error. The same values recur from message to message (a site's own addresses,
    lists): short ones are parsed once."""
    if sum(map(len, values)) <= MAX_CACHED_ADDRESSES:
        return _parse_addresses_cached(values)
    return _parse_addresses(values)


def recipients(values: tuple[str, ...]) -> tuple[str, ...]:
    """The lower-cased addresses of To / Cc header values."""
    return tuple(a.lower() for _, a in parse_addresses(values) if a)


def _parse_addresses(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    simple = _simple_addresses(values)
    if simple is not None:
        return simple
    try:
        return tuple((n, a) for n, a in email.utils.getaddresses(values) if a or n)
    except Exception:  # odd input: degrade to nothing rather than fail the message
        return ()


_parse_addresses_cached = lru_cache(maxsize=8192)(_parse_addresses)


def _simple_addresses(values: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    """What ``email.utils.getaddresses`` gives for values of the simple shapes, else None.

    Checked against the stdlib on every address header of the SpamAssassin corpus (94% of
    them take this path) and in the tests; anything else goes to the stdlib parser.
    """
    out: list[tuple[str, str]] = []
    for v in values:
        m = _SIMPLE_ADDRESS_RE.fullmatch(v)
        if m is None:
            return None
        bare, words, quoted, addr = m.groups()
        if bare is not None:
            out.append(("", bare))
        else:
            name = " ".join(words.split()) if words is not None else quoted or ""
            out.append((name, addr))
    return tuple(out)


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
# the date as nearly every MTA writes it: [Day,] D Mon YYYY HH:MM[:SS] +HHMM [(comment)]
_CANONICAL_DATE_RE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+([+-])(\d{2})(\d{2})(?:\s+\([^()]*\))?",
    re.ASCII,
)


@lru_cache(maxsize=4096)
def parse_date(value: str) -> datetime | None:
    """``email.utils.parsedate_to_datetime``, None when it fails; the canonical shape is read
    by one regex (equal to the stdlib on every Date and Received date of the corpus)."""
    if not value:
        return None
    fast = _fast_date(value)
    if fast is not None:
        return fast
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except Exception:
        return None
    return dt


def _fast_date(text: str) -> datetime | None:
    """``parsedate_to_datetime`` of the canonical shape, else None (the stdlib decides)."""
    m = _CANONICAL_DATE_RE.fullmatch(text)
    if m is None:
        return None
    day, mon, year, hh, mm, ss, sign, tzh, tzm = m.groups()
    month = _MONTHS.get(mon.lower())
    offset = int(tzh) * 3600 + int(tzm) * 60
    if month is None or (sign == "-" and offset == 0):  # -0000: "no zone" (a naive time)
        return None
    try:
        zone = timezone(timedelta(seconds=-offset if sign == "-" else offset))
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss or 0), tzinfo=zone)
    except ValueError:
        return None


def decode_header_value(value: str) -> str:
    """RFC 2047-decode and unfold one header value; unknown charsets degrade, never raise."""
    value = value.replace("\r", "").replace("\n", "")
    if "=?" not in value:
        return value.strip()
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return value.strip()
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return "".join(out).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    cs = (charset or "utf-8").strip().strip('"').lower() or "utf-8"
    if cs in ("unknown-8bit", "x-unknown", "default", "us-ascii"):
        cs = "utf-8"
    try:
        return data.decode(cs, errors="replace")
    except (LookupError, ValueError):
        return data.decode("latin-1", errors="replace")


@lru_cache(maxsize=1)
def _psl():  # type: ignore[no-untyped-def]
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    host = host.strip(".").lower()
    if not host:
        return ""
    if _is_ip(host):
        return host
    try:
        priv = _psl().privatesuffix(host)
    except Exception:
        priv = None
    return priv or host


_NOT_IP_CHAR_RE = re.compile(r"[^0-9a-fA-FxX.:\[\]%]")


def _is_ip(host: str) -> bool:
    if _NOT_IP_CHAR_RE.search(host):  # most host names: letters beyond hex digits
        return False
    h = host.strip("[]")
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    # dotted forms spammers use: decimal/hex/octal integers
    return bool(re.fullmatch(r"(0x[0-9a-f]+|\d{8,10})", h))


@lru_cache(maxsize=16384)
def make_url(raw_url: str, text: str | None = None, source: str = "text") -> Url | None:
    """A Url from a link as written (cached: the same links recur across messages)."""
    u = raw_url.strip().rstrip(_TRAILING_PUNCT)
    if not u:
        return None
    low = u.lower()
    if low.startswith(("mailto:", "javascript:", "data:", "tel:", "cid:", "#")):
        return None
    if low.startswith("www."):
        u = "http://" + u
    elif not re.match(r"^[a-z][a-z0-9+.-]*://", low):
        return None
    rest = u.split("://", 1)[1]
    hostport = re.split(r"[/?#]", rest, maxsplit=1)[0]
    hostport = hostport.rsplit("@", 1)[-1]  # user:pass@host
    if hostport.startswith("["):
        host = hostport[1 : hostport.find("]")] if "]" in hostport else hostport[1:]
    else:
        host = hostport.split(":", 1)[0]
    host = host.lower().strip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # an odd IDN stays as given
            host = host.encode("idna").decode("ascii")
    is_ip = _is_ip(host)
    return Url(u[:2000], host, registrable_domain(host) if host else "", text, source, is_ip)


def urls_from_text(text: str, limit: int = 500) -> list[Url]:
    out: list[Url] = []
    for m in _URL_RE.finditer(text):
        url = make_url(m.group(0))
        if url is not None:
            out.append(url)
            if len(out) >= limit:
                break
    return out


_HTML_BLANKS = ("\t", "\r", "\f", "\v", "\u00a0")
# inline styles that hide an element from the reader: no display, no visibility, no size,
# no opacity, Outlook's own switch, placed far off-screen, or clipped to nothing (a cheap
# test on the whole document first)
_HIDDEN_HINT_RE = re.compile(
    r"(?i)display|visibility|font-size|opacity|max-height|mso-hide|hidden|scale|olor|:\s*-\d{3}"
)
_END = r"\s*(?:[;!\"']|$)"
_HIDDEN_STYLE_RE = re.compile(
    r"(?i)(?:^|[;\s\"'])(?:display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all"
    r"|font-size\s*:\s*(?:0*\.?0+|[012](?:\.\d+)?(?:px|pt))"
    + _END
    + r"|max-height\s*:\s*0+(?:px)?"
    + _END
    + r"|opacity\s*:\s*0*\.?0+"
    + _END
    + r"|(?:left|top|text-indent|margin-left|margin-top)\s*:\s*-\d{3,}(?:\.\d+)?(?:px|pt)?"
    + _END
    + r")"
)
_CLIPPED_RE = re.compile(r"(?i)overflow\s*:\s*hidden|transform\s*:\s*scale\(\s*0*\.?0+\s*[,)]")
# text colour and background: text in (nearly) the background's colour is not read
_COLOR_RE = re.compile(r"(?i)(?:^|[;\s\"'])color\s*:\s*([^;!\"']+)")
_BACKGROUND_RE = re.compile(r"(?i)background(?:-color)?\s*:\s*([^;!\"']+)")
_HEX_RE = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})\b")
_RGB_RE = re.compile(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)")
_NAMED_COLORS: dict[str, tuple[int, int, int] | None] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "transparent": None,
}
_ZERO_BOX_RE = re.compile(r"(?i)(?:^|[;\s\"'])(?:width|height)\s*:\s*0+(?:px)?" + _END)
_SPACES_RE = re.compile("  +")
_BLANK_LINES_RE = re.compile(r"\n\s*\n+")


def html_to_text(html: str) -> tuple[str, list[Url], int, int]:
    """Render HTML to text; return (text, anchor urls, <img> count, tag count).

    Linear in the size of the document: a start tag that would nest elements deeper than
    ``MAX_HTML_DEPTH`` counts as a space (see ``_htmldepth.c``)."""
    return _render_html(html)[:4]


def _clean_rendered(text: str) -> str:
    # = re.sub(r"[ \t\r\f\v\u00a0]+", " ", text): the other blanks become spaces (str.replace
    # scans are cheap), then only runs of two or more are rewritten (single spaces are most
    # of the matches of the one-pass regex, each replaced by itself): 2x faster
    for blank in _HTML_BLANKS:
        if blank in text:
            text = text.replace(blank, " ")
    text = _SPACES_RE.sub(" ", text)
    text = _BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


_WHITE = (255, 255, 255)
_UNKNOWN = (-1, -1, -1)  # a background image: any text colour may be readable on it


def _hidden_nodes(tree: HTMLParser) -> list[Any]:
    """Elements a mail client does not show (inline style or the ``hidden`` attribute),
    outermost only. Linear in the document: what each element inherits (a hidden
    ancestor, the nearest background) is looked up once per element and kept."""
    out: list[Any] = []
    inside: dict[int, bool] = {}  # mem_id -> within an element already found hidden
    backgrounds: dict[int, tuple[int, int, int]] = {}
    for node in tree.css("[style], [hidden]"):
        # within an element found hidden (one is marked True as it is found)
        if _inherited(node.parent, inside, _no_value, False):
            inside[node.mem_id] = True
            continue
        attrs = node.attributes
        style = attrs.get("style") or ""
        if (
            "hidden" in attrs
            or _HIDDEN_STYLE_RE.search(style)
            or (_CLIPPED_RE.search(style) and _ZERO_BOX_RE.search(style))
            or ("olor" in style and _same_as_background(node, style, backgrounds))
        ):
            out.append(node)
            inside[node.mem_id] = True
    return out


def _inherited(node: Any, memo: dict[int, Any], own: Callable[[Any], Any], default: Any) -> Any:
    """What ``node`` inherits: the first value found walking up from it, an element's own
    (``own(element)``, None when it sets none) or one already in ``memo`` (by ``mem_id``),
    else ``default``. Every element walked gets the value in ``memo``, so each element of a
    document is walked once over all calls."""
    path: list[int] = []
    found = default
    while node is not None:
        key = node.mem_id
        known = memo.get(key)
        if known is not None:
            found = known
            break
        path.append(key)
        mine = own(node)
        if mine is not None:
            found = mine
            break
        node = node.parent
    for key in path:
        memo[key] = found
    return found


def _no_value(node: Any) -> None:
    return None


def _own_background(node: Any) -> tuple[int, int, int] | None:
    """The background an element sets itself (``_UNKNOWN`` for an image), else None."""
    attrs = node.attributes if node.tag != "-undef" else {}
    b = _BACKGROUND_RE.search(attrs.get("style") or "")
    value = b.group(1) if b is not None else attrs.get("bgcolor")
    if not value:
        return None
    if "url(" in value.lower():
        return _UNKNOWN
    return _rgb(value)


def _background(node: Any, backgrounds: dict[int, tuple[int, int, int]]) -> tuple[int, int, int]:
    """The nearest background set on ``node`` or an ancestor (white when none is)."""
    return _inherited(node, backgrounds, _own_background, _WHITE)  # type: ignore[no-any-return]


def _rgb(value: str) -> tuple[int, int, int] | None:
    v = value.strip().lower()
    m = _HEX_RE.match(v)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c + c for c in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    m = _RGB_RE.match(v)
    if m:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return _NAMED_COLORS.get(v.split()[0] if v else v)


def _luminance(rgb: tuple[int, int, int]) -> float:
    r, g, b = rgb
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


def _same_as_background(
    node: Any, style: str, backgrounds: dict[int, tuple[int, int, int]]
) -> bool:
    """The element's text colour is within 0.08 luminance of the nearest background set
    on it or an ancestor (white when none is set); unknown colours and background images
    count as readable."""
    m = _COLOR_RE.search(style)
    if m is None:
        return False
    fg = _rgb(m.group(1))
    if fg is None:
        return False
    bg = _background(node, backgrounds)
    return bg != _UNKNOWN and abs(_luminance(fg) - _luminance(bg)) < 0.08


def _render_html(html: str) -> tuple[str, list[Url], int, int, bool, str, list[str]]:
    """``html_to_text``, whether the nesting was flattened, the text without the
    elements a mail client hides, and the URIs SpamAssassin's HTML parser records."""
    capped = _htmldepth.cap(html, MAX_HTML_DEPTH)
    tree = HTMLParser(html if capped is None else capped)
    urls: list[Url] = []
    for a in tree.css("a"):
        href = a.attributes.get("href") or ""
        if href:
            shown = a.text(deep=True, separator=" ", strip=True)[:500]
            url = make_url(href, text=shown, source="html")
            if url is not None:
                urls.append(url)
        if len(urls) >= 500:
            break
    for form in tree.css("form"):
        action = form.attributes.get("action") or ""
        url = make_url(action, text=None, source="html") if action else None
        if url is not None:
            urls.append(url)
    html_uris = HtmlUris()
    for node in tree.css(URI_TAGS_CSS):  # document order: a <base> affects what follows
        html_uris.tag(node.tag or "", node.attributes)
    images = len(tree.css("img"))
    tags = 0
    root = tree.root
    if root is not None:
        tags = sum(1 for _ in root.traverse(include_text=False))
    tree.strip_tags(["script", "style", "head", "title", "noscript", "template"])
    body = tree.body or tree.root
    text = _clean_rendered(body.text(separator=" ", strip=False)) if body is not None else ""
    shown = text
    if body is not None and _HIDDEN_HINT_RE.search(html):
        hidden = _hidden_nodes(tree)
        if hidden:
            for node in hidden:
                node.decompose()
            shown = _clean_rendered(body.text(separator=" ", strip=False))
    return text, urls, images, tags, capped is not None, shown, list(html_uris.uris)


# ---- parsing -------------------------------------------------------------------------------


def parse(
    raw: bytes,
    *,
    max_parse_bytes: int = DEFAULT_MAX_PARSE_BYTES,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_parts: int = DEFAULT_MAX_PARTS,
    trusted_authserv_ids: Sequence[str] = (),
) -> ParsedMessage:
    """Parse raw message bytes. Never raises for any input (bytes or str)."""
    if isinstance(raw, str):  # be forgiving with callers
        raw = raw.encode("utf-8", errors="surrogateescape")
    pm = ParsedMessage(raw=raw, size=len(raw), digest=hashlib.sha256(raw).hexdigest())
    try:
        _parse_into(pm, raw, max_parse_bytes, max_text_chars, max_parts, trusted_authserv_ids)
    except Exception as exc:  # last line of defence: keep what we have, say why
        pm.defects.append(f"parser error: {type(exc).__name__}: {str(exc)[:200]}")
        if not pm.text and not pm.html_text:
            pm.text = raw[:max_text_chars].decode("utf-8", errors="replace")
            pm.shown_text = pm.text
    return pm


def _parse_into(
    pm: ParsedMessage,
    raw: bytes,
    max_parse_bytes: int,
    max_text_chars: int,
    max_parts: int,
    trusted_authserv_ids: Sequence[str],
) -> None:
    data = raw
    m = _FROM_LINE_RE.match(data)
    if m:
        line = m.group(0).decode("latin-1").split()
        pm.envelope_from = line[1] if len(line) > 1 else ""
        data = data[m.end() :]
    if b"\x00" in data[:max_parse_bytes]:
        pm.defects.append("NUL bytes in message")
        data = data.replace(b"\x00", b"")
    if len(data) > max_parse_bytes:
        pm.truncated = True
        pm.defects.append(
            f"truncated: message of {len(data)} bytes, only the first {max_parse_bytes} scanned"
        )
        data = data[:max_parse_bytes]
    data = _tame_mime_parameters(data, pm)
    # compat32: the modern policy builds a header object (a full RFC 5322 grammar parse) for
    # every header the walk below asks about and costs ~10x more; headers are decoded here
    msg = _message_from_bytes(data)
    pm.defects.extend(type(d).__name__ for d in getattr(msg, "defects", []))

    trusted = {t.lower() for t in trusted_authserv_ids}
    for name, value in msg.raw_items():
        sval = value if isinstance(value, str) else str(value)
        lname = name.lower()
        # every FOREIGN_HEADER_RE name starts with "x-": the regex is only tried on those
        if (lname.startswith("x-") and FOREIGN_HEADER_RE.match(lname)) or (
            lname in ("authentication-results", "arc-authentication-results")
            and _authserv_id(sval) not in trusted
        ):
            pm.dropped_headers.append(name)
            continue
        unfolded = sval.replace("\r", "").replace("\n", "")
        pm.raw_headers.append((name, unfolded))
        if unfolded.isascii():  # most headers: no 8-bit bytes, mostly no encoded words
            decoded = decode_header_value(unfolded) if "=?" in unfolded else unfolded.strip()
            pm.headers.append((name, decoded))
            continue
        # 8-bit header bytes arrive as surrogates: make them visible characters
        if _has_surrogates(unfolded):
            unfolded = unfolded.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            pm.defects.append(f"8-bit header: {name}")
        pm.headers.append((name, decode_header_value(unfolded)))

    pm.content_type = _safe(lambda: msg.get_content_type(), "text/plain")
    text_parts: list[str] = []
    shown_parts: list[str] = []
    html_parts: list[str] = []
    shadowed: set[int] = set()
    if msg.is_multipart():
        shadowed, pm.html_alternatives = _safe(lambda: _shadowed_parts(msg), (set(), 0))
    alternative_parts: list[str] = []
    text_len = 0
    nparts = 0
    # SpamAssassin reads the body's lines with CRLF turned into LF when the message's first
    # or last line ends in CRLF (its line_ending check), else a CR counts as a character
    first_end = data.find(b"\n")
    crlf = (first_end > 0 and data[first_end - 1] == 0x0D) or data.endswith(b"\r\n")
    for part in msg.walk():
        nparts += 1
        if nparts > max_parts:
            pm.truncated = True
            pm.defects.append(f"truncated: more than {max_parts} MIME parts, rest not scanned")
            break
        if nparts > 1:
            pm.part_headers.append(
                [(k, str(v).replace("\r", "").replace("\n", "")) for k, v in part.raw_items()]
            )
        if part.is_multipart():
            continue
        pm.defects.extend(type(d).__name__ for d in getattr(part, "defects", []))
        if not pm.qp_long_line and _is_qp(part):
            pm.qp_long_line = _qp_long_line(part, crlf)
        ctype = _safe(part.get_content_type, "text/plain")
        disp = (_safe(part.get_content_disposition, None) or "").lower()
        filename = _safe(part.get_filename, None)
        if ctype.startswith("image/"):
            pm.images += 1
        if (
            filename
            or disp == "attachment"
            or not (ctype.startswith("text/") or ctype == "message/rfc822")
        ):
            payload = _payload_bytes(part, pm)
            kind = _IMAGEINFO_KINDS.get(ctype)
            if kind is not None:
                dims = _imageinfo_dims(part, kind, payload)
                if dims is not None:
                    pm.image_dims.append(dims)
            pm.attachments.append(
                Attachment(
                    filename=decode_header_value(filename or ""),
                    content_type=ctype,
                    size=len(payload),
                    disposition=disp,
                )
            )
            if not ctype.startswith("text/") or disp == "attachment":
                continue
        if ctype not in ("text/plain", "text/html") and not ctype.startswith("text/"):
            continue
        if text_len >= max_text_chars:
            pm.truncated = True
            continue
        content, payload = _part_text(part, pm)
        room = max_text_chars - text_len
        if len(content) > room:
            content = content[:room]
            pm.truncated = True
            pm.defects.append(f"truncated: text beyond {max_text_chars} characters not scanned")
        text_len += len(content)
        if ctype == "text/html":
            html_parts.append(content)
            pm.html_part_images.append(
                (_sa_source_length(payload), _IMG_TAG_RE.search(content) is not None)
            )
        else:
            text_parts.append(content)
            if id(part) not in shadowed:
                shown_parts.append(content)
            else:
                alternative_parts.append(content)
    pm.parts = nparts
    pm.text = "\n".join(text_parts)
    pm.shown_text = pm.text if len(shown_parts) == len(text_parts) else "\n".join(shown_parts)
    pm.alternative_text = "\n".join(alternative_parts)
    pm.html = "\n".join(html_parts)
    urls = text_urls = urls_from_text(pm.text)
    if pm.html:
        try:
            rendered = _render_html(pm.html)
            pm.html_text, html_urls, imgs, tags, flattened, pm.html_shown_text, pm.html_uris = (
                rendered
            )
            if flattened:
                pm.defects.append(
                    f"HTML nested deeper than {MAX_HTML_DEPTH} elements: the deeper tags"
                    " read as spaces"
                )
        except Exception as exc:
            pm.defects.append(f"html error: {type(exc).__name__}")
            html_urls, imgs, tags = [], 0, 0
            pm.html_text = pm.html_shown_text = re.sub(r"<[^>]{0,2000}>", " ", pm.html)
        pm.images += imgs
        pm.html_tags = tags
        seen = {u.url for u in html_urls}
        urls = html_urls + [u for u in urls_from_text(pm.html_text) if u.url not in seen]
        seen.update(u.url for u in urls)
        urls += [u for u in text_urls if u.url not in seen]
    pm.urls = urls[:1000]


def _shadowed_parts(msg: Message) -> tuple[set[int], int]:
    """ids of the non-HTML text parts of each multipart/alternative that also offers HTML
    (a mail client shows the HTML alternative, never these), and how many such
    multipart/alternative parts there are."""
    out: set[int] = set()
    count = 0
    for part in msg.walk():
        if part.get_content_type() != "multipart/alternative":
            continue
        inner = list(part.walk())[1:]
        if any(p.get_content_type() == "text/html" for p in inner):
            count += 1
            out.update(
                id(p)
                for p in inner
                if p.get_content_maintype() == "text" and p.get_content_type() != "text/html"
            )
    return out, count


def _message_from_bytes(data: bytes) -> Message:
    """``email.message_from_bytes(data, policy=policy.compat32)``, with the body of a
    single-part message taken in one slice.

    The feed parser reads a body line by line even when it only joins the lines back (every
    type but ``multipart/*`` and ``message/*``). When the header block names neither, only the
    header block is parsed (``headersonly``) and the rest of the message set as the payload.
    The header block is cut after its first blank line (a line that is only ``\r\n``,
    ``\n`` or ``\r``: the parser's line ends), where the parser's header loop has stopped at
    the latest, so the parser sees the same lines up to there and takes the same decisions; when
    it put anything of the cut part in the body (a line that is no header, a trailing
    ``From`` line), the whole message is parsed the usual way."""
    text = data.decode("ascii", "surrogateescape")  # as BytesParser does
    if text[:1] in ("\r", "\n"):
        end = 0
    else:
        m = _BLANK_LINE_RE.search(text)
        end = m.start() + 1 if m is not None else -1
    if end >= 0:
        end += 2 if text.startswith("\r\n", end) else 1
        head = text[:end].lower()
        if "multipart/" not in head and "message/" not in head:
            parser = email.parser.Parser(policy=policy.compat32)
            msg = parser.parsestr(text[:end], headersonly=True)
            if msg.get_content_maintype() not in ("multipart", "message") and (
                msg.get_payload() == ""
            ):
                msg.set_payload(text[end:])
                return msg
    return email.parser.Parser(policy=policy.compat32).parsestr(text)


def _tame_mime_parameters(data: bytes, pm: ParsedMessage) -> bytes:
    """Collapse runs of empty MIME parameters and cap parameter headers (bounded work).

    Every match of ``_MIME_PARAM_HEADER_RE`` starts a line with ``content-`` (any case), so
    only those places are tried (found with ``bytes.find`` on the lower-cased message) instead
    of letting the regex engine attempt a match at every byte; matches cannot overlap (a match
    only spans continuation lines, which start with a blank), so the result is what
    ``_MIME_PARAM_HEADER_RE.sub`` gives."""
    low = data.lower()  # ASCII case folding, as re.IGNORECASE does for a bytes pattern
    find = low.find
    match = _MIME_PARAM_HEADER_RE.match
    pieces: list[bytes] = []
    done = 0
    at = find(b"content-")
    while at >= 0:
        m = match(data, at) if at == 0 or data[at - 1] == 0x0A else None  # ^ under re.M
        if m is None:
            at = find(b"content-", at + 1)
            continue
        value = m.group(0)
        tamed = _EMPTY_PARAMS_RE.sub(b";", value)[:MAX_MIME_PARAM_HEADER]
        if tamed != value:
            pieces += (data[done:at], tamed)
            done = m.end()
        at = find(b"content-", m.end())
    if not pieces:
        return data
    pm.defects.append(
        f"MIME parameter header with empty parameters or over {MAX_MIME_PARAM_HEADER}"
        " bytes: tidied before parsing"
    )
    pieces.append(data[done:])
    return b"".join(pieces)


def _authserv_id(value: str) -> str:
    return value.strip().split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def _has_surrogates(s: str) -> bool:
    return not s.isascii() and _SURROGATE_RE.search(s) is not None


def _safe(fn, default):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception:
        return default


def _payload_bytes(part: Message, pm: ParsedMessage) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        pm.defects.append(f"undecodable payload: {type(exc).__name__}")
        return b""
    if isinstance(payload, bytes):
        return payload
    if payload is None:
        return b""
    return str(payload).encode("utf-8", "replace")


_IMG_TAG_RE = re.compile(r"<img[\s/>]", re.IGNORECASE)

# the image types SpamAssassin's ImageInfo plugin reads, and its name for each
_IMAGEINFO_KINDS = {
    "image/gif": "gif",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK_RE = re.compile(rb"IHDR|IEND")
_JPEG_SOF = frozenset(
    [*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)]
)


def _transfer_encodings(part: Message) -> list[str]:
    """The part's Content-Transfer-Encoding values, stripped and lower-cased (SpamAssassin
    reads the last; the email package decodes by the first)."""
    return [str(v).strip().lower() for v in part.get_all("content-transfer-encoding") or []]


def _imageinfo_dims(part: Message, kind: str, payload: bytes) -> tuple[str, int, int] | None:
    """``(kind, width, height)`` of an image part as ImageInfo reads it, None unless its last
    Content-Transfer-Encoding is base64 (ImageInfo skips the part)."""
    ctes = _transfer_encodings(part)
    if not ctes or ctes[-1] != "base64":
        return None
    if ctes[0] != "base64":
        # the email package decoded by the first header: decode the base64 here
        raw = part.get_payload(decode=False)
        text = raw if isinstance(raw, str) else ""
        b64 = re.sub(r"[^A-Za-z0-9+/]", "", text.split("=", 1)[0] if "=" in text else text)
        try:
            payload = binascii.a2b_base64(b64[: len(b64) - len(b64) % 4])
        except binascii.Error:
            payload = b""
    width, height = _image_size(kind, payload)
    return kind, width, height


def _image_size(kind: str, data: bytes) -> tuple[int, int]:
    """Width and height in an image's header, as ImageInfo's readers find them (0, 0 when
    they find none): a GIF's logical screen; a PNG's IHDR chunk, looked for in steps of 8
    bytes from offset 8 (ImageInfo never skips a chunk's data) until IEND; a JPEG's first
    start-of-frame segment before the scan."""
    if kind == "gif":
        if len(data) >= 10 and data[:6] in (b"GIF87a", b"GIF89a"):
            return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        return 0, 0
    if kind == "png":
        if data[:8] != _PNG_SIGNATURE:
            return 0, 0
        for m in _PNG_CHUNK_RE.finditer(data, 12):
            pos = m.start() - 4  # the chunk's length field: at 8, 16, 24, ...
            if pos % 8:
                continue
            if m.group() == b"IEND":
                break
            if data[pos : pos + 4] == b"\0\0\0\x0d":
                fields = data[pos + 8 : pos + 25][:-4]  # the 13 data bytes (CRC cut off)
                if len(fields) < 8:
                    return 0, 0
                return int.from_bytes(fields[0:4], "big"), int.from_bytes(fields[4:8], "big")
        return 0, 0
    if data[:2] != b"\xff\xd8":
        return 0, 0
    pos = 2
    while len(data) >= pos + 4:
        mark, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos] != 0xFF or mark in (0xDA, 0xD9) or length < 2:
            break
        pos += 4
        block = data[pos : pos + length - 2]
        if mark in _JPEG_SOF:
            if len(block) < 5:
                return 0, 0
            return int.from_bytes(block[3:5], "big"), int.from_bytes(block[1:3], "big")
        pos += len(block)
    return 0, 0


def _is_qp(part: Message) -> bool:
    """The part's last Content-Transfer-Encoding is quoted-printable (as SpamAssassin reads
    it: the last header, stripped and lower-cased)."""
    ctes = _transfer_encodings(part)
    return bool(ctes) and ctes[-1] == "quoted-printable"


def _qp_long_line(part: Message, crlf: bool) -> bool:
    """MIMEEval's ``mime_qp_long_line`` for one leaf part: a line of the undecoded body
    longer than 78 characters plus its newline (the line before a multipart boundary has
    none), CRLF counted as one character when ``crlf``, lines starting "SPAM: " exempt."""
    payload = part.get_payload()
    if not isinstance(payload, str) or len(payload) < 79:
        return False
    if crlf:
        payload = payload.replace("\r\n", "\n")
    lines = payload.split("\n")
    if max(map(len, lines)) < 79:
        return False
    last = len(lines) - 1  # the piece after the last newline: 80 characters needed there
    return any(
        len(line) >= (80 if i == last else 79) and not line.startswith("SPAM: ")
        for i, line in enumerate(lines)
    )


def _sa_source_length(payload: bytes) -> int:
    """A part's length as SpamAssassin's renderer counts it with ``normalize_charset`` off
    (its default): bytes, or characters when the bytes are valid UTF-8."""
    if payload.isascii():
        return len(payload)
    try:
        return len(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return len(payload)


def _part_text(part: Message, pm: ParsedMessage) -> tuple[str, bytes]:
    """The part's payload decoded to text (its charset, else UTF-8, else Latin-1), and the
    payload."""
    payload = _payload_bytes(part, pm)
    charset = None
    try:
        charset = part.get_content_charset()
    except Exception:
        pm.defects.append("bad charset parameter")
    if charset:
        try:
            "".encode(charset)
        except (LookupError, ValueError):
            pm.defects.append(f"unknown charset: {charset[:40]}")
            charset = None
    if charset is None:
        try:
            return payload.decode("utf-8"), payload
        except UnicodeDecodeError:
            return payload.decode("latin-1"), payload
    return _decode_bytes(payload, charset), payload


def iter_header_values(pm: ParsedMessage, names: Iterable[str]) -> Iterable[str]:
    wanted = {n.lower() for n in names}
    for k, v in pm.headers:
        if k.lower() in wanted:
            yield v


def as_email_message(raw: bytes) -> EmailMessage:
    """A full stdlib EmailMessage (for code that rewrites headers, e.g. the SMTP filter)."""
    msg = email.message_from_bytes(raw, policy=policy.SMTP)
    assert isinstance(msg, EmailMessage)
    return msg
