"""SpamAssassin's URI list, the one its ``uri`` rules run over.

SpamAssassin (4.0.1) gathers URIs from the HTML tags and attributes ``HTML.pm``'s
``html_uri`` reads (href on a, area, link and base, and a, area and link's
data-saferedirecturl; src on img, frame, iframe, embed, script and bgsound; background on
body, table, tr and td; form's action), resolved against a ``<base href>`` that comes
before them (``target_uri``), plus the URIs found in the text. Each goes through
``Util::uri_list_canonicalize``, which keeps the URI as written and adds cleaned variants:
``%XX`` decoded, ``http://`` added, default ports, user names and trailing junk removed,
numeric hosts written as dotted quads, and the target of one redirector (a
``redirector_pattern`` of the configuration, else the first ``http:`` in the rest of the
URI) canonicalised in turn. The ports below keep the Perl's steps and their order.

mailsift's own link list (``ParsedMessage.urls``: anchors, forms and text, absolute links
only) stays what the learned features read; this list is only for the rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.message import ParsedMessage

# HTML.pm's tag groups (html_uri)
BACKGROUND_TAGS = frozenset({"body", "table", "tr", "td"})
HREF_TAGS = frozenset({"a", "area", "link"})
SRC_TAGS = frozenset({"img", "frame", "iframe", "embed", "script", "bgsound"})
URI_TAGS_CSS = "a,area,link,base,img,frame,iframe,embed,script,bgsound,body,table,tr,td,form"

# bounds: SpamAssassin truncates URIs at 8192 characters (MAX_URI_LENGTH); mailsift keeps
# links to 2000 and a message's list to MAX_URIS entries
MAX_URI_LENGTH = 2000
MAX_URIS = 1000

_WS = " \t\n\r\f\v\xa0"
_BAD_ATTR_HREF = re.compile(r"\w{1,8}/href")
_BAD_ATTR_SRC = re.compile(r"\w{1,8}/src")
_ABS_BASE = re.compile(r"^(?:https?|ftp):/{0,2}", re.I)
_BASE_FILE = re.compile(r"^([a-z]+:/{0,2}[^/]+/.*?)[^/.]+\.[^/.]{2,4}$", re.I | re.S)
_NOTARGET = re.compile(r"^(?:data|mailto|file|cid|tel):", re.I)
_PARSE_URI = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.S)


def canon_uri(uri: str) -> str:
    """HTML.pm's canon_uri: trimmed of white space, cut to ``MAX_URI_LENGTH``."""
    return uri.strip(_WS)[:MAX_URI_LENGTH]


def _parse_uri(u: str) -> list[str | None]:
    m = _PARSE_URI.match(u)
    assert m is not None  # every group is optional
    return list(m.groups())


def _remove_dot_segments(path: str) -> str:
    if "/." not in path and not path.startswith(".") and path != "0":
        return path  # no dot segment: the loop below would rebuild it unchanged
    if path.startswith(("./", "../")):
        path = "/" + path.split("/", 1)[1]
    out = ""
    while path and path != "0":  # Perl's while ($input): "0" is false
        if path == "/." or path.startswith("/./"):
            path = "/" + path[3:]
        elif path == "/.." or path.startswith("/../"):
            path = "/" + path[4:]
            out = out[: out.rfind("/")] if "/" in out else ""
        else:
            m = re.match(r"/?[^/]*", path)
            assert m is not None
            out += m.group(0)
            path = path[m.end() :]
    return out


def _merge_uri(base_authority: str | None, base_path: str | None, r_path: str) -> str:
    if base_authority is not None and not base_path:
        return "/" + r_path
    base_path = base_path or ""
    base_path = base_path[: base_path.rfind("/") + 1] if "/" in base_path else ""
    return base_path + r_path


