"""Built-in eval tests: what a regex cannot see, computed from the ParsedMessage.

A rule uses one as ``body NAME eval:mailsift_html_only()`` (the rule type does not matter
for evals). Each test takes the message views and its literal arguments and returns a
count (0 = no hit). The project's own tests are named ``mailsift_*``; a few stock
SpamAssassin eval tests with an obvious meaning on our parsed message are provided under
their SpamAssassin names. Any other ``eval:`` is skipped with the reason
"eval test not implemented: NAME".

Tests (arguments in brackets):

- ``mailsift_html_only()``: HTML parts, no text/plain content.
- ``mailsift_image_only([max_chars=200])``: images but at most ``max_chars`` visible text.
- ``mailsift_link_text_mismatch()``: an anchor's shown text is a URL or domain whose
  registrable domain differs from the href's.
- ``mailsift_url_ip()``: a URL's host is a bare IP (dotted, decimal or hex).
- ``mailsift_url_shortener()``: a URL on a known URL-shortener domain.
- ``mailsift_replyto_mismatch()``: Reply-To's registrable domain differs from From's.
- ``mailsift_date_future([hours=48])`` / ``mailsift_date_past([days=365])``: Date header
  compared with the newest Received timestamp (the clock when no Received has one).
- ``mailsift_attachment_ext('exe scr ...')``: an attachment name ends in a listed extension.
- ``mailsift_double_extension()``: ``invoice.pdf.exe`` style names.
- ``mailsift_text_encoding('base64')``: a text/plain MIME part sent in that
  Content-Transfer-Encoding.
- ``mailsift_charset_mismatch()``: a part declares us-ascii (or an unknown charset) yet
  carries 8-bit bytes.
- ``mailsift_defects([min=1])``: MIME structure defects found by the parser.
- ``mailsift_truncated()``: the message was larger than what we scan.
- ``mailsift_body_caps([ratio=0.5], [min_letters=100])``: share of upper-case letters.
- ``mailsift_many_urls([n=20])``: at least ``n`` distinct URLs.
- SpamAssassin names: ``check_for_mime_html``, ``check_for_missing_to_header``,
  ``check_msg_parse_flags('truncated')``, and, with SpamAssassin's definitions:
  ``check_for_faraway_charset`` (never: SpamAssassin's default ``ok_locales all``),
  ``check_for_mime_html_only`` (the first Content-Type is text/html, or a MIME part is
  text/html and none is another text type), ``check_for_shifted_date(min, max)``
  (Resent-Date, else Date, minus the closest Received timestamp, in hours, ``'undef'`` for
  an open end; HeaderEval's reading, :func:`_date_diff_seconds`),
  ``check_for_uppercase(min, max)``
  (upper-case share of the letters and digits of body lines with an inner space, from 200
  characters, not for CJK charsets), ``subject_is_all_caps()``,
  ``check_for_to_in_subject('user'|'address')``, ``check_header_count_range(name, min,
  max)``, ``check_blank_line_ratio(min, max, min_lines)`` and ``check_illegal_chars(header,
  ratio, count)`` (8-bit and control bytes in a raw header, or all of them for ``ALL``;
  none when the header is valid UTF-8 without C0 control characters),
  ``html_test('html'|'embeds'|'form_action_mailto')``, ``html_tag_exists(tag)`` (a start
  or end tag written in the HTML source), ``check_mime_multipart_ratio(min, max)`` (plain text length
  over rendered HTML length when a message has both),
  ``multipart_alternative_difference(min, max)`` and
  ``multipart_alternative_difference_count(ratio, min_html)`` (how far the plain-text
  alternative of an HTML message says something else, BodyEval's measure on the whole
  rendered HTML, hidden text included), ``html_image_only(min, max)`` (an HTML part with an
  <img> tag whose source, not its visible text, is more than ``min`` and at most ``max``
  characters long) and ``check_for_mime(test)`` for
  ``mime_base64_count``, ``mime_qp_count``, ``mime_base64_encoded_text`` (a text part in
  base64, its charset ASCII or unset, not marked attachment or inline, each part's last
  header read), ``mime_qp_long_line`` (a quoted-printable line over 78 characters,
  :attr:`~mailsift.message.ParsedMessage.qp_long_line`), ``mime_attachment``,
  ``mime_bad_iso_charset``, ``mimepart_limit_exceeded`` and ``mime_faraway_charset``
  (never: like SpamAssassin with its default ``ok_locales all``).
  Other sub-tests are skipped at load with a reason (:func:`check_args`).
  HTMLEval's ``html_text_match(comment|title|anchor, regex)``,
  ``html_title_subject_ratio(ratio)``, ``html_range('length', min, max)``,
  ``html_eval('length', 'OP N')`` and ``html_tag_balance(tag, 'OP N')`` read what
  SpamAssassin's HTML parser records (:func:`_html_strings`); their other measures are
  skipped.
  ``check_from_in_list(list)`` / ``check_replyto_in_list(list)``: a sender address of
  SpamAssassin's ``all_from_addrs`` (the Reply-To address) matches a glob of an ``enlist_addrlist (list)`` line (SpamAssassin's WLBLEval
  meaning; lists are resolved at load, :func:`addrlist_args`).
  ``check_uri_host_listed(list)``: a link's host or a parent domain of it is on an
  ``enlist_uri_host (list)`` line (:func:`urihost_args`).
- HeaderEval's ``check_equal_from_domains()``: the From and envelope-sender domains differ
  in their last two labels; ``check_for_matching_env_and_hdr_from()``: the envelope
  sender (:func:`.views.envelope_sender`) is the From address.
- The FreeMail plugin (:class:`FreemailConf`, its configuration read at load by
  :func:`freemail_args`): ``check_freemail_from([regex])``,
  ``check_freemail_header(header, [regex])``, ``check_freemail_body([regex])`` and
  ``check_freemail_replyto(['replyto'|'reply'])``.
- The FromNameSpoof plugin (:class:`FromNameConf`, :func:`fromname_args`):
  ``check_fromname_spoof([level])``, ``check_fromname_different``,
  ``check_fromname_domain_differ``, ``check_fromname_contains_email``,
  ``check_fromname_equals_to``, ``check_fromname_owners_differ`` and
  ``check_fromname_equals_replyto``.
- The ImageInfo plugin, on the sizes the parser reads from the headers of base64 GIF, PNG
  and JPEG parts (``ParsedMessage.image_dims``): ``image_count(kind, min, [max])``,
  ``pixel_coverage(kind, min, [max])``, ``image_size_exact(kind, h, w)``,
  ``image_size_range(kind, min_h, min_w, [max_h], [max_w])`` and
  ``image_to_text_ratio(kind, min, max)`` (the rule's body or rawbody text length over the
  pixel area); ``image_named`` and ``image_name_regex`` (no stock rule uses them) are not
  implemented.
- RelayEval, on the relays of the Received headers (:mod:`.relays`): ``check_no_relays``,
  ``check_relays_unparseable``, ``check_all_trusted``, ``helo_ip_mismatch`` and
  ``check_for_no_rdns_dotcom_helo``.
"""

from __future__ import annotations

import functools
import html as html_mod
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from mailsift.classifier.rules.parser import PLUGIN_SETTINGS, ParsedRules
from mailsift.classifier.rules.perlre import RegexError, compile_python, translate
from mailsift.classifier.rules.relays import IS_IP_PRIVATE, IS_IPV4_ADDRESS
from mailsift.classifier.rules.views import header_request
from mailsift.message import address_of, parse_date, registrable_domain

if TYPE_CHECKING:
    from mailsift.classifier.rules.views import MessageViews

EvalFn = Callable[["MessageViews", tuple[Any, ...]], int]

# well-known public URL shorteners (our list)
SHORTENER_DOMAINS = frozenset(
    [
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "goo.gl",
        "ow.ly",
        "t.co",
        "is.gd",
        "buff.ly",
        "adf.ly",
        "bit.do",
        "cutt.ly",
        "rebrand.ly",
        "shorturl.at",
        "tiny.cc",
        "rb.gy",
        "v.gd",
        "t.ly",
        "lnkd.in",
        "db.tt",
        "qr.ae",
        "soo.gd",
        "s2r.co",
        "clck.ru",
        "shorte.st",
        "mcaf.ee",
        "su.pr",
        "yourls.org",
        "x.co",
        "po.st",
        "bc.vc",
        "u.to",
        "tr.im",
        "cli.gs",
        "short.io",
        "snip.ly",
        "trib.al",
        "dlvr.it",
        "fb.me",
        "youtu.be",
        "wp.me",
        "amzn.to",
        "ift.tt",
        "tiny.one",
        "shrtco.de",
        "rotf.lol",
        "1url.com",
        "zpr.io",
        "urlz.fr",
        "chilp.it",
        "tny.im",
        "kutt.it",
        "s.id",
        "tinyurl.is",
        "surl.li",
    ]
)
EXECUTABLE_EXTS = frozenset(
    [
        "exe",
        "scr",
        "js",
        "jse",
        "vbs",
        "vbe",
        "bat",
        "cmd",
        "com",
        "pif",
        "lnk",
        "iso",
        "img",
        "hta",
        "msi",
        "wsf",
        "wsh",
        "jar",
        "ps1",
        "cpl",
        "reg",
    ]
)
DOCUMENT_EXTS = frozenset(
    [
        "pdf",
        "doc",
        "docx",
        "xls",
        "xlsx",
        "ppt",
        "pptx",
        "txt",
        "rtf",
        "jpg",
        "jpeg",
        "png",
        "gif",
        "zip",
        "htm",
        "html",
    ]
)

_DOMAINISH_RE = re.compile(
    r"^(?:https?://)?(?:www\.)?([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}"
    r"[a-z0-9])?)*\.[a-z]{2,24})(?:[:/?#]\S*)?$",
    re.IGNORECASE,
)
# matched against lower-cased text (case-insensitive, in effect)
_CT_PREFIX_LOWER_RE = re.compile(rb"content-type:[ \t]*\"?$")
_CTE_LOWER_RE = re.compile(rb"\ncontent-transfer-encoding:\s*\"?([\w-]+)")
# matched against the lower-cased message: a case-sensitive pattern starts with a fast
# literal search, an IGNORECASE one tries every position
_CHARSET_RE = re.compile(rb"charset\s*=\s*\"?([\w.:-]+)")
MAX_RECEIVED_DATES = 20  # Received timestamps compared with Date (check_for_shifted_date)


def _num(args: tuple[Any, ...], i: int, default: float) -> float:
    try:
        return float(args[i])
    except (IndexError, TypeError, ValueError):
        return default


@functools.lru_cache(maxsize=1024)  # the rules' arguments: a few distinct tuples
def _nums(args: tuple[Any, ...], defaults: tuple[float, ...]) -> tuple[float, ...]:
    """``_num`` of each argument (``defaults[i]`` when missing or not a number), parsed once."""
    return tuple(_num(args, i, d) for i, d in enumerate(defaults))


def _header(v: MessageViews, lname: str) -> str:
    """``pm.header(name)`` (the first decoded value, else ""), from the views' header index
    (a dict lookup instead of a scan of every header)."""
    values = v.header_values(lname, False)
    return values[0] if values else ""


_HEADER_END_RE = re.compile(rb"\n\r?\n")


def body_length(v: MessageViews, args: tuple[Any, ...]) -> int:
    """BodyEval's ``check_body_length(max)``: the body as received (the bytes after the
    blank line that ends the header block; none without one) is at most ``max`` bytes."""
    n: int | None = v.memo.get("pristine_body_len")
    if n is None:
        raw = v.pm.raw
        m = _HEADER_END_RE.search(raw)
        n = v.memo["pristine_body_len"] = len(raw) - m.end() if m else 0
    return int(n <= _num(args, 0, 0))


def html_only(v: MessageViews, args: tuple[Any, ...]) -> int:
    return int(v.pm.is_html_only)


def never(v: MessageViews, args: tuple[Any, ...]) -> int:
    """A test SpamAssassin's stock settings never fire: ``check_for_faraway_charset`` finds
    every charset fine under its default ``ok_locales all``."""
    return 0


