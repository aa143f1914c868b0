"""SpamAssassin's relay metadata: the Received headers parsed into relays, split by trust.

A port of SpamAssassin 4.0's ``Mail::SpamAssassin::Message::Metadata::Received``:
:func:`parse_received_line` reads one Received header as the MTA formats it knows, in
their order (with the handovers it skips and its fall-through), and :func:`parse_relays`
walks a message's Received headers top first, the originating-IP headers appended as
synthetic ones, and splits them by trust as SpamAssassin does. With ``trusted_networks``
/ ``internal_networks`` configured (:class:`Trust`), a hop from a listed network or an
authenticated hop keeps the chain trusted (internal, when also in the internal networks),
the first other hop ends it, and a hop from ``msa_networks`` makes the rest trusted.
Without them trust is inferred: a hop from a private IP or an authenticated hop is
trusted, the first other hop ends trust, and internal is trusted. A POP/IMAP fetcher's
handover inside the trusted part restarts the trusted list. The result gives the four pseudo-headers
``X-Spam-Relays-{Trusted,Untrusted,Internal,External}`` (each relay as
``[ ip=... rdns=... helo=... by=... ident=... envfrom=... intl=0|1 id=... auth=... msa=0 ]``)
and the counts RelayEval's tests read.

Headers are parsed as SpamAssassin sees them: the header's bytes, one character per byte
(Perl's byte semantics: ``\\w``, ``\\s`` and ``/i`` are ASCII only), 8-bit bytes that are not
UTF-8 read as Windows-1252 and turned into UTF-8 first. Bounded work: the first
:data:`MAX_RECEIVED` Received headers, each cut at :data:`MAX_LINE` characters; patterns
whose backtracking SpamAssassin's Perl tames but Python's ``re`` would not are rewritten
into equivalents with the same matches (see the comments at each).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_RECEIVED = 50  # Received headers parsed (top first); later ones are ignored
MAX_LINE = 1000  # characters of one header parsed (the corpus: 448 at most)

# SpamAssassin's default originating_ip_headers (10_default_prefs.cf)
ORIGINATING_IP_HEADERS = (
    "X-Yahoo-Post-IP",
    "X-Originating-IP",
    "X-Apparently-From",
    "X-SenderIP",
    "X-AOL-IP",
    "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp",
)

# ---- Constants.pm: IP_ADDRESS, IP_PRIVATE, LOCALHOST (Perl /xi, here (?i:...)) -----------
_OCT = r"(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)"
_V4 = rf"{_OCT}\.{_OCT}\.{_OCT}\.{_OCT}"
_H = r"[a-f0-9]{1,4}"
_V6_PREFIX = r"(?:IPv6:|(?<![a-f0-9:]))"
IP_ADDRESS = (
    r"(?i:"
    rf"\b(?<!:){_V4}\b"
    rf"|{_V6_PREFIX}(?:"
    rf"(?:(?:{_H}:){{6}}|::(?:{_H}:){{0,5}}|(?:{_H}:){{1,5}}:|{_H}::(?:{_H}:){{1,4}}"
    rf"|(?:{_H}:){{2}}:(?:{_H}:){{1,3}}|(?:{_H}:){{3}}:(?:{_H}:){{1,2}}|(?:{_H}:){{4}}:{_H}:)"
    rf"{_V4}"
    rf"|(?:{_H}:){{7}}{_H}|:(?::{_H}){{1,7}}|(?:{_H}:){{1,7}}:|{_H}:(?::{_H}){{1,6}}"
    rf"|(?:{_H}:){{2}}(?::{_H}){{1,5}}|(?:{_H}:){{3}}(?::{_H}){{1,4}}"
    rf"|(?:{_H}:){{4}}(?::{_H}){{1,3}}|(?:{_H}:){{5}}(?::{_H}){{1,2}}|(?:{_H}:){{6}}:{_H}"
    r"|::"
    r")(?![a-f0-9:]))"
)
_Z = r"0{1,4}"
_MAPPED_ZERO_PREFIX = (
    rf"(?:(?:{_Z}:){{5}}ffff:|::(?:{_Z}:){{0,4}}ffff:|(?:{_Z}:){{1,4}}:ffff:"
    rf"|{_Z}::(?:{_Z}:){{1,3}}ffff:|(?:{_Z}:){{2}}:0{{1,2}}:ffff:|(?:{_Z}:){{3}}:0:ffff:"
    rf"|(?:{_Z}:){{4}}:ffff:)"
)
_LOOPBACK6 = (
    rf"(?:{_Z}:){{7}}0{{0,3}}1|:(?::{_Z}){{0,6}}:0{{0,3}}1|{_Z}:(?::{_Z}){{0,5}}:0{{0,3}}1"
    rf"|(?:{_Z}:){{2}}(?::{_Z}){{0,4}}:0{{0,3}}1|(?:{_Z}:){{3}}(?::{_Z}){{0,3}}:0{{0,3}}1"
    rf"|(?:{_Z}:){{4}}(?::{_Z}){{0,2}}:0{{0,3}}1|(?:{_Z}:){{5}}(?::{_Z}){{0,1}}:0{{0,3}}1"
    rf"|(?:{_Z}:){{6}}:0{{0,3}}1"
)
_PRIVATE4 = r"(?:10|127|169\.254|172\.(?:1[6-9]|2[0-9]|3[01])|192\.168|100\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]))"
IP_PRIVATE = (
    rf"(?i:^(?:{_PRIVATE4}\..*"
    rf"|{_V6_PREFIX}(?:{_MAPPED_ZERO_PREFIX}{_PRIVATE4}\..*|fe[89ab][0-9a-f]:.*|{_LOOPBACK6})"
    r"(?![a-f0-9:])))"
)
LOCALHOST = (
    r"(?i:(?:localhost(?:\.localdomain)?"
    r"|\b(?<!:)127\.0\.0\.1\b"
    rf"|{_V6_PREFIX}(?:{_MAPPED_ZERO_PREFIX}127\.0\.0\.1|{_LOOPBACK6})(?![a-f0-9:])))"
)
_IPV4_ADDRESS = rf"\b{_V4}\b"

_A = re.ASCII


def _re(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern.replace("{IP}", IP_ADDRESS).replace("{LH}", LOCALHOST), _A | flags)


IS_IP_PRIVATE = _re(rf"^{IP_PRIVATE}$")
IS_IPV4_ADDRESS = _re(rf"^{_IPV4_ADDRESS}$")
_IP_PRIVATE_RE = _re(IP_PRIVATE)
_IP_ADDRESS_RE = _re(r"({IP})")


@dataclass(slots=True)
class Relay:
    """One parsed handover, SpamAssassin's relay hash."""

    ip: str = ""
    rdns: str = ""
    helo: str = ""
    by: str = ""
    ident: str = ""
    envfrom: str | None = None
    id: str = ""
    auth: str = ""
    no_reverse_dns: bool = False  # the MTA looks up rDNS and found none
    rdns_not_in_headers: bool = False
    ip_private: bool = False
    internal: bool = False
    msa: bool = False
    as_string: str = ""

    @property
    def lc_rdns(self) -> str:
        return lc(self.rdns)

    @property
    def lc_helo(self) -> str:
        return lc(self.helo)

    @property
    def lc_by(self) -> str:
        return lc(self.by)