def target_uri(base: str, rel: str) -> str:
    """HTML.pm's target_uri: ``rel`` resolved against ``base`` (RFC 3986 section 5.2, a
    scheme equal to the base's counting as none; a schemeless ``//www.`` or ``//ftp.``
    authority gets ``http:`` or ``ftp:``)."""
    r = _parse_uri(rel)
    b = _parse_uri(base)
    if r[0] is not None and b[0] is not None and r[0] == b[0]:
        r[0] = None
    t: list[str | None] = [None] * 5
    if r[0] is not None:
        t = [r[0], r[1], _remove_dot_segments(r[2] or ""), r[3], None]
    else:
        if r[1] is not None:
            t = [None, r[1], _remove_dot_segments(r[2] or ""), r[3], None]
        else:
            if r[2] == "":
                t[2] = b[2]
                t[3] = r[3] if r[3] is not None else b[3]
            else:
                if (r[2] or "").startswith("/"):
                    t[2] = _remove_dot_segments(r[2] or "")
                else:
                    t[2] = _remove_dot_segments(_merge_uri(b[1], b[2], r[2] or ""))
                t[3] = r[3]
            t[1] = b[1]
        t[0] = b[0]
    t[4] = r[4]
    result = ""
    if t[0]:
        result += t[0] + ":"
    elif t[1] is not None:
        if re.match(r"www\d*\.", t[1], re.I):
            result += "http:"
        elif re.match(r"ftp\d*\.", t[1], re.I):
            result += "ftp:"
    if t[1] is not None:
        result += "//" + t[1]
    result += t[2] or ""
    if t[3] is not None:
        result += "?" + t[3]
    if t[4] is not None:
        result += "#" + t[4]
    return result


class HtmlUris:
    """HTML.pm's html_uri and push_uri, fed one start tag at a time in document order."""

    def __init__(self) -> None:
        self.uris: dict[str, None] = {}  # first seen first, each once
        self.base_href = ""

    def push(self, uri: str) -> None:
        uri = canon_uri(uri)
        if uri == "" or len(self.uris) >= MAX_URIS:
            return
        if _NOTARGET.match(uri):
            self.uris[uri] = None
        else:
            target = target_uri(self.base_href, uri)
            if target != "":
                self.uris[target] = None

    def tag(self, tag: str, attrs: dict[str, str | None]) -> None:
        if tag in BACKGROUND_TAGS:
            v = attrs.get("background")
            if v is not None:
                self.push(v)
        elif tag in HREF_TAGS:
            href = _renamed(attrs, _BAD_ATTR_HREF, "href")
            if href is not None:
                self.push(href.replace("\ufeff", ""))
            v = attrs.get("data-saferedirecturl")
            if v is not None:
                self.push(v)
        elif tag in SRC_TAGS:
            v = _renamed(attrs, _BAD_ATTR_SRC, "src")
            if v is not None:
                self.push(v)
        elif tag == "form":
            v = attrs.get("action")
            if v is not None:
                self.push(v)
        elif tag == "base":
            v = attrs.get("href")
            if v:
                uri = canon_uri(v)
                self.push(uri)
                if _ABS_BASE.match(uri):
                    uri = _BASE_FILE.sub(r"\1", uri)
                    if not uri.endswith("/"):
                        uri += "/"
                    self.base_href = uri


def _renamed(attrs: dict[str, str | None], bad: re.Pattern[str], name: str) -> str | None:
    """An attribute written as ``foo/href`` counts as ``href`` (bad HTML SpamAssassin
    reads anyway)."""
    value = attrs.get(name)
    for k, v in attrs.items():
        if v is not None and k != name and bad.search(k):
            value = v
    return value


# ---- Util::uri_list_canonicalize -----------------------------------------------------------