def has_html(v: MessageViews, args: tuple[Any, ...]) -> int:
    return int(bool(v.pm.html))


_SPACE_CHARS = " \t\r\n\f\v\u00a0"


def _visible_chars(text: str, limit: float) -> int:
    """Non-space characters, counted only as far as needed to compare with ``limit``."""
    head = text[: int(limit) * 20 + 1000]
    n = len(head) - sum(head.count(c) for c in _SPACE_CHARS)
    return n if len(head) == len(text) else max(n, int(limit) + 1)


def image_only(v: MessageViews, args: tuple[Any, ...]) -> int:
    max_chars = _num(args, 0, 200)
    if v.pm.images <= 0:
        return 0
    return int(_visible_chars(v.pm.body, max_chars) <= max_chars)


def sa_html_image_only(v: MessageViews, args: tuple[Any, ...]) -> int:
    """HTMLEval's ``html_image_only(min, max)``: some HTML part holds an <img> tag and its
    source (not its visible text) is more than ``min`` and at most ``max`` characters long,
    as SpamAssassin 4.0 measures it."""
    lo, hi = _nums(args, (0, 400))
    return int(any(img and lo < n <= hi for n, img in v.pm.html_part_images))


# ---- SpamAssassin's ImageInfo plugin -----------------------------------------------------
# Mail::SpamAssassin::Plugin::ImageInfo (4.0) on the image parts the parser measured
# (``ParsedMessage.image_dims``): counts and pixel areas by kind ("gif", "png", "jpeg",
# "all"); an image counts even when its size is unreadable, its area only when it is not.
IMAGE_KINDS = ("gif", "png", "jpeg")


def _imageinfo(v: MessageViews) -> tuple[dict[str, int], dict[str, int], dict[str, set[str]]]:
    """Counts, pixel areas and ``HEIGHTxWIDTH`` sizes by kind, once a message."""
    found: tuple[dict[str, int], dict[str, int], dict[str, set[str]]] | None
    found = v.memo.get("imageinfo")
    if found is None:
        count = dict.fromkeys(("all", *IMAGE_KINDS), 0)
        area = dict.fromkeys(("all", *IMAGE_KINDS), 0)
        sizes: dict[str, set[str]] = {}
        for kind, width, height in v.pm.image_dims:
            count[kind] += 1
            count["all"] += 1
            if width and height:
                area[kind] += width * height
                area["all"] += width * height
                sizes.setdefault(kind, set()).add(f"{height}x{width}")
                sizes.setdefault("all", set()).add(f"{height}x{width}")
        found = v.memo["imageinfo"] = (count, area, sizes)
    return found


def _result_check(args: tuple[Any, ...], value: float | None, nomaxequal: bool = False) -> int:
    """ImageInfo's ``result_check``: ``value`` at least ``args[1]`` and at most ``args[2]``
    (below it with ``nomaxequal``), no upper bound without ``args[2]``."""
    if value is None or len(args) < 2:
        return 0
    low = _num(args, 1, 0.0)
    high = _num(args, 2, 0.0) if len(args) > 2 else None
    if value < low or (high is not None and (value > high or (nomaxequal and value == high))):
        return 0
    return 1