@dataclass(slots=True)
class Relays:
    """A message's relays as SpamAssassin splits them; strings as the pseudo-headers give."""

    trusted: list[Relay] = field(default_factory=list)
    untrusted: list[Relay] = field(default_factory=list)
    internal: list[Relay] = field(default_factory=list)
    external: list[Relay] = field(default_factory=list)
    unparseable: int = 0
    # SpamAssassin's last_trusted_relay_index / last_internal_relay_index: the index (top
    # first, from 0) of the last Received header in the trusted (internal) part, every
    # Received header counted, unparseable and skipped ones too; -1 when there is none
    last_trusted_index: int = -1
    last_internal_index: int = -1

    @property
    def trusted_str(self) -> str:
        return " ".join(r.as_string for r in self.trusted)

    @property
    def untrusted_str(self) -> str:
        return " ".join(r.as_string for r in self.untrusted)

    @property
    def internal_str(self) -> str:
        return " ".join(r.as_string for r in self.internal)

    @property
    def external_str(self) -> str:
        return " ".join(r.as_string for r in self.external)

    def pseudo_header(self, lname: str) -> str | None:
        """The text of ``x-spam-relays-trusted`` etc. (lower-cased name), None for others."""
        if lname == "x-spam-relays-trusted":
            return self.trusted_str
        if lname == "x-spam-relays-untrusted":
            return self.untrusted_str
        if lname == "x-spam-relays-internal":
            return self.internal_str
        if lname == "x-spam-relays-external":
            return self.external_str
        return None


PSEUDO_HEADERS = frozenset(
    (
        "x-spam-relays-trusted",
        "x-spam-relays-untrusted",
        "x-spam-relays-internal",
        "x-spam-relays-external",
    )
)


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lc(s: str) -> str:
    """Perl's ``lc`` on bytes: ASCII letters only."""
    return s.translate(_LOWER)


def perl_true(s: str | None) -> bool:
    """Perl's truth of a string: defined, not empty, not "0"."""
    return s is not None and s != "" and s != "0"


# ---- the header normalisation -----------------------------------------------------------
def header_text(value: bytes) -> str:
    """A header's bytes as SpamAssassin's ``get_header`` reads them, one character per byte:
    valid UTF-8 kept as its bytes, other 8-bit text read as Windows-1252 into UTF-8."""
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("cp1252", "replace").encode("utf-8")
    return value.decode("latin-1")


# ---- parse_received_line ------------------------------------------------------------------
_WS = re.compile(r"\s+", _A)
# what str.split() counts as blank, in one-byte text, besides the ASCII \s
_SPLIT_ONLY_BLANKS = re.compile(r"[\x1c-\x1f\x85\xa0]")
_FROM_START = _re(r"\(?from ", re.I)
_WITH_LOCAL_FOR = _re(r"\bwith local for\b")
_FROM_BY_SEMI = _re(r"^from (\S+) by [^\s;]+ ?;", re.I)
_BRACKET_DOTS = _re(r"\[[\d.]+\]")
# Received.pm removes the date at the end with
#   s/[\s;]+(?:(?:Mon|...), )?\d+ (?:Jan|...) \d+ \d+:\d+(?::\d+)? \S+$//
# whose leading "[\s;]+" makes Python's re retry every start inside a long run of blanks and
# semicolons (quadratic). The same cut: the leftmost date that ends the line and follows a
# blank or semicolon (runs before two such dates are disjoint, so the leftmost date has the
# leftmost run), cut from the start of the run of blanks and semicolons before it.
# (The date is group 1 after one blank or semicolon, rather than a look-behind: a pattern
# that starts with a character class lets re skip to the places it can start.)
_DATE_TAIL = _re(
    r"[\s;]((?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\d+ "
    r"(?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \d+ \d+:\d+(?::\d+)? \S+$)"
)
_BLANK_SEMI = frozenset(" \t\n\r\f\v;")


def _cut_date(s: str) -> str:
    m = _DATE_TAIL.search(s)
    if m is None:
        return s
    i = m.start(1)
    while i > 0 and s[i - 1] in _BLANK_SEMI:
        i -= 1
    return s[:i]


_ID = _re(r" id <?([^\s<>;]{3,})")
_HC = r"[-A-Za-z0-9.^+_&:=?!@%*$\\/]"
_NHC = r"[^-A-Za-z0-9.^+_&:=?!@%*$\\/]"
_HELO_EQ = _re(rf"\bhelo=({_HC}+)(?:{_NHC}|$)")
_HELO_CMD = _re(rf"\b(?:HELO|EHLO) ({_HC}+)(?:{_NHC}|$)")
_BY = _re(r" by (\S+)(?:[^-A-Za-z0-9;.]|$)")

# authentication tokens
_AUTH_WITH = _re(r" with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", re.I)
_AUTH_GMAIL = _re(
    r" by mx\.google\.com with ESMTPS id [a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\.[0-9]{1,3}\.[0-9]{4}\."
    r"(?:[0-6][0-9]\.){4}[0-6][0-9]"
)
_AUTH_GMAIL_TLS = _re(r"\(version=([^ ]+) cipher=([^\)]+)\)")
_AUTH_COURIER = _re(
    r"^from .*?(?:\]\)|\)\]) \(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \S+(?:, .*?)?\) by "
)
_AUTH_GMX = _re(
    r"from \S* \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (mail\.gmx\.(?:net|com)) \([^\)]+\) "
    r"with ((?:ESMTP|SMTP))"
)
# Critical Path: "\) by .+ \(VERSION\) \(authenticated as .+\) id " -- each ".+" runs to
# its last possible end, so the existence of a match is that of: ") by " followed, anywhere
# later, by " (VERSION) (authenticated as " and then, anywhere later, ") id "; tested in
# that order from the first ") by " (an earlier start only leaves more room)
_CP_VERSION = _re(r" \(\d{1,2}\.\d\.\d{3}(?:\.\d{1,3})?\) \(authenticated as ")
_AUTH_POSTFIX = _re(r"\) \(Authenticated sender: \S+\) by \S+ \(([^\)]+)\) with ")
_AUTH_CGP = _re(r"CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)")
_AUTH_DAV = _re(r" with Microsoft Exchange Server HTTP-DAV\b")
_AUTH_VIA_HTTP = _re(r" \(via (HTTP.?)\)(?: |;|$)", re.I)

_ENVFROM = _re(r"(?:return-path:? |envelope-(?:sender|from)[ =])(\S+)\b", re.I)
_STRIP_CHARS = re.compile(r"[\s\000#\[\]()<>|]", _A)


def _sendmail_authenticated(s: str) -> bool:
    """``/^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by/``
    without its five nested lazy loops (polynomial backtracking on hostile text): each
    step after the first only needs the next fixed string after the previous one, so the
    earliest end of the first token decides, and a first token "] (...)) " starting
    earlier cannot end later than one starting after it."""
    if not s.startswith("from "):
        return False
    ends = []
    for tok in ("]) ", ")] "):
        i = s.find(tok, 5)
        if i >= 0:
            ends.append(i + len(tok))
    m = _SM_AUTH_TOKEN.search(s, 5)
    if m:
        ends.append(m.end())
    if not ends:
        return False
    i = s.find("(", min(ends))
    if i < 0:
        return False
    i = s.find("authenticated", i + 1)
    if i < 0:
        return False
    i = s.find(")", i + len("authenticated"))
    if i < 0:
        return False
    return s.find(" by", i + 1) >= 0