_PCT = re.compile(r"%[0-9a-fA-F]{2}")
_PCT_SPLIT = re.compile(r"(%[0-9a-fA-F]{2})")
_PCT_KEEP = re.compile(r"(20|7f|[0189a-fA-F][0-9a-fA-F])", re.I)
_ENCODE_CHARS = re.compile(r'[\x00-\x20\x7f-\U0010ffff"%<>]')
_SKIP = re.compile(r"^(?:[#?&]|/(?!/))")
_MAILTO = re.compile(r"^mailto:", re.I)
_LOCAL_AT = re.compile(r"^[^:]*@")
_HTTP_SLASHES = re.compile(r"^(https?:)/{0,2}", re.I)
_SCHEME = re.compile(r"^[-_a-z0-9]+:", re.I)
_HOST_QUERY = re.compile(r"^(https?://[^/?#]+)([?#])", re.I)
_DEC_ENT = re.compile(r"&#0*(3[3-9]|[4-9]\d|1[01]\d|12[0-6]);")
_HEX_ENT = re.compile(r"&#x0*(2[1-9]|[3-6][a-fA-F0-9]|7[0-9a-eA-E]);")
_DOT_ENT = re.compile(r"&#(?:x2e|12290|x3002|65294|xff0e|65377|xff61);", re.I)
_HTTP_URI = re.compile(r"^(https?://)([^@/?#]*@)?([^/?#:]+)((?::(\d*))?.*)$", re.I | re.S)
_GENERIC_REDIRECT = re.compile(r"(https?:/{0,2}[^&#]+)", re.I)
_IP_CHUNKS = re.compile(
    r"^((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)(0x[0-9a-f]+|\d+)$",
    re.I,
)
_OCTAL = re.compile(r"^0+([1-3][0-7]{0,2}|[4-7][0-7]?)\b")
_HEX_OCTET = re.compile(r"^0x([0-9a-f]+)", re.I)
_HEX_HOST = re.compile(r"0x[0-9a-f]+", re.I)
_HEX_HOST_LOW = re.compile(r"^0x[0-9a-f]*?([0-9a-f]{1,8})$", re.I)
_DOTLESS_HOST = re.compile(r"(?:www\.)?([^.]+)")
_HOST_CONTROL = re.compile(r"[\x00-\x20]")
_HOST_USER = re.compile(r"^[^@]+@")
_HOST_TRAILER = re.compile(r"[^0-9A-Za-z]+$")
_MAILTO_QUERY = re.compile(r"^([^@]+@[^?]+)\?")
_MAILTO_AMP = re.compile(r"^([^@]+@[^?&]+)&")
_MAILTO_SPACED = re.compile(r"^(?:mailto:)?(?:%20)*([^@]+@[^?&%]+)", re.I)
_MAILTO_BRACKETED = re.compile(r"^[^?&]*<([^@>]+@[^>]+)>")


def url_encode(url: str) -> str:
    """Util::url_encode (misnamed): ``%XX`` of a printable character other than space and
    DEL (first digit 2 to 7) decoded, the rest kept; elsewhere controls, spaces, non-ASCII
    (as UTF-8 bytes), ``"``, ``%``, ``<`` and ``>`` %-encoded."""
    out = []
    for piece in _PCT_SPLIT.split(url):
        if _PCT.fullmatch(piece):
            if not _PCT_KEEP.search(piece):
                piece = chr(int(piece[1:], 16))
        elif piece:
            piece = _ENCODE_CHARS.sub(
                lambda m: "".join(f"%{b:02x}" for b in m.group(0).encode("utf-8", "replace")),
                piece,
            )
        out.append(piece)
    return "".join(out)


def _idn_to_ascii(host: str) -> str:
    """Util::idn_to_ascii: lower case; a non-ASCII name as its IDNA (punycode) form."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def _ulong_to_ip(n: int) -> str:
    """Util::decode_ulong_to_ip: the number's first four bytes written as ``%08lx``."""
    digits = f"{min(n, 2**64 - 1):08x}"
    if len(digits) % 2:
        digits += "0"
    return ".".join(str(b) for b in bytes.fromhex(digits)[:4])


def _redirect_target(redirectors: Sequence[re.Pattern[bytes]], uri: str) -> str | None:
    """The target the first configured redirector pattern captures in ``uri`` (a target
    without a dot does not count)."""
    data = uri.encode("utf-8", "surrogateescape")
    for pattern in redirectors:
        m = pattern.search(data)
        if m is not None and m.lastindex is not None and m.group(1) is not None:
            target = m.group(1).decode("utf-8", "surrogateescape")
            if "." in target:
                return target
    return None