def image_count(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``image_count(kind, min, [max])``: how many images of that kind."""
    return _result_check(args, _imageinfo(v)[0].get(str(args[0]) if args else ""))


def pixel_coverage(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``pixel_coverage(kind, min, [max])``: the pixel area of the images of that kind."""
    return _result_check(args, _imageinfo(v)[1].get(str(args[0]) if args else ""))


def image_size_exact(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``image_size_exact(kind, height, width)``: an image of that kind has that size."""
    if len(args) < 3:
        return 0
    size = f"{int(_num(args, 1, 0))}x{int(_num(args, 2, 0))}"
    return int(size in _imageinfo(v)[2].get(str(args[0]), ()))


def image_size_range(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``image_size_range(kind, min_height, min_width, [max_height], [max_width])``."""
    if len(args) < 3:
        return 0
    minh, minw = _num(args, 1, 0), _num(args, 2, 0)
    maxh = _num(args, 3, 0) if len(args) > 3 else None
    maxw = _num(args, 4, 0) if len(args) > 4 else None
    for size in _imageinfo(v)[2].get(str(args[0]), ()):
        h, _, w = size.partition("x")
        height, width = int(h), int(w)
        if height < minh or width < minw:
            continue
        if (maxh is not None and height > maxh) or (maxw is not None and width > maxw):
            continue
        return 1
    return 0


def image_to_text_ratio(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``image_to_text_ratio(kind, min, max)``: the text's length over the pixel area of the
    images of that kind, at least ``min`` and below ``max``. The text is the rule's own: the
    rendered body for a body rule, the decoded raw body for a rawbody rule (the rule type is
    the last argument, added at load by :func:`imageinfo_args`)."""
    if len(args) < 4:
        return 0
    area = _imageinfo(v)[1].get(str(args[0]), 0)
    if not area:
        return 0
    text = v.rawbody if args[-1] == "rawbody" else v.body
    if not text:
        return 0
    return _result_check(args[:3], len(text) / area, nomaxequal=True)


def imageinfo_args(name: str, args: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
    """ImageInfo's arguments as the tests read them: ``image_to_text_ratio`` gets the rule's
    type (which text it measures) appended."""
    return (*args, kind) if name == "image_to_text_ratio" else args


IMAGEINFO_EVALS = frozenset(
    {"image_count", "pixel_coverage", "image_size_exact", "image_size_range", "image_to_text_ratio"}
)


def _shown_domain(text: str | None) -> str:
    if not text:
        return ""
    m = _DOMAINISH_RE.match(text.strip())
    return registrable_domain(m.group(1).lower()) if m else ""


def link_text_mismatch(v: MessageViews, args: tuple[Any, ...]) -> int:
    n = 0
    for u in v.pm.urls:
        if u.source != "html" or not u.domain:
            continue
        shown = _shown_domain(u.text)
        if shown and shown != u.domain:
            n += 1
    return n


def url_ip(v: MessageViews, args: tuple[Any, ...]) -> int:
    return sum(1 for u in v.pm.urls if u.is_ip)


def url_shortener(v: MessageViews, args: tuple[Any, ...]) -> int:
    return sum(1 for u in v.pm.urls if u.host in SHORTENER_DOMAINS or u.domain in SHORTENER_DOMAINS)


def many_urls(v: MessageViews, args: tuple[Any, ...]) -> int:
    return int(len({u.url for u in v.pm.urls}) >= _num(args, 0, 20))


def replyto_mismatch(v: MessageViews, args: tuple[Any, ...]) -> int:
    reply_to = _header(v, "reply-to")
    if not reply_to:  # address_of("") is "": most messages stop here, From not parsed
        return 0
    rt, frm = address_of(reply_to), address_of(_header(v, "from"))
    if "@" not in rt or "@" not in frm:
        return 0
    return int(
        registrable_domain(rt.rsplit("@", 1)[1]) != registrable_domain(frm.rsplit("@", 1)[1])
    )


def _received_date(value: str) -> datetime | None:
    """The timestamp after the last ``;`` of a Received header, None without a time zone.

    (What ``;\\s*([^;]+)$`` captures, stripped, is exactly the text after the last ``;``
    stripped: ``str.rpartition`` finds it without a regex.)
    """
    _, semicolon, tail = value.rpartition(";")
    if not semicolon:
        return None
    dt = parse_date(tail.strip())
    return dt if dt is not None and dt.tzinfo is not None else None


def _dates(v: MessageViews) -> tuple[datetime, list[datetime]] | None:
    """The Date header and the first ``MAX_RECEIVED_DATES`` Received timestamps (newest
    first, those with a time zone), read once a message for the thirteen date tests; None
    without a Date that has a time zone (every date test is then 0)."""
    memo = v.memo
    if "dates" in memo:
        found: tuple[datetime, list[datetime]] | None = memo["dates"]
        return found
    date = _header(v, "date")
    dt = parse_date(date) if date else None  # = pm.date
    if dt is None or dt.tzinfo is None:
        found = None
    else:
        received: list[datetime] = []
        for value in v.header_values("received", False):  # = pm.header_all("Received")
            r = _received_date(value)
            if r is not None:
                received.append(r)
                if len(received) == MAX_RECEIVED_DATES:
                    break
        found = (dt, received)
    memo["dates"] = found
    return found


def _date_skew_hours(v: MessageViews, use_clock: bool) -> float | None:
    """Date minus the newest Received timestamp (the clock when there is none and
    ``use_clock``), in hours."""
    dates = _dates(v)
    if dates is None:
        return None
    dt, received = dates
    ref = received[0] if received else None
    try:
        if ref is None:
            if not use_clock:
                return None
            return (dt.timestamp() - time.time()) / 3600.0
        return (dt - ref).total_seconds() / 3600.0
    except (OverflowError, ValueError, OSError):
        return None


def _skew(v: MessageViews, use_clock: bool) -> float | None:
    key = ("date_skew", use_clock)
    if key not in v.memo:  # several date rules ask: parse the dates once a message
        v.memo[key] = _date_skew_hours(v, use_clock)
    skew: float | None = v.memo[key]
    return skew


def date_future(v: MessageViews, args: tuple[Any, ...]) -> int:
    skew = _skew(v, use_clock=True)
    return int(skew is not None and skew > _num(args, 0, 48))


def date_past(v: MessageViews, args: tuple[Any, ...]) -> int:
    skew = _skew(v, use_clock=False)
    return int(skew is not None and -skew > _num(args, 0, 365) * 24)


@functools.lru_cache(maxsize=1024)  # the rules' arguments: a few distinct tuples
def _ext_list(args: tuple[Any, ...]) -> frozenset[str]:
    words = " ".join(str(a) for a in args).replace(",", " ").lower().split()
    return frozenset(w.lstrip(".") for w in words) or EXECUTABLE_EXTS


def attachment_ext(v: MessageViews, args: tuple[Any, ...]) -> int:
    attachments = v.pm.attachments
    if not attachments:
        return 0
    exts = _ext_list(args)
    return sum(
        1
        for a in attachments
        if "." in a.filename and a.filename.rsplit(".", 1)[1].strip().lower() in exts
    )


def double_extension(v: MessageViews, args: tuple[Any, ...]) -> int:
    n = 0
    for a in v.pm.attachments:
        bits = a.filename.strip().lower().split(".")
        if len(bits) >= 3 and bits[-1] in EXECUTABLE_EXTS and bits[-2] in DOCUMENT_EXTS:
            n += 1
    return n


# the spellings of text/plain looked for, in the order they are taken (up to the limit)
_TEXT_PLAIN_SPELLINGS = {b"text/plain": 0, b"TEXT/PLAIN": 1, b"Text/Plain": 2, b"Text/plain": 3}


def _text_plain_heads(raw: bytes, limit: int = 50, lower: bytes | None = None) -> list[bytes]:
    """The header blocks (message or MIME part) whose Content-Type is text/plain, written in
    one of the usual spellings (the first ``limit``, taken spelling by spelling), from
    ``lower`` (``raw.lower()``, computed when not given).

    One ``bytes.find`` over the lower-cased message finds every spelling (the original
    bytes tell which); on lower-cased text, the case-insensitive regexes become
    case-sensitive ones, which start with a fast literal search.
    """
    if lower is None:
        lower = raw.lower()
    found: list[tuple[int, int]] = []
    pos = lower.find(b"text/plain")
    while pos >= 0:
        rank = _TEXT_PLAIN_SPELLINGS.get(raw[pos : pos + 10])
        if rank is not None:
            found.append((rank, pos))
        pos = lower.find(b"text/plain", pos + 10)
    found.sort()
    out: list[bytes] = []
    for _, pos in found:
        if len(out) >= limit:
            break
        line_start = lower.rfind(b"\n", 0, pos) + 1
        if _CT_PREFIX_LOWER_RE.match(lower, line_start, pos):
            start = lower.rfind(b"\n\n", 0, pos)
            end = lower.find(b"\n\n", pos)
            out.append(lower[start + 1 if start >= 0 else 0 : end if end >= 0 else len(lower)])
    return out


def _raw_lower(v: MessageViews) -> bytes:
    """``raw_head_and_body.lower()``, once a message (charsets, text/plain heads)."""
    lower: bytes | None = v.memo.get("raw_lower")
    if lower is None:
        lower = v.memo["raw_lower"] = v.raw_head_and_body.lower()
    return lower


def text_encoding(v: MessageViews, args: tuple[Any, ...]) -> int:
    want = str(args[0]).lower().encode() if args else b"base64"
    n = 0
    for head in _text_plain_heads(v.raw_head_and_body, lower=_raw_lower(v)):
        m = _CTE_LOWER_RE.search(b"\n" + head)  # head is lower-cased: so is the group
        if m and m.group(1) == want:
            n += 1
    return n


def charset_mismatch(v: MessageViews, args: tuple[Any, ...]) -> int:
    if any(d.startswith("unknown charset") for d in v.pm.defects):
        return 1
    declared = _declared_charsets(v)
    if declared and declared <= {b"us-ascii", b"ascii"}:
        raw = v.raw_head_and_body
        if raw.isascii():  # no 8-bit byte anywhere: no copy of the body needed
            return 0
        sep = raw.find(b"\n\n")
        return int(sep >= 0 and not raw[sep:].isascii())
    return 0


_STRUCTURAL = re.compile(r"^(?!truncated|NUL bytes|8-bit header)")


def defects(v: MessageViews, args: tuple[Any, ...]) -> int:
    found = sum(1 for d in v.pm.defects if _STRUCTURAL.match(d))
    return int(found >= _num(args, 0, 1))


def truncated(v: MessageViews, args: tuple[Any, ...]) -> int:
    return int(v.pm.truncated)


def sa_parse_flags(v: MessageViews, args: tuple[Any, ...]) -> int:
    flag = str(args[0]) if args else ""
    if flag == "truncated":
        return int(v.pm.truncated)
    return 0


# each byte as its class: upper-case letter, lower-case letter, digit, other. Counting
# classes in one translated copy is faster than deleting all other bytes once a class.
_CLASS_UPPER, _CLASS_LOWER, _CLASS_DIGIT = b"U", b"l", b"d"
_CLASSES = bytes(
    ord(_CLASS_UPPER)
    if 65 <= c <= 90
    else ord(_CLASS_LOWER)
    if 97 <= c <= 122
    else ord(_CLASS_DIGIT)
    if 48 <= c <= 57
    else ord(".")
    for c in range(256)
)


def _class_counts(data: bytes) -> tuple[int, int, int]:
    """Upper-case letters, lower-case letters and digits (ASCII) in ``data``."""
    classes = data.translate(_CLASSES)
    return (
        classes.count(_CLASS_UPPER),
        classes.count(_CLASS_LOWER),
        classes.count(_CLASS_DIGIT),
    )


def _body_counts(v: MessageViews) -> tuple[int, int, int]:
    """``_class_counts`` of the body view, once a message (the two caps tests)."""
    counts: tuple[int, int, int] | None = v.memo.get("body_counts")
    if counts is None:
        counts = v.memo["body_counts"] = _class_counts(v.body)
    return counts


def body_caps(v: MessageViews, args: tuple[Any, ...]) -> int:
    ratio, min_letters = _nums(args, (0.5, 100))
    body = v.body
    start = body.find(b"\n") + 1  # without the Subject line
    if len(body) - start <= 20000:  # the whole body but its first line: counted already
        upper, lower, _ = _body_counts(v)
        head_upper, head_lower, _ = _class_counts(body[:start])
        upper, lower = upper - head_upper, lower - head_lower
    else:
        upper, lower, _ = _class_counts(body[start : start + 20000])
    letters = upper + lower
    return int(letters >= min_letters and upper / letters >= ratio)


def missing_to(v: MessageViews, args: tuple[Any, ...]) -> int:
    return int(not v.header_values("to", False) and not v.header_values("apparently-to", False))


# ---- SpamAssassin eval tests, as SpamAssassin defines them --------------------------------

# charsets whose text legitimately has no lower case (SpamAssassin's
# CHARSETS_LIKELY_TO_FP_AS_CAPS, used by body_charset_is_likely_to_fp too)
_CAPS_FP_CHARSET = (
    r"[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)"
    r"[-_a-z0-9]*"
)
_CAPS_FP_CHARSET_RE = re.compile(_CAPS_FP_CHARSET, re.IGNORECASE)
_CAPS_FP_ENCODED_WORD_RE = re.compile(r"=\?" + _CAPS_FP_CHARSET + r"\?", re.IGNORECASE)
_SUBJECT_PREFIX_RE = re.compile(r"^(?:(?:Re|Fwd|Fw|Aw|Antwort|Sv):\s*)+", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s")
_ASCII_LOWER_RE = re.compile(r"[a-z]")
_ASCII_UPPER_RE = re.compile(r"[A-Z]")
_ILLEGAL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
_FOLD_RE = re.compile(rb"\n[ \t]+")
_C0_CONTROL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_INNER_SPACE_RE = re.compile(rb"\S\s+\S")
_B64_LINE_RE = re.compile(rb"^(?:[A-Za-z0-9+/=]{60,76} ){2}")
# a line the uppercase test counts, in one anchored match: not _B64_LINE_RE, and with an
# inner space (two words: the first, blanks, then a non-blank), read from the line's start
_COUNTED_LINE_RE = re.compile(rb"(?!(?:[A-Za-z0-9+/=]{60,76} ){2})\s*\S+\s+\S")


@functools.lru_cache(maxsize=1024)  # a few dozen charset names recur
def _caps_fp_charset(charset: bytes) -> bool:
    return _CAPS_FP_CHARSET_RE.fullmatch(charset.decode("latin-1")) is not None


@functools.lru_cache(maxsize=1024)  # the rules' arguments: a few distinct tuples
def _bound(args: tuple[Any, ...], i: int) -> float | None:
    """Argument ``i`` as a number; ``'undef'`` (or missing) is an open end."""
    if i >= len(args) or str(args[i]).strip().lower() == "undef":
        return None
    try:
        return float(args[i])
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1024)
def _bounds(args: tuple[Any, ...]) -> tuple[float | None, float | None]:
    return _bound(args, 0), _bound(args, 1)


# HeaderEval's Received timestamps: the first match in each Received header; the top header
# set aside when it is a local (localhost, 127.0.0.1, qmail) hop followed by fetchmail's
_SA_RECEIVED_TIME_RE = re.compile(r"(\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+)", re.ASCII)
_SA_LOCAL_RECEIVED_RE = re.compile(
    r"\bfrom (?:localhost\s|(?:\S+ ){1,2}\S*\b127\.0\.0\.1\b)|qmail \d+ invoked by uid \d+",
    re.ASCII,
)
_SA_FETCHMAIL_RECEIVED_RE = re.compile(r"\bby localhost with \w+ \(fetchmail-[\d.]+", re.ASCII)
MAX_SA_RECEIVED_TIMES = 100  # Received headers read for check_for_shifted_date


def _sa_time(text: str) -> float | None:
    """A date as seconds since the epoch, UTC when it names no zone (parse_rfc822_date)."""
    dt = parse_date(text.strip())
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def _date_diff_seconds(v: MessageViews) -> float:
    """HeaderEval's ``date_diff``: the first Resent-Date (else Date) that parses minus the
    Received timestamp closest to it, in seconds; the last (oldest) difference is dropped
    when it is 0 and there are others; 0 without a date or a Received timestamp."""
    date = None
    for name in ("resent-date", "date"):
        for value in v.header_values(name, False):
            if value:
                date = _sa_time(value)
            if date is not None:
                break
        if date is not None:
            break
    if date is None:
        return 0.0
    received = [r for r in v.header_values("received", False)[:MAX_SA_RECEIVED_TIMES] if r.strip()]
    # a local top hop is set aside only with fetchmail's hop after it; fetchmail's alone is
    local = 1 if received and _SA_LOCAL_RECEIVED_RE.search(received[0]) else 0
    if len(received) > local and _SA_FETCHMAIL_RECEIVED_RE.search(received[local]):
        received = received[local + 1 :]
    diffs = []
    for value in received:
        m = _SA_RECEIVED_TIME_RE.search(value)
        t = _sa_time(m.group(1)) if m else None
        if t is not None:
            diffs.append(date - t)
    if len(diffs) > 1 and diffs[-1] == 0:
        diffs.pop()
    return min(diffs, key=abs) if diffs else 0.0


def shifted_date(v: MessageViews, args: tuple[Any, ...]) -> int:
    memo = v.memo
    if "date_diff" in memo:  # eleven ranges ask: the dates are read once a message
        diff: float = memo["date_diff"]
    else:
        diff = memo["date_diff"] = _date_diff_seconds(v)
    lo, hi = _bounds(args)
    return int((lo is None or diff >= 3600 * lo) and (hi is None or diff < 3600 * hi))


def _declared_charsets(v: MessageViews) -> set[bytes]:
    if "charsets" not in v.memo:
        v.memo["charsets"] = set(_CHARSET_RE.findall(_raw_lower(v)))
    found: set[bytes] = v.memo["charsets"]
    return found


def uppercase(v: MessageViews, args: tuple[Any, ...]) -> int:
    if "uppercase" not in v.memo:
        v.memo["uppercase"] = _uppercase_pct(v)
    pct: float = v.memo["uppercase"]
    lo, hi = _nums(args, (0, 100))
    return int(pct > lo and pct <= hi)


def _uppercase_pct(v: MessageViews) -> float:
    """Upper-case share of the letters and digits of the body lines with an inner space
    (base64-looking lines left out), when they hold at least 200 characters.

    Counted on the whole body (newlines are neither), minus the lines left out, which are
    few and short: one translate for the lot instead of two per line.
    """
    body = v.body
    if len(body) < 200:  # the lines counted hold fewer characters still
        return 0.0
    if any(map(_caps_fp_charset, _declared_charsets(v))):
        return 0.0
    lines = body.split(b"\n")
    length = len(body) - (len(lines) - 1)  # without the newlines
    if length < 200:
        return 0.0
    upper, lower, digits = _body_counts(v)
    lower += digits
    counted = _COUNTED_LINE_RE.match
    left_out = [line for line in lines if line and not counted(line)]
    if left_out:
        rest = b"".join(left_out)
        rest_upper, rest_lower, rest_digits = _class_counts(rest)
        length -= len(rest)
        upper -= rest_upper
        lower -= rest_lower + rest_digits
    if length < 200 or not upper + lower:
        return 0.0
    return 100.0 * upper / (upper + lower)


def subject_all_caps(v: MessageViews, args: tuple[Any, ...]) -> int:
    """The Subject, reply prefixes removed, has a space, at least 10 characters and ASCII
    letters, all upper case (and no CJK-like charset in an encoded word)."""
    subject = _header(v, "subject").strip()
    prefix = _SUBJECT_PREFIX_RE.match(subject)  # anchored: the one match sub() could remove
    if prefix is not None:
        subject = subject[prefix.end() :]
    # (the letters all upper case = an A-Z and no a-z; the cheapest tests first)
    if len(subject) < 10 or _ASCII_LOWER_RE.search(subject) or not _ASCII_UPPER_RE.search(subject):
        return 0
    if not _SPACE_RE.search(subject):
        return 0
    raw = " ".join(v.header_values("Subject", True))
    return int(_CAPS_FP_ENCODED_WORD_RE.search(raw) is None)


def to_in_subject(v: MessageViews, args: tuple[Any, ...]) -> int:
    """The first To address (``'address'``) anywhere in the Subject, or its local part
    (``'user'``) used as a salutation ("jsmith, ...", "jsmith: ...") or closing the line
    ("... for jsmith"): a spammer's mail merge. A list tag ("[user] ...") does not count."""
    subject = _header(v, "subject").lower()
    if not subject:  # (before the To address is parsed)
        return 0
    to_addrs = _fm_addrs(v, "To")  # get("To:addr"): the first To address
    to = to_addrs[0] if to_addrs else ""
    if not to:
        return 0
    if (str(args[0]) if args else "address").lower() != "user":
        return int(_word_at(subject, to, subject.find(to)))
    user = to.split("@", 1)[0]
    if len(user) < 3:
        return 0
    subj = subject.strip()
    if subj.startswith("re:"):
        subj = subj[3:].lstrip()
    if subj.startswith(user):
        rest = subj[len(user) :]
        if rest.lstrip()[:1] in (",", ":", ";", "!") or rest.startswith((" -", "\t-")):
            return 1
    tail = subj.rstrip("!?. \t")
    if tail.endswith(user):
        before = tail[-len(user) - 1] if len(tail) > len(user) else " "
        return int(not (before.isalnum() or before in "_[(<@."))
    return 0


def _word_at(text: str, word: str, pos: int) -> bool:
    """``word`` found at ``pos`` (>= 0) with no word character on either side."""
    while pos >= 0:
        end = pos + len(word)
        left = text[pos - 1] if pos else " "
        right = text[end] if end < len(text) else " "
        if not (left.isalnum() or left == "_") and not (right.isalnum() or right == "_"):
            return True
        pos = text.find(word, pos + 1)
    return False


def header_count_range(v: MessageViews, args: tuple[Any, ...]) -> int:
    if not args:
        return 0
    n = len(v.header_values(str(args[0]), True))
    return int(n >= _num(args, 1, 0) and n <= _num(args, 2, 999))


def blank_line_ratio(v: MessageViews, args: tuple[Any, ...]) -> int:
    lo, hi, min_lines = _num(args, 0, 0), _num(args, 1, 100), int(_num(args, 2, 1))
    lines = v.rawbody.split(b"\n") if v.rawbody else []
    if len(lines) < max(min_lines, 1):
        return 0
    pct = 100.0 * sum(1 for line in lines if not line.strip()) / len(lines)
    return int((lo == 0 and pct <= hi) or (lo < pct <= hi))


def _is_utf8(data: bytes) -> bool:
    """Strict UTF-8 (RFC 3629: no surrogates, no overlong forms), as SpamAssassin's
    ``is_valid_utf_8``."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def illegal_chars(v: MessageViews, args: tuple[Any, ...]) -> int:
    if not args:
        return 0
    name = str(args[0])
    _, ratio, count = _nums(args, (0.0, 0.0, 1))
    if name == "ALL":
        text = b"".join(
            f"{k}: {val}\n".encode("utf-8", "surrogateescape") for k, val in v.pm.raw_headers
        )
        text = _FOLD_RE.sub(b"  ", text)
    else:
        text = "\n".join(v.header_values(name, True)).encode("utf-8", "surrogateescape")
    if not text:
        return 0
    if not text.isascii() and _C0_CONTROL_RE.search(text) is None and _is_utf8(text):
        return 0  # 8-bit text in UTF-8 without control characters (an SMTPUTF8 header)
    illegal = len(_ILLEGAL_RE.findall(text))
    if illegal and name.lower() == "subject" and len(re.findall(rb"[\xa2\xa3\xae]", text)) == 1:
        illegal -= 1
    return int(illegal / len(text) >= ratio and illegal >= count)


# a start tag ("<" and blanks before its name), or an end tag ("/" in the first group)
_TAG_RE = re.compile(r"<(?:\s*|(/))([a-zA-Z][a-zA-Z0-9]{0,20})")
_FORM_MAILTO_RE = re.compile(r"<\s*form\b[^>]*\baction\s*=\s*[\"']?\s*mailto:", re.IGNORECASE)
_BAD_ISO_RE = re.compile(r"iso-\S+-\S+\b", re.IGNORECASE)
_GOOD_ISO_RE = re.compile(r"iso-(?:8859-\d{1,2}|2022-(?:kr|jp(?:-\d)?)(?:-\d)?)\b", re.IGNORECASE)
_PARAM_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([^\s\"';]+)", re.IGNORECASE)
HTML_TESTS = frozenset({"html", "embeds", "form_action_mailto"})
MIME_TESTS = frozenset(
    {
        "mime_base64_count",
        "mime_qp_count",
        "mime_base64_encoded_text",
        "mime_attachment",
        "mime_bad_iso_charset",
        "mimepart_limit_exceeded",
        "mime_faraway_charset",
        "mime_qp_long_line",
    }
)


def _html_tag_sets(v: MessageViews) -> tuple[set[str], set[str]]:
    """The names written in the HTML source (not the ones a parser would add) as start tags,
    and as start or end tags: one pass over the source, once a message."""
    found: tuple[set[str], set[str]] | None = v.memo.get("html_tags")
    if found is None:
        # the same few names recur: lower-case each distinct one once
        written = set(_TAG_RE.findall(v.pm.html))
        start = {name.lower() for end, name in written if not end}
        found = v.memo["html_tags"] = (start, start | {name.lower() for _, name in written})
    return found


def _html_tags(v: MessageViews) -> set[str]:
    """Tag names written in the HTML source as start tags."""
    return _html_tag_sets(v)[0]


def html_test(v: MessageViews, args: tuple[Any, ...]) -> int:
    test = str(args[0]) if args else ""
    if not v.pm.html:
        return 0
    if test == "html":
        return 1
    if test == "embeds":
        return int(bool(_html_tags(v) & {"embed", "object", "applet"}))
    if test == "form_action_mailto":
        return int(_FORM_MAILTO_RE.search(v.pm.html) is not None)
    return 0


def html_tag_exists(v: MessageViews, args: tuple[Any, ...]) -> int:
    """A tag of that name written in the HTML, as a start or an end tag (SpamAssassin's
    HTML parser records both)."""
    if not args or not v.pm.html:
        return 0
    return int(str(args[0]).lower() in _html_tag_sets(v)[1])


def multipart_ratio(v: MessageViews, args: tuple[Any, ...]) -> int:
    pm = v.pm
    if not pm.html_text or not pm.text:
        return 0
    ratio = len(pm.text.strip()) / max(len(pm.html_text.strip()), 1)
    return int(ratio >= _num(args, 0, 0) and ratio < _num(args, 1, 1))


_WORD_CHAR_RE = re.compile(r"\w")


def _words(text: str) -> Counter[str]:
    """Blank-separated words holding a word character, counted (the test runs once per
    distinct word)."""
    counts = Counter(text.split())
    for w in [w for w in counts if not _WORD_CHAR_RE.search(w)]:
        del counts[w]
    return counts


def _alternative_difference(v: MessageViews) -> tuple[float, int, int]:
    """SpamAssassin's multipart/alternative measure (BodyEval): the share (%) of the
    distinct words of the HTML alternative (all of its rendered text, hidden elements too,
    as SpamAssassin's ``rendered()`` gives it) that
    the plain-text alternative does not hold at least as often, the number of distinct
    HTML words and of distinct text words. Words are runs of non-blanks holding a word
    character, case kept; an HTML part without words but with an image counts one. Our
    parse pools the alternatives of a message (SpamAssassin takes the largest difference
    of each): nearly every message has one."""
    memo = v.memo.get("alt_diff")
    if memo is not None:
        return memo  # type: ignore[no-any-return]
    pm = v.pm
    out = (0.0, 0, 0)
    if pm.html_alternatives:
        html = _words(pm.html_text)
        if not html and "img" in _html_tags(v):
            html["\n"] = 1
        text = _words(pm.alternative_text)
        if html:
            left = sum(1 for w, n in html.items() if n - text.get(w, 0) >= 1)
            out = (100.0 * left / len(html), len(html), len(text))
    v.memo["alt_diff"] = out
    return out


def alternative_difference(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``multipart_alternative_difference(min, max)``: the difference is above ``min`` (or
    ``min`` is 0) and at most ``max`` (``'undef'``: no upper end)."""
    diff, n_html, _ = _alternative_difference(v)
    if not n_html:
        return 0
    lo, hi = _bounds(args)
    return int((not lo or diff > lo) and (hi is None or diff <= hi))


def alternative_difference_count(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``multipart_alternative_difference_count(ratio, min_html)``: more than ``min_html``
    distinct HTML words, and more than ``ratio`` times as many distinct words in the
    plain-text alternative (text hidden there, not shown)."""
    _, n_html, n_text = _alternative_difference(v)
    ratio, min_html = _num(args, 0, 3.0), _num(args, 1, 1.0)
    return int(n_html > min_html and n_text / n_html > ratio)


def _mime_parts(v: MessageViews) -> list[tuple[str, str, str]]:
    """(content type, transfer encoding, disposition) of every MIME part, lower-cased: the
    first such header of the message, then of each part (the views index them once, for the
    mimeheader rules too)."""
    if "mime_parts" not in v.memo:

        def top(lname: str, default: str) -> str:
            values = v.header_values(lname, True)
            return values[0] if values else default

        out = [
            (
                top("content-type", "text/plain").strip().lower(),
                top("content-transfer-encoding", "").strip().lower(),
                top("content-disposition", "").strip().lower(),
            )
        ]
        for fields in v.part_first_headers():
            out.append(
                (
                    fields.get("content-type", "text/plain").strip().lower(),
                    fields.get("content-transfer-encoding", "").strip().lower(),
                    fields.get("content-disposition", "").strip().lower(),
                )
            )
        v.memo["mime_parts"] = out
    parts: list[tuple[str, str, str]] = v.memo["mime_parts"]
    return parts


_MIME_ENCODING_TESTS = frozenset({"mime_base64_count", "mime_qp_count", "mime_base64_encoded_text"})

# Util::parse_content_type's charset, and what _check_mime_header takes for an ASCII one
# (unanchored, as written there)
_SA_CHARSET_RE = re.compile(r"""\bcharset\s*=\s*["']?(.*?)["']?(?:;|$)""", re.IGNORECASE)
_SA_ASCII_CHARSET_RE = re.compile(
    r"(?:us-ascii|ansi_x3\.4-1968|iso-ir-6|ansi_x3\.4-1986|iso_646\.irv:1991|ascii|iso646-us"
    r"|us|ibm367|cp367|csascii)"
)
_SA_TYPE_RE = re.compile(r"^([^/]+(?:/[^/\s]*)?).*$", re.DOTALL)
_SA_PLAIN_LIKE_RE = re.compile(r"text\b(?!/(?:x-vcard|calendar|html)$)")


def _last_value(headers: list[tuple[str, str]], lname: str) -> str:
    for k, val in reversed(headers):
        if k.lower() == lname:
            return val.strip()
    return ""


def _sa_content_type(value: str) -> tuple[str, str]:
    """Util::parse_content_type of a Content-Type value: the lower-cased type (text/plain
    when missing or a plain-like text type) and the lower-cased charset ("" when none)."""
    if not value:
        return "text/plain", "us-ascii"
    m = _SA_CHARSET_RE.search(value)
    charset = m.group(1).lower() if m else ""
    ctype = value.lstrip().split(";", 1)[0]
    ctype = _SA_TYPE_RE.sub(r"\1", ctype).lower()
    if not ctype or _SA_PLAIN_LIKE_RE.match(ctype):
        ctype = "text/plain"
    return ctype, charset


def _sa_mime_parts(v: MessageViews) -> list[tuple[str, str, str, str]]:
    """Every MIME part, containers too, top level first, as MIMEEval's
    ``_check_attachments`` reads it: (type, charset, transfer encoding, disposition) from
    the part's last header of each kind (a part's ``get_header`` in scalar context),
    lower-cased (once a message)."""
    found: list[tuple[str, str, str, str]] | None = v.memo.get("sa_mime_parts")
    if found is None:
        found = []
        for headers in (v.pm.raw_headers, *v.pm.part_headers):
            ctype, charset = _sa_content_type(_last_value(headers, "content-type"))
            cte = _last_value(headers, "content-transfer-encoding").lower()
            cd = _last_value(headers, "content-disposition").lower()
            found.append((ctype, charset, cte, cd))
        v.memo["sa_mime_parts"] = found
    return found


def _sa_base64_text(v: MessageViews) -> int:
    """``mime_base64_encoded_text``: a text part in base64 whose charset is ASCII (or
    unset) and that is not marked attachment or inline."""
    return int(
        any(
            ctype.startswith("text")
            and "base64" in cte
            and (not charset or _SA_ASCII_CHARSET_RE.search(charset) is not None)
            and not cd.startswith(("attachment", "inline"))
            for ctype, charset, cte, cd in _sa_mime_parts(v)
        )
    )


def sa_mime_html_only(v: MessageViews, args: tuple[Any, ...]) -> int:
    """MIMEEval's ``check_for_mime_html_only``: the first Content-Type is text/html, or
    some part is text/html and no part is another text type (an empty one counts)."""
    ctypes = v.header_values("content-type", False)
    if ctypes and ctypes[0][:9].lower() == "text/html":
        return 1
    html = text = 0
    for ctype, _, _, _ in _sa_mime_parts(v):
        if ctype == "text/html":
            html += 1
        elif ctype.startswith("text"):
            text += 1
    return int(html > 0 and text == 0)


def _mime_encodings(v: MessageViews) -> dict[str, int]:
    """The three transfer-encoding tests, in one pass over the parts, once a message."""
    found: dict[str, int] | None = v.memo.get("mime_encodings")
    if found is None:
        base64 = qp = 0
        for _, cte, _ in _mime_parts(v):
            if cte.startswith("base64"):
                base64 += 1
            elif cte.startswith("quoted-printable"):
                qp += 1
        found = v.memo["mime_encodings"] = {
            "mime_base64_count": base64,
            "mime_qp_count": qp,
            "mime_base64_encoded_text": _sa_base64_text(v),
        }
    return found


def check_for_mime(v: MessageViews, args: tuple[Any, ...]) -> int:
    test = str(args[0]) if args else ""
    if test == "mimepart_limit_exceeded":
        return int(any(d.startswith("truncated: more than") for d in v.pm.defects))
    if test == "mime_qp_long_line":
        return int(v.pm.qp_long_line)
    if test == "mime_faraway_charset" or test not in MIME_TESTS:
        return 0  # mime_faraway_charset: all locales are fine (SpamAssassin's default)
    if test in _MIME_ENCODING_TESTS:
        return _mime_encodings(v)[test]
    parts = _mime_parts(v)
    if test == "mime_attachment":
        return int(bool(v.pm.attachments) or any("attachment" in cd for _, _, cd in parts))
    if test == "mime_bad_iso_charset":
        for ct, _, _ in parts:
            m = _PARAM_CHARSET_RE.search(ct)
            if m and _BAD_ISO_RE.search(m.group(1)) and not _GOOD_ISO_RE.search(m.group(1)):
                return 1
        return 0
    return 0


@functools.lru_cache(maxsize=64)
def _glob_re(globs: tuple[str, ...]) -> re.Pattern[str]:
    """``enlist_addrlist`` globs (``*`` any run, ``?`` one character, case-insensitive, the
    whole address) as one regex."""
    parts = [re.escape(g).replace(r"\*", ".*").replace(r"\?", ".") for g in globs]
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.IGNORECASE | re.DOTALL)


def addrlist_args(args: tuple[Any, ...], lists: dict[str, list[str]]) -> tuple[Any, ...]:
    """``check_from_in_list('NAME')``'s arguments with the list's globs resolved at load:
    ``(NAME, globs)``. A list no ``enlist_addrlist`` defines is a load error (the rule is
    skipped with the reason), not a rule that never hits."""
    name = str(args[0]).upper() if args else ""
    globs = tuple(dict.fromkeys(lists.get(name, ())))
    if not globs:
        raise ValueError(f"address list not defined: {name or '(none)'}")
    return (name, globs)


def _in_list(v: MessageViews, header: str, args: tuple[Any, ...]) -> int:
    addrs = _fm_addrs(v, header)  # get("Header:addr"): the first address
    addr = addrs[0] if addrs else ""
    return int(bool(addr) and _glob_re(args[1]).match(addr) is not None)


def from_in_list(v: MessageViews, args: tuple[Any, ...]) -> int:
    """WLBLEval's ``check_from_in_list``: an address of :func:`_all_from_addrs` is listed."""
    pattern = _glob_re(args[1])
    return int(any(pattern.match(a) for a in _all_from_addrs(v)))


def replyto_in_list(v: MessageViews, args: tuple[Any, ...]) -> int:
    return _in_list(v, "reply-to", args)


ADDRLIST_EVALS = frozenset({"check_from_in_list", "check_replyto_in_list"})


# WLBLEval's URI host lists: ``check_uri_host_listed('NAME')`` hits when a link's host, or
# the nearest of its parent domains that the list names, is listed (not a "!" exception);
# ``check_uri_host_in_blocklist`` / ``_welcomelist`` read the lists BLOCK and WELCOME.
URIHOST_EVALS = frozenset(
    {"check_uri_host_listed", "check_uri_host_in_blocklist", "check_uri_host_in_welcomelist"}
)
_URIHOST_LIST = {"check_uri_host_in_blocklist": "BLOCK", "check_uri_host_in_welcomelist": "WELCOME"}
MAX_HOST_KEYS = 11  # a host and its parent domains looked up, the nearest to the TLD kept


def urihost_args(
    name: str, args: tuple[Any, ...], lists: dict[str, dict[str, bool]]
) -> tuple[Any, ...]:
    """The list's entries resolved at load: ``(NAME, ((host, listed), ...))``. A list no
    ``enlist_uri_host`` defines is a load error (the rule is skipped with the reason)."""
    list_name = _URIHOST_LIST.get(name) or (str(args[0]).upper() if args else "")
    entries = lists.get(list_name)
    if not entries:
        raise ValueError(f"uri host list not defined: {list_name or '(none)'}")
    return (list_name, tuple(sorted(entries.items())))


@functools.lru_cache(maxsize=64)
def _urihost_map(entries: tuple[tuple[str, bool], ...]) -> dict[str, bool]:
    return dict(entries)


def _host_keys(host: str) -> list[str]:
    """``a.b.example.com`` -> itself and each parent domain down to ``com`` (an address
    literal or an IPv4 address alone), at most ``MAX_HOST_KEYS``, the last ones kept."""
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        return [host[1:-1]]
    if _IPV4_HOST_RE.match(host):
        return [host]
    keys = [host]
    while "." in host:
        host = host.split(".", 1)[1]
        keys.append(host)
    return keys[-MAX_HOST_KEYS:]


_IPV4_HOST_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def _uri_host_keys(v: MessageViews) -> list[list[str]]:
    """Each distinct host of the message's links (mailto: left out), first seen first, as
    its :func:`_host_keys`; read once a message for every list."""
    memo = v.memo
    if "uri_host_keys" not in memo:
        seen: set[str] = set()
        out: list[list[str]] = []
        for url in v.pm.urls:
            host = url.host or ""
            if not host or host in seen or url.url[:7].lower() == "mailto:":
                continue
            seen.add(host)
            out.append(_host_keys(host))
        memo["uri_host_keys"] = out
    keys: list[list[str]] = memo["uri_host_keys"]
    return keys


def uri_host_listed(v: MessageViews, args: tuple[Any, ...]) -> int:
    table = _urihost_map(args[1])
    for host_keys in _uri_host_keys(v):
        for key in host_keys:
            verdict = table.get(key)
            if verdict is not None:
                if verdict:
                    return 1
                break
    return 0


# ---- SpamAssassin's HTMLEval tests over what its HTML parser records ---------------------
# What HTMLEval's tests read, taken from the HTML source (the HTML parts joined: SpamAssassin
# measures each HTML part, a message with several counts here as one), each measure only
# when a rule asks for it: the source's length, the comments (with their markers), the text
# of each <title> and of each <a> (an image inside a link adds "<img>\n", as SpamAssassin's
# parser writes it) and a tag's open count (opened minus closed, never below 0). Script and
# style contents hold no tags, as for HTML::Parser. Every scan finds each tag's end from its
# start and goes on after it: one pass, however many "<" are left unclosed.
_RAW_OPEN_RE = re.compile(r"<(script|style)\b")
_LINK_TAG_RE = re.compile(r"<(/?)(a|img)\b")
_TAG_ANY_RE = re.compile(r"<[^>]{0,2000}>")
_HTML_TEXT_TYPES = frozenset({"comment", "title", "anchor"})
_HTML_RANGE_TESTS = frozenset({"length"})
_EXPR_RE = re.compile(r"^\s*(==|!=|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
MAX_HTML_STRINGS = 500  # titles, links and comments read a message
MAX_HTML_STRING = 4096  # characters kept of a title or a link's text


def _html_lower(v: MessageViews) -> str:
    """The HTML source lower-cased, script and style contents blanked (same length)."""
    if "html_lower" not in v.memo:
        low = v.pm.html.lower()
        parts: list[str] = []
        pos = 0
        while (m := _RAW_OPEN_RE.search(low, pos)) is not None:
            start = low.find(">", m.end())
            if start < 0:
                break
            end = low.find("</" + m.group(1), start)
            if end < 0:
                end = len(low)
            parts += [low[pos : start + 1], " " * (end - start - 1)]
            pos = end
        v.memo["html_lower"] = "".join(parts) + low[pos:] if parts else low
    out: str = v.memo["html_lower"]
    return out


def _between(low: str, opener: str, closer: str) -> list[tuple[int, int]]:
    """(start, end) of each ``opener`` ... ``closer`` span, closer included (at most
    ``MAX_HTML_STRINGS``); an opener with no closer after it ends the scan."""
    out: list[tuple[int, int]] = []
    pos = 0
    while len(out) < MAX_HTML_STRINGS and (i := low.find(opener, pos)) >= 0:
        j = low.find(closer, i + len(opener))
        if j < 0:
            break
        pos = j + len(closer)
        out.append((i, pos))
    return out


def _shown(source: str) -> str:
    """Text between tags, entities decoded, at most ``MAX_HTML_STRING`` characters."""
    return html_mod.unescape(_TAG_ANY_RE.sub("", source[: 4 * MAX_HTML_STRING]))[:MAX_HTML_STRING]


def _html_strings(v: MessageViews, kind: str) -> list[str]:
    key = "html_" + kind
    if key in v.memo:
        cached: list[str] = v.memo[key]
        return cached
    low = _html_lower(v)
    src = v.pm.html
    out: list[str] = []
    if kind == "comment":
        out = [src[i:j] for i, j in _between(low, "<!--", "-->")]
    elif kind == "title":
        for i, j in _between(low, "<title", "</title"):
            start = low.find(">", i)
            if 0 <= start < j:
                out.append(_shown(src[start + 1 : j - len("</title")]))
    elif kind == "anchor":
        depth = 0
        close = -1  # the next "</a" at or after the current link's start (len: none)
        for m in _LINK_TAG_RE.finditer(low):
            end = low.find(">", m.end())
            if end < 0:
                break
            if m.group(2) == "img":
                if depth > 0 and out:
                    out[-1] += "<img>\n"
            elif m.group(1):
                depth = max(depth - 1, 0)
            else:
                depth += 1
                if len(out) >= MAX_HTML_STRINGS:
                    break
                if close < end:
                    close = low.find("</a", end)
                    close = len(low) if close < 0 else close
                out.append(_shown(src[end + 1 : close]))
    v.memo[key] = out
    return out


def _tag_positions(low: str, prefix: str) -> list[int]:
    """Where ``prefix`` (``<name`` or ``</name``) starts a tag: not followed by a name
    character, and a ``>`` after it."""
    out: list[int] = []
    pos = 0
    while (i := low.find(prefix, pos)) >= 0:
        pos = i + len(prefix)
        if pos < len(low) and (low[pos].isalnum() or low[pos] in "_:-"):
            continue
        out.append(i)
    return out


def _tag_balance(v: MessageViews, tag: str) -> int | None:
    """The tag's open count at the end (None: never written)."""
    key = "html_balance_" + tag
    if key not in v.memo:
        low = _html_lower(v)
        count: int | None = None
        last_end = low.rfind(">")
        opens = [i for i in _tag_positions(low, "<" + tag) if i < last_end]
        if opens:
            closes = [i for i in _tag_positions(low, "</" + tag) if i < last_end]
            count = 0
            for _, step in sorted([(i, 1) for i in opens] + [(i, -1) for i in closes]):
                count = max(count + step, 0)
        v.memo[key] = count
    balance: int | None = v.memo[key]
    return balance


@functools.lru_cache(maxsize=256)
def _text_re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@functools.lru_cache(maxsize=256)
def _expr(text: str) -> tuple[Callable[[float, float], bool], float]:
    m = _EXPR_RE.match(text)
    if m is None:
        raise ValueError(f"eval test not implemented: expression {text!r}")
    return _OPS[m.group(1)], float(m.group(2))


def html_text_match(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``html_text_match(type, regex)``: a comment, title or link text matches."""
    if not v.pm.html:
        return 0
    rx = _text_re(str(args[1]))
    return int(any(rx.search(s) for s in _html_strings(v, str(args[0]))))


def html_title_subject_ratio(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``html_title_subject_ratio(ratio)``: a <title> more than ``ratio`` times as long as
    the Subject."""
    subject = _header(v, "subject")
    if not v.pm.html or not subject:
        return 0
    longest = max((len(t) for t in _html_strings(v, "title") if t), default=0)
    return int(longest / len(subject) > _num(args, 0, 3.5))


def html_range(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``html_range('length', min, max)``: the HTML source's length is above ``min`` and at
    most ``max`` (``inf``: no upper end)."""
    if not v.pm.html:
        return 0
    length = len(v.pm.html)
    lo = _num(args, 1, 0.0)
    if len(args) < 3 or str(args[2]) == "inf":
        return int(length > lo)
    return int(lo < length <= _num(args, 2, 0.0))


def html_eval(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``html_eval('length', 'OP N')``: the HTML source's length compared with N."""
    if not v.pm.html:
        return 0
    op, n = _expr(str(args[1]))
    return int(op(len(v.pm.html), n))


def html_tag_balance(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``html_tag_balance(tag, 'OP N')``: the tag was written, and its open count (opened
    minus closed, never below 0) compares with N, e.g. ``'!= 0'``: left open."""
    if not v.pm.html:
        return 0
    balance = _tag_balance(v, str(args[0]).lower())
    if balance is None:
        return 0
    op, n = _expr(str(args[1]))
    return int(op(balance, n))


# ---- SpamAssassin's RelayEval over the relays of the Received headers (views.relays) ------
_DOTCOM_HELO = re.compile(
    r"(?:\.|^)(lycos\.com|lycos\.co\.uk|hotmail\.com|localhost\.com|excite\.com|caramail\.com"
    r"|cs\.com|aol\.com|msn\.com|yahoo\.com|drizzle\.com)$",
    re.IGNORECASE | re.ASCII,
)
_HELO_NET24 = re.compile(r"(\d+\.\d+\.\d+\.)", re.ASCII)


def relays_none(v: MessageViews, args: tuple[Any, ...]) -> int:
    """check_no_relays: no relay parsed and none unparseable."""
    r = v.relays()
    return int(not r.trusted and not r.untrusted and not r.unparseable)


def relays_unparseable(v: MessageViews, args: tuple[Any, ...]) -> int:
    """check_relays_unparseable: some Received header could not be parsed."""
    return 1 if v.relays().unparseable else 0


def relays_all_trusted(v: MessageViews, args: tuple[Any, ...]) -> int:
    """check_all_trusted: trusted relays only, none unparseable."""
    r = v.relays()
    return int(bool(r.trusted) and not r.untrusted and not r.unparseable)


def helo_ip_mismatch(v: MessageViews, args: tuple[Any, ...]) -> int:
    """An untrusted relay's HELO is a public IPv4 address outside the /24 of its public
    IPv4 address."""
    for relay in v.relays().untrusted:
        helo, ip = relay.helo, relay.ip
        if not IS_IPV4_ADDRESS.search(helo) or IS_IP_PRIVATE.search(helo):
            continue
        m = _HELO_NET24.match(helo)
        if (
            IS_IPV4_ADDRESS.search(ip)
            and not IS_IP_PRIVATE.search(ip)
            and helo != ip
            and m is not None
            and not ip.startswith(m[1])
        ):
            return 1
    return 0


def no_rdns_dotcom_helo(v: MessageViews, args: tuple[Any, ...]) -> int:
    """check_for_no_rdns_dotcom_helo: as RelayEval computes it, the last untrusted relay from
    a public IP decides: its HELO names a big free-mail domain and its MTA found no rDNS."""
    found = 0
    for relay in v.relays().untrusted:
        if relay.ip_private:
            continue
        found = int(bool(_DOTCOM_HELO.search(relay.helo)) and relay.no_reverse_dns)
    return found


_SECOND_LEVEL_RE = re.compile(r"^.+\.([^.]+\.[^.]+)\Z", re.DOTALL)


def _second_level(addr: str) -> str:
    """HeaderEval's domain of an address: after its last "@", cut to the last two labels."""
    if "@" not in addr:
        return ""
    domain = addr.rpartition("@")[2]
    m = _SECOND_LEVEL_RE.match(domain)
    return m.group(1) if m else domain


def equal_from_domains(v: MessageViews, args: tuple[Any, ...]) -> int:
    """HeaderEval's ``check_equal_from_domains()``: the last two labels of the From address's
    domain differ from the envelope sender's (the first address of each; no hit when either
    is missing)."""
    from_addrs = _fm_addrs(v, "From")
    from_domain = _second_level(from_addrs[0]) if from_addrs else ""
    if not from_domain:
        return 0
    env_addrs = _fm_addrs(v, "EnvelopeFrom")
    env_domain = _second_level(env_addrs[0]) if env_addrs else ""
    return int(bool(env_domain) and from_domain != env_domain)


def matching_env_and_hdr_from(v: MessageViews, args: tuple[Any, ...]) -> int:
    """HeaderEval's ``check_for_matching_env_and_hdr_from()``: the envelope sender's address
    equals the first From address, case aside (two missing ones are equal)."""
    env = _fm_addrs(v, "EnvelopeFrom")
    frm = _fm_addrs(v, "From")
    return int((env[0] if env else "") == (frm[0] if frm else ""))


# ---- SpamAssassin's FreeMail plugin ------------------------------------------------------
# Mail::SpamAssassin::Plugin::FreeMail (4.0): is a sender, a Reply-To, a header's or the
# body's address at a free mail provider (``freemail_domains``)? Its configuration is read
# at load into one :class:`FreemailConf` that every FreeMail rule carries as its first
# argument (:func:`freemail_args`). Addresses come from the header requests header rules
# read (``Name:addr``, :func:`.views.header_request`), lower-cased. Not ported:
# ``freemail_import_welcomelist_auth`` / ``freemail_import_def_welcomelist_auth`` (the
# ``welcomelist_auth`` lists are not read; both default to off) and the describe text.


@dataclass(frozen=True, slots=True)
class FreemailConf:
    domains: frozenset[str]  # freemail_domains without wildcards
    wildcards: frozenset[str]  # freemail_domains with "*" / "?"
    welcomelist: frozenset[str]  # freemail_welcomelist: addresses and domains
    tlds: frozenset[str]  # util_rb_tld: the TLDs a body address may end in
    max_body_emails: float
    max_body_freemails: float
    skip_when_over_max: bool
    skip_bulk_envfrom: bool


FREEMAIL_EVALS = frozenset(
    {
        "check_freemail_from",
        "check_freemail_replyto",
        "check_freemail_header",
        "check_freemail_body",
    }
)

# FreeMail's default welcomelist: role and bounce addresses, message-id-like local parts
_FM_EMAIL_WELCOMELIST_RE = re.compile(
    r"""^(?:
        abuse|support|sales|info|helpdesk|contact|kontakt
      | (?:post|host|domain)master
      | undisclosed.*
      | request-[a-f0-9]{16}
      | bounced?-
      | [a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})
      | .+=.+=.+
    )@""",
    re.IGNORECASE | re.VERBOSE,
)
# an envelope sender of list or bounce mail: check_freemail_replyto does not run
# ("[._-t]" is Perl's and Python's range "_" to "t", plus ".")
_FM_SKIP_REPLYTO_ENVFROM_RE = re.compile(
    r"""(?:
        ^(?:post|host|domain)master
      | ^double-bounce
      | ^(?:sentto|owner|return|(?:gr)?bounced?)-.+
      | -(?:request|bounces?|admin|owner)
      | \b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)
      | .+=.+
    )@""",
    re.IGNORECASE | re.VERBOSE,
)
_FM_ATEXT = rb"a-z0-9!#$%&'*+/=?^_`{|}~-"
_FM_MAILTO_HREF_RE = re.compile(
    r"""<a\s[^>]*?\bhref\s*=\s*(?:"\s*(mailto:[^"]*)"|'\s*(mailto:[^']*)'|(mailto:[^\s>]*))""",
    re.IGNORECASE,
)
_FM_MAILTO_RE = re.compile("mailto:", re.IGNORECASE)
MAX_FM_MAILTO = 20  # FreeMail's sanity limits: mailto: links, body addresses in all
MAX_FM_BODY_EMAILS = 40


_C = TypeVar("_C")
_SHARED_CONFS: dict[Any, Any] = {}


def _shared(conf: _C) -> _C:
    """One instance of each distinct plugin configuration, shared by the rules that carry
    it: the per-message memo is keyed by it, and a lookup then matches by identity instead
    of comparing two copies field by field (the TLD list alone is over a thousand names)."""
    if len(_SHARED_CONFS) > 64:  # configurations of rule sets loaded and dropped
        _SHARED_CONFS.clear()
    return _SHARED_CONFS.setdefault(conf, conf)  # type: ignore[no-any-return]


def freemail_args(name: str, args: tuple[Any, ...], p: ParsedRules) -> tuple[Any, ...]:
    """``(conf, *args)``: the FreeMail configuration read at load, then the rule's own
    arguments, checked (an error here skips the rule with the reason, where SpamAssassin
    warns and the rule never hits). No ``freemail_domains`` at all is a load error too
    (SpamAssassin disables the plugin)."""
    if not p.freemail_domains and not p.freemail_wildcards:
        raise ValueError("no freemail_domains defined")
    strs = tuple(str(a) for a in args)
    if name == "check_freemail_header":
        if not strs:
            raise ValueError("check_freemail_header needs a header name")
        regexes = strs[1:2]
    elif name == "check_freemail_replyto":
        if strs and strs[0] not in ("replyto", "reply"):
            raise ValueError(f"invalid check_freemail_replyto option: {strs[0]!r}")
        strs = strs[:1] or ("replyto",)
        regexes = ()
    else:
        regexes = strs[:1]
    for rx in regexes:
        try:
            _fm_regex(rx)
        except RegexError as exc:
            raise ValueError(f"invalid regex {rx!r} for {name}: {exc}") from exc

    def setting(key: str) -> float:
        return p.settings.get(key, PLUGIN_SETTINGS[key])

    conf = FreemailConf(
        domains=frozenset(p.freemail_domains),
        wildcards=frozenset(p.freemail_wildcards),
        welcomelist=frozenset(p.freemail_welcomelist),
        tlds=frozenset(p.valid_tlds),
        max_body_emails=setting("freemail_max_body_emails"),
        max_body_freemails=setting("freemail_max_body_freemails"),
        skip_when_over_max=bool(setting("freemail_skip_when_over_max")),
        skip_bulk_envfrom=bool(setting("freemail_skip_bulk_envfrom")),
    )
    return (_shared(conf), *strs)


@functools.lru_cache(maxsize=64)
def _fm_regex(pattern: str) -> re.Pattern[bytes]:
    """A rule's regex argument: a Perl pattern without delimiters or flags (SpamAssassin's
    ``compile_regexp($re, 0)``), matched against the address's bytes."""
    return compile_python(translate(pattern, ""))


@functools.lru_cache(maxsize=4)
def _fm_wildcard_re(wildcards: frozenset[str]) -> re.Pattern[str] | None:
    """The wildcard domains as one regex after the "@": "?" is any one character, "*" any
    run without a dot (FreeMail's translation)."""
    if not wildcards:
        return None
    alts = [
        "".join("[^.]*" if c == "*" else "." if c == "?" else re.escape(c) for c in w)
        for w in sorted(wildcards)
    ]
    return re.compile(r"@(?:" + "|".join(alts) + r")\Z")


@functools.lru_cache(maxsize=4)
def _fm_email_res(tlds: frozenset[str]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """FreeMail's body address regex (the address is group 1, ending in a valid TLD), and
    its strip of addresses in "<...>" or before a "word:" such as "wrote:" (fax, tel, phone
    and mail excepted)."""
    if tlds:
        alts = b"|".join(re.escape(t.encode("ascii", "replace")) for t in sorted(tlds, key=len))
    else:
        alts = b"no_tlds_defined"
    tld = rb"(?<![a-zA-Z0-9-])(?:" + alts + rb")(?!(?:[a-zA-Z0-9-]|\.[a-zA-Z0-9]))"
    # the one-byte look-behind first: it fails at once inside a word, where the 64-byte
    # look-ahead would scan on (the same matches; both are zero-width at one position)
    email = (
        rb"(?<![" + _FM_ATEXT + rb"])(?=.{0,64}@)"
        rb"([" + _FM_ATEXT + rb"]+(?:\.[" + _FM_ATEXT + rb"]+)*@"
        rb"(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\.){1,4}" + tld + rb")"
    )
    strip = (
        rb"<?(?<!mailto:)" + email + rb"(?:>|\s{1,10}(?!(?:fa(?:x|csi)|tel|phone|e?-?mail))"
        rb"[a-z]{2,11}:)"
    )
    return re.compile(email, re.IGNORECASE), re.compile(strip, re.IGNORECASE)


_FM_URL_WITH_AT_RE = re.compile(rb"<?https?://\S{0,255}(?:@|%40)\S{0,255}", re.IGNORECASE)
_FM_BLANKS = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")  # what \s matches in a line
# how far past its address's word a strip match can reach: up to 10 blanks, an 11-letter
# word and ":", and the look-ahead after the blanks
_FM_STRIP_REACH = 40


def _fm_at_words(line: bytes) -> list[tuple[int, int]]:
    """The spans of the blank-separated words of ``line`` that hold an "@". An address
    (no blank in it) and a strip match's start lie inside one, so the address regexes need
    only run there: the same matches as over the whole line, without scanning long lines of
    text byte by byte."""
    spans = []
    n = len(line)
    i = line.find(b"@")
    while i >= 0:
        start = max(line.rfind(c, 0, i) for c in _FM_BLANKS) + 1
        end = min((j for c in _FM_BLANKS if (j := line.find(c, i)) >= 0), default=n)
        spans.append((start, end))
        i = line.find(b"@", end)
    return spans


def _fm_strip(strip_re: re.Pattern[bytes], line: bytes) -> bytes:
    """``strip_re.sub(b" ", line)``, searching only from the words that hold an "@" (a
    match starts in one and ends within :data:`_FM_STRIP_REACH` bytes of its end)."""
    out: list[bytes] = []
    last = 0
    for start, end in _fm_at_words(line):
        pos = max(start, last)
        while pos <= end:
            m = strip_re.search(line, pos, min(len(line), end + _FM_STRIP_REACH))
            if m is None or m.start() > end:
                break
            out += (line[last : m.start()], b" ")
            last = m.end()
            pos = m.end() if m.end() > m.start() else m.end() + 1
    if not out:
        return line
    out.append(line[last:])
    return b"".join(out)


def _is_freemail(email: str, conf: FreemailConf) -> bool:
    if not email or email in conf.welcomelist:
        return False
    domain = email.rpartition("@")[2]
    if domain in conf.welcomelist or _FM_EMAIL_WELCOMELIST_RE.search(email):
        return False
    if domain in conf.domains:
        return True
    wc = _fm_wildcard_re(conf.wildcards)
    return wc is not None and wc.search(email) is not None


def _fm_addrs(v: MessageViews, request: str) -> list[str]:
    """``get("request:addr")`` lower-cased: the addresses of a header request (modifiers
    in the request kept, ``:addr`` added); read once a message (the FreeMail and
    FromNameSpoof tests ask for the same few headers)."""
    key = ("fm_addrs", request)
    got: tuple[str, ...] | None = v.memo.get(key)
    if got is None:
        got = tuple(a.lower() for a in _fm_addrs_raw(v, request))
        v.memo[key] = got
    return list(got)


def _fm_match(email: str, pattern: str) -> bool:
    return _fm_regex(pattern).search(email.encode("utf-8", "surrogateescape")) is not None


def _fm_body(v: MessageViews, conf: FreemailConf) -> set[str] | None:
    """FreeMail's ``_parse_body``: the freemail addresses of the body, None when the body
    holds too many addresses (the ``freemail_max_body_emails``-th distinct one) or too many
    freemail ones (the ``freemail_max_body_freemails``-th) and ``freemail_skip_when_over_max``
    is on. Addresses come from the message's ``<a href="mailto:...">`` links (at most
    :data:`MAX_FM_MAILTO`; SpamAssassin leaves out a link whose URI its text parser also
    found, which this approximates by leaving out a link whose address the body text
    shows), then from each line of the rendered body (the ``body`` view) after removing
    URLs holding an "@" and addresses in "<...>" or followed by a "word:"."""
    key = ("freemail_body", conf)
    if key in v.memo:
        cached: set[str] | None = v.memo[key]
        return cached
    email_re, strip_re = _fm_email_res(conf.tlds)
    body = v.body
    body_lower = body.lower()
    emails: dict[str, None] = {}
    if v.pm.html and _FM_MAILTO_RE.search(v.pm.html):
        for hm in _FM_MAILTO_HREF_RE.finditer(v.pm.html):
            uri = html_mod.unescape(hm.group(1) or hm.group(2) or hm.group(3) or "")
            um = email_re.match(uri.encode("utf-8", "surrogateescape"), 7)
            if uri[:7].lower() != "mailto:" or um is None:
                continue
            email = um.group(1).lower().decode("ascii", "replace")
            if email.encode() in body_lower:
                continue
            emails.setdefault(email)
            if len(emails) >= MAX_FM_MAILTO:
                break
    if b"@" in body:
        for line in body.split(b"\n"):
            if b"@" not in line:
                continue
            line = _fm_strip(strip_re, _FM_URL_WITH_AT_RE.sub(b" ", line))
            full = False
            for start, end in _fm_at_words(line):
                for bm in email_re.finditer(line, start, end):
                    emails.setdefault(bm.group(1).lower().decode("ascii", "replace"))
                    if len(emails) >= MAX_FM_BODY_EMAILS:
                        full = True
                        break
                if full:
                    break
            if full:
                break
    found: set[str] | None = set()
    count_all = count_fm = 0
    for email in emails:
        count_all += 1
        if count_all == conf.max_body_emails and conf.skip_when_over_max:
            found = None
            break
        if not _is_freemail(email, conf):
            continue
        count_fm += 1
        if count_fm == conf.max_body_freemails and conf.skip_when_over_max:
            found = None
            break
        assert found is not None
        found.add(email)
    v.memo[key] = found
    return found


def _all_from_addrs(v: MessageViews) -> list[str]:
    """SpamAssassin's ``all_from_addrs``, lower-cased, each once: the first Resent-From's
    address, else the addresses of From, Envelope-Sender, Resent-Sender, X-Envelope-From and
    the envelope sender, runs of dots squeezed."""
    got: list[str] | None = v.memo.get("all_from_addrs")
    if got is None:
        addrs = _fm_addrs(v, "Resent-From:first")
        if not addrs:
            addrs = [
                re.sub(r"\.{2,}", ".", a)
                for h in ("From", "Envelope-Sender", "Resent-Sender", "X-Envelope-From")
                for a in _fm_addrs(v, h)
            ]
            addrs += [re.sub(r"\.{2,}", ".", a) for a in _fm_addrs(v, "EnvelopeFrom")]
        got = v.memo["all_from_addrs"] = list(dict.fromkeys(addrs))
    return got


def freemail_from(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``check_freemail_from([regex])``: an address of SpamAssassin's ``all_from_addrs``
    (the first Resent-From, else From, Envelope-Sender, Resent-Sender, X-Envelope-From and
    the envelope sender, runs of dots squeezed) is freemail (and matches the regex)."""
    conf: FreemailConf = args[0]
    for email in _all_from_addrs(v):
        if _is_freemail(email, conf) and (len(args) < 2 or _fm_match(email, args[1])):
            return 1
    return 0


def freemail_header(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``check_freemail_header(header, [regex])``: an address of the header is freemail
    (and matches the regex)."""
    conf: FreemailConf = args[0]
    for email in _fm_addrs(v, args[1]):
        if _is_freemail(email, conf) and (len(args) < 3 or _fm_match(email, args[2])):
            return 1
    return 0


def freemail_body(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``check_freemail_body([regex])``: the body holds a freemail address (matching the
    regex), within the body limits (:func:`_fm_body`)."""
    found = _fm_body(v, args[0])
    if not found:
        return 0
    if len(args) < 2:
        return 1
    return int(any(_fm_match(e, args[1]) for e in found))


def freemail_replyto(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``check_freemail_replyto('replyto'|'reply')``: From and Reply-To are different
    freemail addresses, or the reply address (Reply-To; with 'reply' the From when there is
    no Reply-To) is freemail and the body holds another freemail address. Not for an
    envelope sender that looks like list or bounce mail (``freemail_skip_bulk_envfrom``)."""
    conf: FreemailConf = args[0]
    what = args[1]
    if conf.skip_bulk_envfrom:
        env = _fm_addrs(v, "EnvelopeFrom")
        if env and _FM_SKIP_REPLYTO_ENVFROM_RE.search(env[0]):
            return 0
    from_addrs = _fm_addrs(v, "From")
    replyto_addrs = _fm_addrs(v, "Reply-To")
    from_is_fm = any(_is_freemail(a, conf) for a in from_addrs)
    replyto_is_fm = any(_is_freemail(a, conf) for a in replyto_addrs)
    from_not_in_replyto = not any(a in replyto_addrs for a in from_addrs)
    if from_is_fm and replyto_is_fm and from_not_in_replyto:
        return 1
    if what == "replyto":
        if not replyto_is_fm:
            return 0
    elif (replyto_addrs and not replyto_is_fm) or not from_is_fm:
        return 0
    found = _fm_body(v, conf)
    if not found:
        return 0
    reply = replyto_addrs if what == "replyto" or replyto_is_fm else from_addrs
    return int(any(b != r for b in found for r in reply))


# ---- SpamAssassin's FromNameSpoof plugin -------------------------------------------------
# Mail::SpamAssassin::Plugin::FromNameSpoof (4.0): the From display name holds an address
# (close to the whole name: at most ``fns_extrachars`` other characters) that differs from
# the From address, its domain or its owner (``fns_add_addrlist``, else the domain's first
# label). ``fns_ignore_dkim`` is not applied: as in SpamAssassin with local tests only,
# where no DKIM signature is verified. Domains are registrable domains (the public suffix
# list) of hosts with a ``util_rb_tld`` TLD, where SpamAssassin trims with its own 2- and
# 3-level TLD lists.


@dataclass(frozen=True, slots=True)
class FromNameConf:
    tlds: frozenset[str]
    owners: tuple[tuple[str, tuple[str, ...]], ...]  # (owner, address globs), by owner
    ignore_headers: tuple[str, ...]
    extrachars: float
    check: int  # fns_check: 0 address, 1 and owner, 2 and domain differ


FROMNAME_EVALS = frozenset(
    {
        "check_fromname_spoof",
        "check_fromname_different",
        "check_fromname_domain_differ",
        "check_fromname_contains_email",
        "check_fromname_equals_to",
        "check_fromname_owners_differ",
        "check_fromname_equals_replyto",
    }
)
_FNS_NAME_ADDR_RE = re.compile(
    r"\b([\w.!#$%&'*+/=?^_`{|}~-]+@\w[\w-]*\.\w[\w.-]++)\b", re.IGNORECASE
)
_FNS_NOT_ALNUM_RE = re.compile(r"[^a-z0-9]")
_PCT_ENCODED_RE = re.compile(r"%(?:2[1-9a-f]|[3-6][0-9a-f]|7[0-9a-e])")
_FQDN_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def fromname_args(name: str, args: tuple[Any, ...], p: ParsedRules) -> tuple[Any, ...]:
    """``(conf, *args)``: FromNameSpoof's configuration read at load, then the arguments."""
    check = int(p.settings.get("fns_check", PLUGIN_SETTINGS["fns_check"]))
    if name == "check_fromname_spoof" and args and str(args[0]).strip() in ("0", "1", "2"):
        check = int(str(args[0]).strip().split(".")[0])
    conf = FromNameConf(
        tlds=frozenset(p.valid_tlds),
        owners=tuple(sorted((o, tuple(g)) for o, g in p.fns_addrlists.items() if g)),
        ignore_headers=tuple(sorted(p.fns_ignore_headers)),
        extrachars=p.settings.get("fns_extrachars", PLUGIN_SETTINGS["fns_extrachars"]),
        check=check if check in (0, 1, 2) else 1,
    )
    return (_shared(conf),)


def _mailto_domain(addr: str, tlds: frozenset[str]) -> str | None:
    """RegistryBoundaries' ``uri_to_domain("mailto:addr")``: the registrable domain of the
    address's host, None for several "@", none, a percent-encoded host, an invalid host
    name or TLD."""
    addr = addr.lower().split("?", 1)[0]
    if addr.count("@") != 1:
        return None
    host = addr.rpartition("@")[2]
    if _PCT_ENCODED_RE.search(host):
        return None
    if IS_IPV4_ADDRESS.match(host):
        return host
    labels = host.split(".")
    if len(labels) < 2 or not all(_FQDN_LABEL_RE.match(label) for label in labels):
        return None
    if labels[-1] not in tlds:
        return None
    return registrable_domain(host)


def _fns_owner(addr: str, domain: str, conf: FromNameConf) -> str:
    for owner, globs in conf.owners:
        if _glob_re(globs).match(addr):
            return owner
    local, _, host = addr.rpartition("@")
    if local and host != domain:
        return _fns_owner(f"{local}@{domain}", domain, conf)
    return domain.split(".", 1)[0] if "." in domain else domain


def _to_addrs(v: MessageViews) -> list[str]:
    """SpamAssassin's ``all_to_addrs``: the first Resent-To and Resent-Cc, else the "for"
    address of the three newest Received headers and the recipient headers."""
    addrs = _fm_addrs_raw(v, "Resent-To:first") + _fm_addrs_raw(v, "Resent-Cc:first")
    if not addrs:
        for line in v.header_values("received", False)[:3]:
            m = re.search(r" for <?(\S+@(\S+?))>?;", line)
            if m and _mailto_domain(m.group(1), frozenset({m.group(2).rpartition(".")[2]})):
                addrs.append(m.group(1))
        for h in (
            "To",
            "Apparently-To",
            "Delivered-To",
            "Envelope-Recipients",
            "Apparently-Resent-To",
            "X-Envelope-To",
            "Envelope-To",
            "X-Delivered-To",
            "X-Original-To",
            "X-Rcpt-To",
            "X-Real-To",
            "Cc",
        ):
            addrs += _fm_addrs_raw(v, h)
    return list(dict.fromkeys(addrs))


def _fm_addrs_raw(v: MessageViews, request: str) -> list[str]:
    """``get("request:addr")``: the addresses of a header request as the message writes
    them (modifiers in the request kept, ``:addr`` added)."""
    name, *mods = request.split(":")
    text = header_request(v, name, (*(m.lower() for m in mods if m), "addr"))
    if text is None:
        return []
    return [a for a in text.decode("utf-8", "surrogateescape").split("\n") if a]


def _fromname_flags(v: MessageViews, conf: FromNameConf) -> frozenset[str]:
    """FromNameSpoof's findings for the message (once): "contains_email",
    "address_different", "domain_different", "owner_different", "equals_replyto",
    "equals_to"."""
    key = ("fromname", conf)
    if key in v.memo:
        cached: frozenset[str] = v.memo[key]
        return cached
    flags: set[str] = set()
    v.memo[key] = frozenset()
    names = header_request(v, "From", ("name",))
    if not names or b"@" not in names:  # no address in the name: no finding (the common case)
        return frozenset()
    for h in conf.ignore_headers:
        text = header_request(v, h, ())
        if text and text.strip(b"\n") not in (b"", b"0"):
            return frozenset()
    from_addrs = _fm_addrs(v, "From")
    from_addr = from_addrs[0] if from_addrs else ""
    from_domain = _mailto_domain(from_addr, conf.tlds)
    if from_domain is None:
        return frozenset()
    fromname = names.decode("utf-8", "surrogateescape").split("\n")[0].lower()
    m = _FNS_NAME_ADDR_RE.search(fromname)
    if m is None:
        return frozenset()
    fromname_addr = m.group(1)
    fromname_domain = _mailto_domain(fromname_addr, conf.tlds)
    if fromname_domain is None:
        return frozenset()
    flags.add("contains_email")
    nochar = len(_FNS_NOT_ALNUM_RE.findall(fromname)) - len(
        _FNS_NOT_ALNUM_RE.findall(fromname_addr)
    )
    if len(fromname) + nochar - len(fromname_addr) > conf.extrachars:
        v.memo[key] = frozenset(flags)
        return v.memo[key]  # type: ignore[no-any-return]
    if fromname_addr != from_addr:
        flags.add("address_different")
    if fromname_domain != from_domain:
        flags.add("domain_different")
    if _fns_owner(fromname_addr, fromname_domain, conf) != _fns_owner(from_addr, from_domain, conf):
        flags.add("owner_different")
    replyto = _fm_addrs(v, "Reply-To")
    if fromname_addr == (replyto[0] if replyto else ""):
        flags.add("equals_replyto")
    if fromname_addr in _to_addrs(v):
        flags.add("equals_to")
    v.memo[key] = frozenset(flags)
    return v.memo[key]  # type: ignore[no-any-return]


def fromname_spoof(v: MessageViews, args: tuple[Any, ...]) -> int:
    """``check_fromname_spoof([level])``: the name's address differs from the From address
    (``fns_check`` 0), and its owner (1) or its domain (2) too."""
    conf: FromNameConf = args[0]
    f = _fromname_flags(v, conf)
    if "address_different" not in f:
        return 0
    return int(
        conf.check == 0
        or (conf.check == 1 and "owner_different" in f)
        or (conf.check == 2 and "domain_different" in f)
    )


def _fns_flag(flag: str) -> EvalFn:
    def test(v: MessageViews, args: tuple[Any, ...]) -> int:
        return int(flag in _fromname_flags(v, args[0]))

    test.__name__ = f"fromname_{flag}"
    return test


def check_args(name: str, args: tuple[Any, ...]) -> None:
    """Refuse (ValueError, the skip reason) eval sub-tests we do not compute, so that their
    rules are reported as skipped rather than silently never hitting."""
    sub = str(args[0]) if args else ""
    if (
        (name == "check_for_mime" and sub not in MIME_TESTS)
        or (name == "html_test" and sub not in HTML_TESTS)
        or (name == "html_text_match" and sub not in _HTML_TEXT_TYPES)
        or (name in ("html_range", "html_eval") and sub not in _HTML_RANGE_TESTS)
    ):
        raise ValueError(f"eval test not implemented: {name}('{sub}')")
    if name == "html_text_match":
        if len(args) < 2:
            raise ValueError("html_text_match needs a text type and a regex")
        try:
            _text_re(str(args[1]))
        except re.error as exc:
            raise ValueError(f"bad html_text_match regex {args[1]!r}: {exc}") from exc
    if name in ("html_eval", "html_tag_balance"):
        if len(args) < 2:
            raise ValueError(f"{name} needs two arguments")
        _expr(str(args[1]))


EVALS: dict[str, EvalFn] = {
    "mailsift_html_only": html_only,
    "mailsift_image_only": image_only,
    "mailsift_link_text_mismatch": link_text_mismatch,
    "mailsift_url_ip": url_ip,
    "mailsift_url_shortener": url_shortener,
    "mailsift_many_urls": many_urls,
    "mailsift_replyto_mismatch": replyto_mismatch,
    "mailsift_date_future": date_future,
    "mailsift_date_past": date_past,
    "mailsift_attachment_ext": attachment_ext,
    "mailsift_double_extension": double_extension,
    "mailsift_text_encoding": text_encoding,
    "mailsift_charset_mismatch": charset_mismatch,
    "mailsift_defects": defects,
    "mailsift_truncated": truncated,
    "mailsift_body_caps": body_caps,
    # SpamAssassin names with the same meaning on our parse
    "check_for_mime_html_only": sa_mime_html_only,
    "check_body_length": body_length,
    "check_for_mime_html": has_html,
    "check_for_missing_to_header": missing_to,
    "html_image_only": sa_html_image_only,
    "check_for_faraway_charset": never,
    "check_msg_parse_flags": sa_parse_flags,
    "check_for_shifted_date": shifted_date,
    "check_for_uppercase": uppercase,
    "subject_is_all_caps": subject_all_caps,
    "check_for_to_in_subject": to_in_subject,
    "check_header_count_range": header_count_range,
    "check_blank_line_ratio": blank_line_ratio,
    "check_illegal_chars": illegal_chars,
    "html_test": html_test,
    "html_tag_exists": html_tag_exists,
    "check_mime_multipart_ratio": multipart_ratio,
    "multipart_alternative_difference": alternative_difference,
    "multipart_alternative_difference_count": alternative_difference_count,
    "check_for_mime": check_for_mime,
    "check_from_in_list": from_in_list,
    "check_replyto_in_list": replyto_in_list,
    "html_text_match": html_text_match,
    "html_title_subject_ratio": html_title_subject_ratio,
    "html_range": html_range,
    "html_eval": html_eval,
    "html_tag_balance": html_tag_balance,
    "check_uri_host_listed": uri_host_listed,
    "check_uri_host_in_blocklist": uri_host_listed,
    "check_uri_host_in_welcomelist": uri_host_listed,
    "check_equal_from_domains": equal_from_domains,
    "check_for_matching_env_and_hdr_from": matching_env_and_hdr_from,
    # ImageInfo
    "image_count": image_count,
    "pixel_coverage": pixel_coverage,
    "image_size_exact": image_size_exact,
    "image_size_range": image_size_range,
    "image_to_text_ratio": image_to_text_ratio,
    # FreeMail
    "check_freemail_from": freemail_from,
    "check_freemail_replyto": freemail_replyto,
    "check_freemail_header": freemail_header,
    "check_freemail_body": freemail_body,
    # FromNameSpoof
    "check_fromname_spoof": fromname_spoof,
    "check_fromname_different": _fns_flag("address_different"),
    "check_fromname_domain_differ": _fns_flag("domain_different"),
    "check_fromname_contains_email": _fns_flag("contains_email"),
    "check_fromname_equals_to": _fns_flag("equals_to"),
    "check_fromname_owners_differ": _fns_flag("owner_different"),
    "check_fromname_equals_replyto": _fns_flag("equals_replyto"),
    # RelayEval
    "check_no_relays": relays_none,
    "check_relays_unparseable": relays_unparseable,
    "check_all_trusted": relays_all_trusted,
    "helo_ip_mismatch": helo_ip_mismatch,
    "check_for_no_rdns_dotcom_helo": no_rdns_dotcom_helo,
}

_ARG_RE = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)"|([^,\s'"]+))\s*(?:,|$)""")


def parse_args(text: str) -> tuple[Any, ...]:
    """``'a', "b", 3`` -> ('a', 'b', 3.0). Raises ValueError when unparsable."""
    out: list[Any] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ARG_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad eval arguments: {text!r}")
        pos = m.end()
        if m.group(3) is not None:
            try:
                out.append(float(m.group(3)))
            except ValueError:
                out.append(m.group(3))
        else:
            out.append(m.group(1) if m.group(1) is not None else m.group(2))
    return tuple(out)