_SM_AUTH_TOKEN = re.compile(r"\] \([^)]*\)\) ", _A)


def _critical_path(s: str) -> bool:
    i = s.find(") by ")
    if i < 0:
        return False
    # ".+" needs one character at least before " (VERSION)"
    m = _CP_VERSION.search(s, i + len(") by ") + 1)
    if m is None:
        return False
    # and one at least before ") id "
    return s.find(") id ", m.end() + 1) >= 0


# formats after "from ", in Received.pm's order
_SQUIRREL = _re(r" \((?:SquirrelMail|NaSMail) authenticated user ")
_SQUIRREL_IP = _re(r"({IP})\b(?![.-]).{10,80}by (\S+) with HTTP")
_AOL_WEB = _re(r"with HTTP \(WebMailUI\)")
_AOL_WEB_IP = _re(r"({IP}) by (\S+) \({IP}\) with HTTP \(WebMailUI\)")
_SMTPSVC = _re(r"^(\S*) \(\[({IP})\][^\)]{0,40}\) by (\S+) with Microsoft SMTPSVC")
_SMTPSVC_PICKUP = _re(r"^mail pickup service by (\S+) with Microsoft SMTPSVC$")
_MS_SMTP = _re(r" with (?:Microsoft SMTP Server|mapi id) (?:\([^\)]+\) )?\d+\.\d+\.\d+\.\d+(?:$| )")
_MS_SMTP_IP = _re(r"^(\S+) \(\[?({IP})(?:%[A-Z0-9._~-]*)?\]?\) by (\S+) ")
_XMAIL = _re(r"^(\S+) \((\[?{IP}\]?)(?::\d+)\) by (\S+)(?: \(\S+\))? with \[XMail")
_XMAIL_ID = _re(r" id <(\S+)>")
_XMAIL_FROM = _re(r" from <(\S+)>")
_ECELERITY = _re(r"\(ecelerity\b")
_ECELERITY_HELO = _re(r"^\(\[({IP}):\d+\] helo=(\S+)\) by (\S+) ")
_ECELERITY_IP = _re(r"^\S+ \(\[({IP}):\d+\]\) by (\S+) ")
_EXIM_LOCAL = _re(r"\bwith local(?:-\S+)? ")
_EXIM_1 = _re(r"^\[({IP})\] \((.*?)\) by (\S+) ")
_EXIM_2 = _re(r"^(\S+) \(\[({IP})\](.*?)\) by (\S+) ")
_EXIM_3 = _re(r"^(\S+) \[({IP})\](:\d+)? by (\S+) ")
_EXIM_SUB_HELO = _re(r"helo=(\S+)")
_EXIM_SUB_IDENT = _re(r"ident=(\S*)")
_EXIM_RDNS = _re(r"^(\S+) ")
_EXIM_HELO = _re(r" \((\S+)\) ")
_EXIM_IP = _re(r" \[({IP})(?:\.\d+)?\] ")
_EXIM_BY = _re(r"by (\S+) ")
_POSTFIX_1 = _re(r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) ")
_POSTFIX_2 = _re(r"^(\S+) \((\S+)\[({IP})\]\) by (\S+) ")
_SCALIX = _re(r"^(\S+) \( ?({IP})\) by (\S+)")
_DOMINO = _re(r"^(\S+) \(\[({IP})\]\) by (\S+) \(Lotus")
_WITH_HTTP = _re(r"\bwith HTTP\b")
_HTTP_NUMERIC = _re(r"^({IP}) \(\[{IP}\]\) by (\S+)")
_QMAIL_LDAP = _re(r" by \S+ \(qmail-\S+\) with ")
_SENDMAIL_1 = _re(r"^(\S+) \((\S+) \[({IP})\].*\) by (\S+) \(")
_IDENT_PREFIX = _re(r"^IDENT:([^@]*)@")
_AT_PREFIX = _re(r"^([^@]*)@")
_NS_1 = _re(r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with \S+ \(")
_NS_2 = _re(r"^(\S+) \(\[({IP})\] helo=(\S+)\) by (\S+) with ")
_NS_3 = _re(r"^(\S+) \(<unknown\S*>\[({IP})\]\) by (\S+) ")
_NS_4 = _re(r"^(\S+) \((\S+\.\S+)\[({IP})\]\) by (\S+) ")
_NS_5 = _re(r"^(\S+) \((\S*)@\[({IP})\].*\) by (\S+) \(")
_HOTMAIL = _re(r"by (\S+\.hotmail\.msn\.com) ")
_LEADING_IP = _re(r"^({IP}) ")
_QPSMTPD = _re(
    r"^(\S+) \((?:HELO|EHLO) (\S*)\) \(({IP})\) by (\S+) \(qpsmtpd/\S+\) with (?:ESMTP|SMTP)"
)
_LMTP = _re(r"^(\S+) \(LHLO (\S*)\) \(({IP})\) by (\S+) with LMTP")
_GMX = _re(r"^(\S+) \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (\S+) \([^\)]+\) with (?:ESMTP|SMTP)")
_SMTPD_FOR = _re(r"^(\S+) \(\[({IP})\]\) by (\S+) via smtpd \(for \S+\) with SMTP\(")
# qmail: Received.pm's "( \(.+\))*" repeats a group that one iteration already matches
# in full (" (a) (b)" is " (" + "a) (b" + ")"): as "(?: \(.+\))?" it matches the same
# strings without exponential backtracking (the group's capture is not used)
_QMAIL = _re(
    r"^\S+( \((?:HELO|EHLO) \S*\))? \((\S+@)?\[?{IP}\]?\)( \(envelope-sender <\S+>\))? "
    r"by \S+(?: \(.+\))? with (.* )?(SMTP|QMQP)(?! id )"
)
_QMAIL_1 = _re(
    r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)"
)
_QMAIL_2 = _re(
    r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)"
)
_QMAIL_3 = _re(r"^(\S+) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)")
_QMAIL_4 = _re(r"^(\S+) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)")
_VIA_HTTP_END = _re(r" via HTTP$")
_YAHOO_WEB = _re(r"^\[({IP})\] by (\S+) via HTTP$")
_SPACE_BRACKET = _re(r"^(\S+) \( \[({IP})\]\).*? by (\S+) ")
_PAREN_HELO_IP = _re(r"^\((\S+) \[({IP})\]\) by (\S+) ")
_BRACKET_BY = _re(r"^\[({IP})\] by (\S+) ")
_PAREN_IP_BY = _re(r"^\(\[?({IP})\]?\) by (\S+) ")
_MDAEMON = _re(r"^(\S+) \[({IP})\] by (\S+) \[{IP}\] with ")
_MDAEMON_2 = _re(r"^(\S+) \[\(({IP})\)\] by (\S+) \({IP}\) ")
_SENDMAIL_2 = _re(r"^(\S+) \(\[({IP})\]\) by (\S+) \(")
_SENDMAIL_3 = _re(r"^(\S+) \((\S+) \[({IP})\]\).*? by (\S+)\b")
_SENDMAIL_4 = _re(r"^(\S+) \(\[({IP})(?:[.:]\d+)?\]\).*? by (\S+) ")
_SENDMAIL_5 = _re(r"^(\S+) \((\S+) \[({IP})\]\)(?: \(authenticated bits=\d+\))? by (\S+) \(")
_FETCHER = _re(r"with (?:POP3|IMAP)")
_QMAILISH_1 = _re(r"^(\S+) \((?:HELO|EHLO) ([^\)]*)\) \((\S*@)?\[?({IP})\]?\).* by (\S+) ")
_QMAILISH_2 = _re(r"^(\S+) \((\S*@)?\[?({IP})\]?\).* by (\S+) ")
_OUTBLAZE = _re(r"^\[({IP})\] by (\S+) with http for ")
_SMAP_1 = _re(r"^(\S+)\(({IP})\) by (\S+) via smap ")
_SMAP_2 = _re(r"^(\S+)\(({IP}), (?:HELO|EHLO) (\S*)\) by (\S+) via smap ")
_POST_OFFICE = _re(r"^\[({IP})\] by (\S+) \(Post")
_ARGOSOFT = _re(r"^\[({IP})\] by (\S+) \(ArGoSoft")
_INTERSCAN = _re(r"^({IP}) by (\S+) \((?:SMTPL|InterScan)\b")
_BSMTP = _re(r"^\S+ by \S+ with BSMTP")
_SPIKE = _re(r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with ")
_YAHOO_HELO = _re(r"^(\S+) \((?:HELO|EHLO) (\S*)\) \((?:(\S+)@)?({IP}).*?\) by (\S+) with ")
_CGP_ACCOUNT = _re(r"^\[({IP})\] \((?:account \S+ )?(?:HELO|EHLO) (\S*)\) by (\S+) \(")
_CGP_VERIFIED = _re(r"^(\S+) \(\[({IP})\] verified\) by (\S+) \(")
_CIPHERTRUST = _re(r"^\(\[({IP})\]\) by (\S+) with ")
_IRONPORT = _re(r"^([^\d]\S+) \(({IP})\) by (\S+) ")
_CONTENT_TECH = _re(r"^\S+ \(\S+\) by \S+ \(Content Technologies ")
_BLS = _re(r"^(\S+) \(\[({IP})\] \[(\S+)\]\) by (\S+) with ")
_TUMBLEWEED = _re(r"^({IP}) by (\S+) with ")
_ATTBI = _re(r"^(\S+) \((\S+)\[({IP})\]\) by (\S+) ")
_FSECURE = _re(r"^\[({IP})\]\S+ \((?:HELO|EHLO) (\S*)\) by (\S+) ")
_ALTAVISTA = _re(r"^({IP}) \((?:HELO|EHLO) (\S*)\) by (\S+) ")
_SMTPD32 = _re(r"^(\S+) \[({IP})\] by (\S+) ")
_CSMAP = _re(r"^(\S+)\(({IP})\) by (\S+) ")
_MAILGATE = _re(r"^\[({IP})\] by (\S+) \(MailGate ")
_UNVERIFIED = _re(r"^(\S+) \(unverified \[({IP})\]\) by (\S+) ")
_PROXYING = _re(r"^({IP}) \([A-Za-z][^\)]+\) by (\S+) with ")
_BRACKET_SUB = _re(r"^\[({IP})\] \(([^\)]+)\) by (\S+) ")
_KDE = _re(r"^(\S+) \((?:\S+@)?({IP})\) by (\S+) with ")
_OBTUSE = _re(r"^(\S+)\(({IP})\)(?:, claiming to be \"(\S+)\")? via \S+ by (\S+),")
_YAHOO_LOGIN = _re(r"^(\S+) \((\S+)@({IP}) with login\) by (\S+\.yahoo\.com) with SMTP")
_SYNTHETIC = _re(r"^X-Originating-IP: ({IP})$")

# handovers to ignore, in order
_IGNORE = [
    _re(r"^\S+ \([^\s@]+@{LH}\) by \S+ \("),
    _re(r"^\S+ \S+ by \S+ with local-e?smtp "),
    _re(r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)"),
    _re(r"^\S+@\S+ by \S+ by uid \S+ "),
    _re(r"^\S+@\S+ by \S+ "),
    _re(r"^Unknown/Local \("),
    _re(r"^{LH} \((?:\S+@)?{LH}[\)\[]"),
    _re(r"^\S+ \((?:\S+@)?{LH}\) "),
    _re(r"^\S+ \(\S+@\S+ \[{LH}\]\) "),
    _re(r"^\(AUTH: \S+\) by \S+ with "),
    _re(r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by "),
    _re(r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: "),
    _re(r"^[^\.]+ by \S+ with Novell_GroupWise"),
    _re(r"^no\.name\.available by \S+ via smtpd \(for "),
]
_QMAIL_SCANNER = _re(r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner")
_IGNORE_2 = [
    _re(r"^\S+ by \S+ with local"),
    _re(r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v[0-9]*?\.[0-9]*?\.[0-9]*?\) with LMTPA"),
    _re(r"^\S+ by \S+ (?:with|via|for|\()"),
    _re(r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b"),
    _re(r"^\S+ \(unknown\) by \S+ \(SG\) with \b"),
    _re(r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b"),
    _re(r"\(LSMTP for"),
    _re(r"^\(\[{LH}\]\) with MailEnable "),
    _re(r"^facebook\.com \([^\)]+\) by facebook\.com with Thrift id \S+$"),
    _re(r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$"),
    _re(r"^\S+ id \S+$"),
    _re(r"^\[<.*? \(Jetsend"),
]
_GUESS_HELO = _re(r"^(\S+)[^-A-Za-z0-9.]")
_SIMTA = _re(
    r"^(\S+) \((\S+) \[({IP})\]\) BY (\S+) (?:\([^\)]+\) WITH SMTP )?ID <?(\S+?)>?(?: FOR <[^>]+>)?$"
)
_NAVGW = _re(r"^(\S*) \[({IP})\]\) by (\S+) \(NAVGW .*?\) with ")
_SENDMAIL_T = _re(r"^\S+@localhost\) by \S+ ")
_JQUEUEMAIL = _re(r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+")
_ANY_BRACKET_IP = _re(r"\[({IP})\]")

_RDNS_UNKNOWN = _re(r"^unknown$", re.I)
_IPV6_PREFIX = _re(r"^ipv6:", re.I)
_SCOPE = _re(r"%[A-Z0-9._~-]*\Z", re.I | re.S)
_MAPPED4 = _re(r"^0*:0*:(?:0*:)*ffff:(\d+\.\d+\.\d+\.\d+)$", re.I)
_ENV_LEAD = _re(r"^\s*<*", re.S)
_ENV_TRAIL = _re(r">*\s*$", re.S)


def _clean_envfrom(envfrom: str) -> str:
    # Perl's s/^\s*<*//gs and s/>*\s*$//gs: the end pattern can match twice (before a
    # final newline and at the very end); there is no newline left here
    envfrom = _ENV_LEAD.sub("", envfrom, count=1)
    envfrom = _ENV_TRAIL.sub("", envfrom)
    return _STRIP_CHARS.sub("!", envfrom)


class _Line:
    """The fields one parse collects (Received.pm's lexicals)."""

    __slots__ = ("auth", "by", "envfrom", "helo", "id", "ident", "ip", "looked_up", "rdns")

    def __init__(self) -> None:
        self.ip = ""
        self.helo = ""
        self.rdns = ""
        self.by = ""
        self.id = ""
        self.ident = ""
        self.envfrom: str | None = None
        self.looked_up = False
        self.auth = ""


ENOUGH = 1  # a format matched: build the relay
SKIP = 0  # a handover SpamAssassin ignores
FETCHER = 2  # a POP/IMAP fetcher's handover (ignored, and may restart the trusted list)
QMAIL_SCANNER = 3  # qmail-scanner's line: ignored, its envelope sender given to the next


def _from_formats(s: str, p: _Line, low: str) -> int | None:
    """The formats after "from " (``s`` without it): ENOUGH, SKIP, FETCHER, QMAIL_SCANNER,
    or None to fall through to the general patterns. ``low``: the whole line lower-cased
    (its "from " holds no start of the strings looked for in it).

    A pattern runs only when ``s`` holds a fixed string that every match of it contains
    (the ``in`` tests before it), so most lines skip most of the patterns; the order and
    the outcomes are Received.pm's."""
    if "return-path" in low or "envelope-" in low:
        m = _ENVFROM.search(s)
        if m:
            p.envfrom = m[1]
    helo_cmd = "HELO " in s or "EHLO " in s
    paren_by = ") by " in s
    bracket_paren_by = "]) by " in s
    bracket_by = "] by " in s
    if "authenticated user " in s and _SQUIRREL.search(s):
        m = _SQUIRREL_IP.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    if "aol.com" in s and _AOL_WEB.search(s):
        m = _AOL_WEB_IP.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    if " SMTPSVC" in s:
        m = _SMTPSVC.search(s)
        if m:
            p.helo, p.ip, p.by = m[1], m[2], m[3]
            return ENOUGH
        if _SMTPSVC_PICKUP.search(s):
            return SKIP
    elif (" with Microsoft SMTP Server " in s or " with mapi id " in s) and _MS_SMTP.search(s):
        m = _MS_SMTP_IP.search(s)
        if m:
            p.helo, p.ip, p.by, p.id = m[1], m[2], m[3], ""
            return ENOUGH
    elif "[XMail " in s:
        m = _XMAIL.search(s)
        if m:
            p.helo, p.ip, p.by = m[1], m[2], m[3]
            m2 = _XMAIL_ID.search(s)
            if m2:
                p.id = m2[1]
            m2 = _XMAIL_FROM.search(s)
            if m2:
                p.envfrom = m2[1]
            return ENOUGH
    elif "(ecelerity" in s and _ECELERITY.search(s):
        m = _ECELERITY_HELO.search(s)
        if m:
            p.ip, p.helo, p.by = m[1], m[2], m[3]
            return ENOUGH
        m = _ECELERITY_IP.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    elif "Exim" in s:
        if _EXIM_LOCAL.search(s):
            return SKIP
        m = _EXIM_1.search(s)
        if m:
            p.ip, sub, p.by = m[1], m[2], m[3]
            _exim_sub(sub, p)
            return ENOUGH
        m = _EXIM_2.search(s)
        if m:
            p.rdns, p.ip, sub, p.by = m[1], m[2], m[3], m[4]
            p.helo = p.rdns
            _exim_sub(sub, p)
            return ENOUGH
        m = _EXIM_3.search(s)
        if m:
            p.rdns, p.ip, p.helo, p.by = m[1], m[2], m[1], m[4]
            return ENOUGH
        m = _EXIM_RDNS.search(s)
        if m:
            p.rdns = m[1]
        m = _EXIM_HELO.search(s)
        if m:
            p.helo = m[1]
        m = _EXIM_IP.search(s)
        if m:
            p.ip = m[1]
        m = _EXIM_BY.search(s)
        if m:
            p.by = m[1]
            if p.ip:
                return ENOUGH
    elif " (Postfix) with" in s:
        for rx in (_POSTFIX_1, _POSTFIX_2):
            m = rx.search(s)
            if m:
                p.looked_up = True
                p.helo, p.rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
                if p.rdns == "unknown":
                    p.rdns = ""
                return ENOUGH
    elif "(Scalix SMTP Relay" in s:
        m = _SCALIX.search(s)
        if m:
            p.helo, p.ip, p.by = m[1], m[2], m[3]
            return ENOUGH
    elif " (Lotus Domino " in s:
        m = _DOMINO.search(s)
        if m:
            p.looked_up = False
            p.helo, p.ip, p.by = m[1], m[2], m[3]
            return ENOUGH

    if "with HTTP" in s and _WITH_HTTP.search(s):
        m = _HTTP_NUMERIC.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    if paren_by and " [" in s and not ("(qmail-" in s and _QMAIL_LDAP.search(s)):
        m = _SENDMAIL_1.search(s)
        if m:
            p.looked_up = True
            p.helo, rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
            m2 = _IDENT_PREFIX.search(rdns)
            if m2:
                p.ident = m2[1]
                rdns = rdns[m2.end() :]
            m2 = _AT_PREFIX.search(rdns)
            if m2:
                p.ident = m2[1]
                rdns = rdns[m2.end() :]
            p.rdns = rdns
            return ENOUGH

    m = _NS_1.search(s) if bracket_paren_by else None
    if m:
        p.looked_up = True
        p.rdns, p.ip, p.helo, p.by = m[2], m[3], m[1], m[4]
        return ENOUGH
    m = _NS_2.search(s) if "] helo=" in s else None
    if m:
        p.rdns, p.ip, p.helo, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH
    m = _NS_3.search(s) if "(<unknown" in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _NS_4.search(s) if bracket_paren_by else None
    if m:
        p.looked_up = True
        p.helo, p.rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH
    m = _NS_5.search(s) if "@[" in s else None
    if m:
        p.looked_up = True
        p.helo, p.ip, p.by, p.ident = m[1], m[3], m[4], m[2]
        return ENOUGH
    m = _HOTMAIL.search(s) if ".hotmail.msn.com " in s else None
    if m:
        p.by = m[1]
        m2 = _LEADING_IP.search(s)
        if m2:
            p.ip = m2[1]
        return ENOUGH
    for rx, needed in ((_QPSMTPD, "(qpsmtpd/"), (_LMTP, "(LHLO "), (_GMX, "] by ")):
        m = rx.search(s) if needed in s else None
        if m:
            p.rdns, p.helo, p.ip, p.by = m[1], m[2], m[3], m[4]
            return ENOUGH
    m = _SMTPD_FOR.search(s) if " via smtpd (for " in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH

    if (" by " in s and ("SMTP" in s or "QMQP" in s)) and _QMAIL.search(s):
        m = _QMAIL_1.search(s)
        if m:
            p.rdns, p.helo, p.ident, p.ip, p.by = m[1], m[2], m[3], m[4], m[6]
        else:
            m = _QMAIL_2.search(s)
            if m:
                p.rdns, p.helo, p.ip, p.by = m[1], m[2], m[3], m[5]
            else:
                m = _QMAIL_3.search(s)
                if m:
                    p.helo = p.rdns = m[1]
                    p.ident, p.ip, p.by = m[2], m[3], m[5]
                else:
                    m = _QMAIL_4.search(s)
                    if m:
                        p.helo = p.rdns = m[1]
                        p.ip, p.by = m[2], m[4]
        if p.rdns != "unknown":
            p.looked_up = True
        else:
            p.rdns = ""
        return ENOUGH

    if s.endswith(" via HTTP") and _VIA_HTTP_END.search(s):
        m = _YAHOO_WEB.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    m = _SPACE_BRACKET.search(s) if "( [" in s else None
    if m:
        p.ip, p.by = m[2], m[3]
        return ENOUGH
    m = _PAREN_HELO_IP.search(s) if s.startswith("(") else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    for rx, first in ((_BRACKET_BY, "["), (_PAREN_IP_BY, "(")):
        m = rx.search(s) if s.startswith(first) else None
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    m = _MDAEMON.search(s) if bracket_by else None
    if m:
        p.looked_up = True
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _MDAEMON_2.search(s) if " [(" in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    bracket_paren = "])" in s
    m = _SENDMAIL_2.search(s) if bracket_paren_by else None
    if m:
        p.looked_up = True
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _SENDMAIL_3.search(s) if bracket_paren else None
    if m:
        if m[2] == "softdnserr":
            p.looked_up = False
        else:
            p.looked_up = True
            p.rdns = m[2]
        p.helo, p.ip, p.by = m[1], m[3], m[4]
        return ENOUGH
    m = _SENDMAIL_4.search(s) if bracket_paren else None
    if m:
        p.looked_up = True
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _SENDMAIL_5.search(s) if bracket_paren else None
    if m:
        p.looked_up = True
        p.helo, p.rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH

    if ("with POP3" in s or "with IMAP" in s) and _FETCHER.search(s):
        return FETCHER

    m = _QMAILISH_1.search(s) if helo_cmd else None
    if m:
        p.looked_up = True
        p.rdns, p.helo, p.ip, p.by = m[1], m[2], m[4], m[5]
        p.ident = m[3] if m[3] is not None else ""
        if p.ident:
            p.ident = p.ident.removesuffix("@")
        return ENOUGH
    m = _QMAILISH_2.search(s)
    if m:
        p.looked_up = True
        p.rdns = p.helo = m[1]
        p.ident = m[2] if m[2] is not None else ""
        p.ip, p.by = m[3], m[4]
        if p.ident:
            p.ident = p.ident.removesuffix("@")
        return ENOUGH
    if " with http for " in s:
        m = _OUTBLAZE.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    if " via smap " in s:
        m = _SMAP_1.search(s)
        if m:
            p.looked_up = True
            p.rdns, p.ip, p.by = m[1], m[2], m[3]
            return ENOUGH
    m = _SMAP_2.search(s) if " via smap " in s else None
    if m:
        p.looked_up = True
        p.rdns, p.ip, p.helo, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH
    if " (Post" in s:
        m = _POST_OFFICE.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    if " (ArGoSoft" in s:
        m = _ARGOSOFT.search(s)
        if m:
            p.ip, p.by = m[1], m[2]
            return ENOUGH
    m = _INTERSCAN.search(s) if "(SMTPL" in s or "(InterScan" in s else None
    if m:
        p.ip, p.by = m[1], m[2]
        return ENOUGH
    if " with BSMTP" in s and _BSMTP.search(s):
        return SKIP
    m = _SPIKE.search(s) if bracket_paren_by else None
    if m:
        p.looked_up = True
        p.helo, p.rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH
    m = _YAHOO_HELO.search(s) if helo_cmd else None
    if m:
        p.looked_up = True
        p.rdns, p.helo, p.ip, p.by = m[1], m[2], m[4], m[5]
        if m[3] is not None:
            p.ident = m[3]
        return ENOUGH
    m = _CGP_ACCOUNT.search(s) if s.startswith("[") else None
    if m:
        p.ip, p.helo, p.by = m[1], m[2], m[3]
        return ENOUGH
    if " (CommuniGate Pro" in s:
        m = _CGP_VERIFIED.search(s)
        if m:
            p.looked_up = True
            p.rdns, p.helo, p.ip, p.by = m[1], m[1], m[2], m[3]
            return ENOUGH
    m = _CIPHERTRUST.search(s) if s.startswith("([") else None
    if m:
        p.ip, p.by = m[1], m[2]
        return ENOUGH
    m = _IRONPORT.search(s) if paren_by else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    if "(Content Technologies " in s and _CONTENT_TECH.search(s):
        return SKIP
    m = _BLS.search(s) if "] [" in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[4]
        return ENOUGH
    m = _TUMBLEWEED.search(s)
    if m:
        p.ip, p.by = m[1], m[2]
        return ENOUGH
    m = _ATTBI.search(s) if bracket_paren_by else None
    if m:
        p.looked_up = True
        p.helo, p.rdns, p.ip, p.by = m[1], m[2], m[3], m[4]
        return ENOUGH
    for rx, possible in ((_FSECURE, s.startswith("[")), (_ALTAVISTA, helo_cmd)):
        m = rx.search(s) if possible else None
        if m:
            p.ip, p.helo, p.by = m[1], m[2], m[3]
            return ENOUGH
    m = _SMTPD32.search(s) if bracket_by else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _CSMAP.search(s) if paren_by else None
    if m:
        p.rdns, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _MAILGATE.search(s) if "(MailGate " in s else None
    if m:
        p.ip, p.by = m[1], m[2]
        return ENOUGH
    m = _UNVERIFIED.search(s) if "(unverified [" in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _PROXYING.search(s) if paren_by else None
    if m:
        p.ip, p.by = m[1], m[2]
        return ENOUGH
    m = _BRACKET_SUB.search(s) if s.startswith("[") else None
    if m:
        p.ip, sub, p.by = m[1], m[2], m[3]
        _exim_sub(sub, p)
        return ENOUGH
    m = _KDE.search(s) if paren_by else None
    if m:
        p.rdns, p.ip, p.by = m[1], m[2], m[3]
        return ENOUGH
    m = _OBTUSE.search(s) if " via " in s else None
    if m:
        p.rdns, p.ip, p.by = m[1], m[2], m[4]
        p.helo = m[3] if m[3] is not None else ""
        if m[1] != "UNKNOWN":
            p.looked_up = True
            p.rdns = m[1]
        return ENOUGH
    m = _YAHOO_LOGIN.search(s) if " with login) by " in s else None
    if m:
        p.helo, p.ip, p.by = m[1], m[3], m[4]
        return ENOUGH
    m = _SYNTHETIC.search(s) if s.startswith("X-Originating-IP: ") else None
    if m:
        p.ip, p.by = m[1], ""
        return ENOUGH

    for rx in _IGNORE:
        if rx.search(s):
            return SKIP
    if _QMAIL_SCANNER.search(s):
        return QMAIL_SCANNER
    for rx in _IGNORE_2:
        if rx.search(s):
            return SKIP
    if not p.helo:
        m = _GUESS_HELO.search(s)
        if m:
            p.helo = m[1]
    return None


def _exim_sub(sub: str, p: _Line) -> None:
    # $sub =~ s/helo=(\S+)// and $helo = $1; $sub =~ s/ident=(\S*)// and $ident = $1;
    m = _EXIM_SUB_HELO.search(sub)
    if m:
        p.helo = m[1]
        sub = sub[: m.start()] + sub[m.end() :]
    m = _EXIM_SUB_IDENT.search(sub)
    if m:
        p.ident = m[1]


def _auth(s: str, low: str) -> str:
    """The authentication token Received.pm recognises ("" for none). Each pattern runs
    only when the text holds a fixed string every match contains (in ``low``, ``s``
    lower-cased, for the case-insensitive ones: only ASCII letters fold, as in the
    pattern)."""
    by = " by " in s
    if by and " with " in low:
        m = _AUTH_WITH.search(s)
        if m:
            return m[1]
    if "by mx.google.com with ESMTPS id " in s and _AUTH_GMAIL.search(s):
        m = _AUTH_GMAIL_TLS.search(s)
        if m:
            return f"GMail - transport={m[1]} cipher={m[2]}"
    if "(AUTH: " in s:
        m = _AUTH_COURIER.search(s)
        if m:
            return m[1]
    if "authenticated" in s and _sendmail_authenticated(s):
        return "Sendmail"
    if "by mail.gmx." in s:
        m = _AUTH_GMX.search(s)
        if m:
            return f"GMX ({m[4]} / {m[3]})"
    if " (authenticated as " in s and _critical_path(s):
        return "CriticalPath"
    if "(Authenticated sender: " in s:
        m = _AUTH_POSTFIX.search(s)
        if m:
            return m[1] if m[1] == "Postfix" else f"Postfix ({m[1]})"
    if " (account " in s and _AUTH_CGP.search(s):
        return "Communigate"
    if "HTTP-DAV" in s and _AUTH_DAV.search(s):
        return "HTTP-DAV"
    if by and "(via http" in low:
        m = _AUTH_VIA_HTTP.search(s)
        if m:
            return m[1]
    return ""


def parse_received_line(line: str) -> Relay | int | None:
    """One Received header (its text, as :func:`header_text` gives it): a :class:`Relay`,
    None when unparseable, or SKIP, FETCHER or QMAIL_SCANNER (the envelope sender that
    qmail-scanner logged is then in ``qmail_scanner_envfrom``) for a skipped handover."""
    result = _parse(line)
    return result[0]


def _squeeze(line: str) -> str:
    """Perl's ``s/\\s+/ /gs`` then the blanks at both ends removed. ``str.split`` splits on
    the same blanks unless the text holds one of the other characters it counts as blank."""
    if _SPLIT_ONLY_BLANKS.search(line) is None:
        return " ".join(line.split())
    return _WS.sub(" ", line).strip(" ")


def _parse(line: str) -> tuple[Relay | int | None, str | None]:
    s = _squeeze(line[:MAX_LINE])
    # 1 while s/\s?;$//; (one step per semicolon, no rescan of the line)
    while s.endswith(";"):
        s = s[:-1]
        if s.endswith(" "):
            s = s[:-1]
    if not _FROM_START.match(s):
        return SKIP, None
    if "with local for" in s and _WITH_LOCAL_FOR.search(s):
        return SKIP, None
    m = _FROM_BY_SEMI.search(s) if ";" in s else None
    if m and not _BRACKET_DOTS.fullmatch(m[1]):
        return SKIP, None
    s = _cut_date(s)
    s = s.replace(")by ", ") by ", 1)

    p = _Line()
    if " id " in s:
        m = _ID.search(s)
        if m:
            p.id = m[1]
    m = _HELO_EQ.search(s) if "helo=" in s else None
    if m:
        p.helo = m[1]
    elif "HELO " in s or "EHLO " in s:
        m = _HELO_CMD.search(s)
        if m:
            p.helo = m[1]
    if " by " in s:
        m = _BY.search(s)
        if m:
            p.by = m[1]
    low = s.lower()
    p.auth = _auth(s, low)

    outcome: int | None = None
    if s.startswith("from "):
        outcome = _from_formats(s[5:], p, low)
        if outcome == QMAIL_SCANNER:
            env = p.envfrom
            return SKIP, (_clean_envfrom(env) if env is not None else None)
        if outcome is not None and outcome != ENOUGH:
            return outcome, None
    elif s.startswith("FROM "):
        m = _SIMTA.search(s[5:])
        if m:
            p.looked_up = True
            p.helo, p.rdns, p.ip, p.by, p.id = m[1], m[2], m[3], m[4], m[5]
            if p.rdns == "unverified":
                p.rdns = ""
            outcome = ENOUGH
    elif s.startswith("(from "):
        rest = s[6:]
        m = _NAVGW.search(rest)
        if m:
            p.helo, p.ip, p.by = m[1], m[2], m[3]
            outcome = ENOUGH
        elif _SENDMAIL_T.search(rest) or _JQUEUEMAIL.search(rest):
            return SKIP, None
        s = rest
    # other spellings ("From ", "(FROM "...) pass the first test but no format: they fall
    # through to the general patterns

    if outcome is None:
        if not p.ip:
            m = _ANY_BRACKET_IP.search(s)
            if m:
                p.ip = m[1]
        if not (p.ip and p.by):
            return None, None
    return _relay(p), None


def _relay(p: _Line) -> Relay:
    """Received.pm's "enough:" step: clean the fields, build the relay."""
    rdns = p.rdns.rstrip(".")
    if rdns.startswith("[") or (len(rdns) <= 8 and _RDNS_UNKNOWN.search(rdns)):
        rdns = ""
    ip = p.ip
    if ":" in ip:
        ip = _IPV6_PREFIX.sub("", ip, count=1)
    ip = ip.removeprefix("[").removesuffix("]")
    if "%" in ip:
        ip = _SCOPE.sub("", ip, count=1)
    if ":" in ip:
        ip = _MAPPED4.sub(r"\1", ip, count=1)
    by = p.by.removesuffix(";")
    helo = p.helo
    ident = p.ident
    if _STRIP_CHARS.search(ip + rdns + helo + by + ident):
        ip = _STRIP_CHARS.sub("!", ip)
        rdns = _STRIP_CHARS.sub("!", rdns)
        helo = _STRIP_CHARS.sub("!", helo)
        by = _STRIP_CHARS.sub("!", by)
        ident = _STRIP_CHARS.sub("!", ident)
    envfrom = _clean_envfrom(p.envfrom) if p.envfrom is not None else None
    r = Relay(
        ip=ip, rdns=rdns, helo=helo, by=by, ident=ident, envfrom=envfrom, id=p.id, auth=p.auth
    )
    if rdns == "":
        if p.looked_up:
            r.no_reverse_dns = True
        else:
            r.rdns_not_in_headers = True
    r.ip_private = _IP_PRIVATE_RE.search(ip) is not None
    return r


def as_string(r: Relay) -> str:
    """SpamAssassin's make_relay_as_string, with the intl and msa marks it writes in once the
    relay's place in the trust chain is known."""
    env = r.envfrom if perl_true(r.envfrom) else ""
    return (
        f"[ ip={r.ip} rdns={r.rdns} helo={r.helo} by={r.by} ident={r.ident} envfrom={env}"
        f" intl={int(r.internal)} id={r.id} auth={r.auth} msa={int(r.msa)} ]"
    )


# ---- parse_received_headers ---------------------------------------------------------------
def originating_lines(headers: Sequence[tuple[str, str]]) -> list[str]:
    """The synthetic Received lines of the originating-IP headers (each header's last
    value, as SpamAssassin's scalar ``get_header`` gives), in configuration order."""
    out: list[str] = []
    for name in ORIGINATING_IP_HEADERS:
        lname = name.lower()
        last = None
        for k, v in headers:
            if k.lower() == lname:
                last = v
        if not last:
            continue
        m = _IP_ADDRESS_RE.search(last[:MAX_LINE])
        if m:
            out.append(f"from X-Originating-IP: {m[1]}\n")
    return out


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _network(spec: str) -> _Network:
    """One network as SpamAssassin's NetSet reads it: ``a.b.c.d``, ``a.b.`` (the mask
    implied by the octets given), ``a.b.c/24`` (missing octets 0), IPv6 with optional
    brackets, ``/len`` masks. ValueError when it is none of these."""
    text = spec.strip()
    mask: int | None = None
    if "/" in text:
        text, _, m = text.partition("/")
        if not m.isdigit():
            raise ValueError(f"bad mask length in network {spec!r}")
        mask = int(m)
    text = text.strip("[]")
    if ":" in text:
        return ipaddress.IPv6Network(f"{text}/{128 if mask is None else mask}", strict=False)
    octets = text.split(".")
    implied = 32
    if octets and octets[-1] == "":  # "10.1." : the octets given, the rest any
        octets = octets[:-1]
        implied = 8 * len(octets)
    if not 1 <= len(octets) <= 4 or not all(o.isdigit() and int(o) <= 255 for o in octets):
        raise ValueError(f"not an IPv4 or IPv6 network: {spec!r}")
    if mask is None and implied == 32 and len(octets) < 4:
        raise ValueError(f"an incomplete IPv4 address needs a trailing dot or a mask: {spec!r}")
    full = ".".join([*octets, *["0"] * (4 - len(octets))])
    return ipaddress.IPv4Network(f"{full}/{implied if mask is None else mask}", strict=False)


# always in the trusted and internal networks (SpamAssassin adds them to any configuration)
_LOOPBACK = ("127.0.0.0/8", "::1")


@dataclass(frozen=True, slots=True)
class NetSet:
    """A list of networks as SpamAssassin's ``trusted_networks`` takes it: ``!net``
    excludes a network; the most specific entry that holds an address decides (the order
    SpamAssassin documents as predictable: its Patricia-trie lookup)."""

    entries: tuple[tuple[_Network, bool], ...] = ()  # (network, excluded), most specific first

    @classmethod
    def parse(cls, specs: Iterable[str], *, loopback: bool = True) -> NetSet:
        out: list[tuple[_Network, bool]] = []
        for spec in specs:
            for word in spec.split():
                excluded = word.startswith("!")
                out.append((_network(word[1:] if excluded else word), excluded))
        if loopback:
            out.extend((_network(n), False) for n in _LOOPBACK)
        # stable: among equally specific entries the first listed decides
        out.sort(key=lambda e: -e[0].prefixlen)
        return cls(tuple(out))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, str) or not ip:
            return False
        try:
            addr: _Address = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for net, excluded in self.entries:
            if addr.version == net.version and addr in net:
                return not excluded
        return False


@dataclass(frozen=True, slots=True)
class Trust:
    """The configured trust boundary (SpamAssassin's ``trusted_networks``,
    ``internal_networks`` and ``msa_networks``). With only one of the first two given, the
    other is the same list, as in SpamAssassin; with neither, :func:`parse_relays` infers
    trust and this is not used."""

    trusted: NetSet
    internal: NetSet
    msa: NetSet = NetSet()

    @classmethod
    def configured(
        cls,
        trusted: Sequence[str] | None,
        internal: Sequence[str] | None,
        msa: Sequence[str] = (),
    ) -> Trust | None:
        """The trust of the given network lists; None when neither ``trusted`` nor
        ``internal`` is set (trust is then inferred). ValueError on a bad network."""
        if trusted is None and internal is None:
            return None
        t = NetSet.parse(trusted if trusted is not None else internal or ())
        i = NetSet.parse(internal if internal is not None else trusted or ())
        return cls(t, i, NetSet.parse(msa, loopback=False))


def parse_relays(
    received: Iterable[str], originating: Iterable[str] = (), trust: Trust | None = None
) -> Relays:
    """The relays of a message: ``received`` holds its Received header texts top first
    (:func:`header_text`), ``originating`` the synthetic lines of :func:`originating_lines`.
    ``trust``: the configured networks; None: trust is inferred as SpamAssassin infers it
    without ``trusted_networks``."""
    out = Relays()
    in_trusted = True
    in_internal = True
    found_msa = False
    allow_fetch_markers = True
    qms_pending: str | None = None
    lines = [*itertools.islice(received, MAX_RECEIVED), *originating]
    for line in lines:
        qms_env_from = qms_pending if perl_true(qms_pending) else None
        qms_pending = None
        relay, qms = _parse(line)
        if relay == FETCHER:
            if allow_fetch_markers:
                out.trusted = []
                out.internal = []
                out.external = []
            relay = SKIP
        qms_pending = qms
        if not isinstance(relay, Relay):  # unparseable, or a handover SpamAssassin skips
            if relay is None:
                out.unparseable += 1
            if in_trusted:
                out.last_trusted_index += 1
            if in_internal:
                out.last_internal_index += 1
            continue
        if qms_env_from is not None:
            relay.envfrom = qms_env_from
        if in_trusted and not found_msa:
            if trust is None:
                if not relay.ip_private and not relay.auth:
                    in_trusted = False
                    in_internal = False
            elif not relay.auth and relay.ip not in trust.trusted:
                in_trusted = False  # the trust chain ends here
                in_internal = False  # not trusted is not internal
            else:
                if in_internal and not relay.auth and relay.ip not in trust.internal:
                    in_internal = False
                if relay.ip in trust.msa:  # the hops before it were the sender's own
                    found_msa = True
                    relay.msa = True
        relay.internal = in_internal
        relay.as_string = as_string(relay)
        if in_trusted:
            out.trusted.append(relay)
            allow_fetch_markers = True
            out.last_trusted_index += 1
        else:
            out.untrusted.append(relay)
            allow_fetch_markers = False
        if in_internal:
            out.internal.append(relay)
            out.last_internal_index += 1
        else:
            out.external.append(relay)
    return out


def _header_bytes(value: str) -> bytes:
    # the parser's header text: 8-bit bytes arrive as surrogates (surrogateescape)
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def message_relays(raw_headers: Sequence[tuple[str, str]], trust: Trust | None = None) -> Relays:
    """The relays of a message from its undecoded, unfolded headers (name, value) in order
    (``ParsedMessage.raw_headers``: other filters' headers, X-Spam-Relays-* among them,
    are not there); ``trust`` as in :func:`parse_relays`."""
    received: list[str] = []
    for k, v in raw_headers:
        if k.lower() == "received":
            received.append(header_text(_header_bytes(v[:MAX_LINE])))
            if len(received) >= MAX_RECEIVED:
                break
    originating = originating_lines(
        [
            (k, header_text(_header_bytes(v[:MAX_LINE])))
            for k, v in raw_headers
            if k.lower() in _ORIG_LOWER
        ]
    )
    return parse_relays(received, originating, trust)


_ORIG_LOWER = frozenset(h.lower() for h in ORIGINATING_IP_HEADERS)