def uri_list_canonicalize(
    uris: Iterable[str], redirectors: Sequence[re.Pattern[bytes]] = ()
) -> list[str]:
    """Util::uri_list_canonicalize: the URIs as given (each once) and their cleaned
    variants, a redirector's target canonicalised in turn; at most ``MAX_URIS`` entries of
    at most ``MAX_URI_LENGTH`` characters."""
    todo = [u[:MAX_URI_LENGTH] for u in uris]
    nuris: list[str] = []
    i = 0
    while i < len(todo) and len(todo) + len(nuris) < 4 * MAX_URIS:
        uri = todo[i].replace("\n", "").strip().replace("\r", "")
        todo[i] = uri
        i += 1
        if len(uri) <= 1 or _SKIP.match(uri):
            continue  # kept as written, not cleaned
        nuri = uri
        if _MAILTO.match(nuri) or _LOCAL_AT.match(nuri):
            m = _MAILTO_QUERY.match(nuri)
            if m:
                nuris.append(m.group(1))
            m = _MAILTO_AMP.match(nuri)
            if m:
                nuris.append(m.group(1))
            if "%20" in nuri:
                m = _MAILTO_SPACED.match(nuri)
                if m:
                    nuris.append("mailto:" + m.group(1))
            m = _MAILTO_BRACKETED.match(nuri)
            if m:
                nuris.append("mailto:" + m.group(1))
            continue
        nuri = nuri.replace("\\", "/")
        nuri = _HTTP_SLASHES.sub(r"\1//", nuri, count=1)
        if _PCT.search(nuri):
            nuri = url_encode(nuri)
        if not _SCHEME.match(nuri):
            nuri = ("ftp://" if nuri.startswith("ftp.") else "http://") + nuri
        nuri = _HOST_QUERY.sub(r"\1/\2", nuri, count=1)
        nuri = _DEC_ENT.sub(lambda m: chr(int(m.group(1))), nuri)
        nuri = _HEX_ENT.sub(lambda m: chr(int(m.group(1), 16)), nuri)
        nuri = _DOT_ENT.sub(".", nuri)
        if nuri != uri:
            nuris.append(nuri)
        m = _HTTP_URI.match(nuri)
        if m is None:
            continue
        proto, auth, host, rest, port = (
            m.group(1),
            m.group(2) or "",
            m.group(3),
            m.group(4),
            m.group(5),
        )
        rest_noport = ""
        if not port:
            port = "80" if proto == "http://" else "443"
        else:
            default = ":80" if proto == "http://" else ":443"
            if re.match(re.escape(default) + r"\b", rest):
                rest_noport = rest[len(default) :]
                nuris.append(proto + host + rest_noport)
        nhost = _idn_to_ascii(host)
        if nhost != host.lower():
            nuris.append(proto + nhost + rest)
            if rest_noport:
                nuris.append(proto + nhost + rest_noport)
            host = nhost
        stripped = _HOST_CONTROL.sub("", host)
        if stripped != host:
            host = stripped
            nuris.append(proto + host + rest)
        # one level of redirector: a configured pattern first, else any http: in the rest
        target = _redirect_target(redirectors, proto + host + rest) if redirectors else None
        if target is None:
            g = _GENERIC_REDIRECT.search(rest)
            if g and "." in g.group(1):
                target = g.group(1)
        if target is not None:
            todo.append(target[:MAX_URI_LENGTH])
        if "@" in host:
            host = _HOST_USER.sub("", host)
            nuris.append(proto + host + rest)
        trimmed = _HOST_TRAILER.sub("", host)
        if trimmed != host:
            host = trimmed
            nuris.append(proto + host + rest)
        ip = _IP_CHUNKS.match(host)
        if ip:
            chunks = []
            for octet in ip.groups():
                octet = _HEX_OCTET.sub(lambda x: str(int(x.group(1), 16)), octet)
                octet = _OCTAL.sub(lambda x: str(int(x.group(1), 8)), octet)
                chunks.append(octet.lstrip("0"))
            nuris.append(proto + "".join(chunks) + rest)
        elif _HEX_HOST.fullmatch(host):
            n = int(_HEX_HOST_LOW.sub(r"\1", host), 16)
            nuris.append(proto + _ulong_to_ip(n) + rest)
        elif host.isdigit() and host.isascii():
            nuris.append(proto + _ulong_to_ip(int(host[:40])) + rest)
        else:
            w = _DOTLESS_HOST.fullmatch(nhost)
            if proto == "http://" and auth == "" and nhost != "localhost" and port == "80" and w:
                # SpamAssassin skips hosts with a valid TLD here; a dotless host has none
                nuris.append(proto + "www." + w.group(1) + ".com" + rest)
    out = dict.fromkeys(u[:MAX_URI_LENGTH] for u in (*todo, *nuris))
    return list(out)[:MAX_URIS]


def sa_uri_list(pm: ParsedMessage, redirectors: Sequence[re.Pattern[bytes]] = ()) -> list[str]:
    """PerMsgStatus::get_uri_list for a parsed message: the HTML parser's URIs and the
    links found in the text, canonicalised (as written first, then the cleaned variants)."""
    raw = dict.fromkeys(pm.html_uris)
    for u in pm.urls:
        if u.source == "text":
            raw[u.url] = None
    return uri_list_canonicalize(raw, redirectors)
