"""SpamAssassin ``.cf`` files -> rule definitions (no compiling here).

Syntax (see ``Mail::SpamAssassin::Conf``): one directive a line, ``#`` starts a comment
(``\\#`` is a literal hash). Understood: ``header`` (``Name``, ``Name:raw``, ``Name:addr``,
``Name:name``, ``:first``/``:last``, ``ALL``, ``ToCc``, ``EnvelopeFrom``, ``MESSAGEID``,
``exists:Name``, ``=~``/``!~``, ``[if-unset: ...]``), ``body``, ``rawbody``, ``full``, ``uri``,
``meta``, ``describe``, ``score`` (one value or the four score sets: the first, set 0, is
ours since we run with neither Bayes nor network tests), ``tflags``, ``enlist_addrlist``
(address globs for ``check_from_in_list`` and ``check_replyto_in_list``), the FreeMail
plugin's lists (``freemail_domains``, ``freemail_welcomelist``/``_whitelist``) with the TLDs
its address regex needs (``util_rb_tld``), FromNameSpoof's ``fns_add_addrlist`` /
``fns_remove_addrlist`` and ``fns_ignore_headers``, the numeric plugin settings of
:data:`PLUGIN_SETTINGS`, the trust boundary (``trusted_networks``, ``internal_networks``,
``msa_networks`` and their ``clear_`` forms), the ReplaceTags
directives (``replace_tag``/``_pre``/``_inter``/``_post``/``_rules``), and the conditional
blocks ``ifplugin`` / ``if`` / ``else`` / ``endif``. Every other directive (``lang``,
``priority``, ``reuse`` ...) is tolerated and ignored.

Conditionals: ``ifplugin P`` is true for the plugins in :data:`AVAILABLE_PLUGINS` (what this
engine implements: the regex rule types, ReplaceTags, and the *Eval plugins whose eval tests
are each either implemented or skipped with a reason); ``if`` expressions understand
``plugin(P)``, ``can(P::feature_x)``, ``version`` (we answer as SpamAssassin 4.0.1),
numbers, ``! && || == != < <= > >=`` and parentheses. Rules defined only inside false blocks
are reported as skipped with the condition that hid them.

Later definitions override earlier ones of the same name (SpamAssassin semantics), so files
are read in the order given: stock rules first, then the project's, then local ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mailsift.classifier.rules.relays import NetSet

SA_VERSION = 4.000001

# Plugins whose rules this engine can take (rule types it runs, or eval tests it either
# implements or skips one by one with a reason).
AVAILABLE_PLUGINS = frozenset(
    {
        "Mail::SpamAssassin::Plugin::Check",
        "Mail::SpamAssassin::Plugin::ReplaceTags",
        "Mail::SpamAssassin::Plugin::HeaderEval",
        "Mail::SpamAssassin::Plugin::BodyEval",
        "Mail::SpamAssassin::Plugin::MIMEEval",
        "Mail::SpamAssassin::Plugin::HTMLEval",
        "Mail::SpamAssassin::Plugin::URIEval",
        "Mail::SpamAssassin::Plugin::RelayEval",
        "Mail::SpamAssassin::Plugin::WLBLEval",
        "Mail::SpamAssassin::Plugin::VBounce",
        "Mail::SpamAssassin::Plugin::MIMEHeader",
        "Mail::SpamAssassin::Plugin::FreeMail",
        "Mail::SpamAssassin::Plugin::FromNameSpoof",
        "Mail::SpamAssassin::Plugin::ImageInfo",
    }
)

# Numeric plugin settings (SpamAssassin's CONF_TYPE_NUMERIC) and their defaults; aliases
# map to the setting they stand for.
PLUGIN_SETTINGS: dict[str, float] = {
    "freemail_max_body_emails": 5,
    "freemail_max_body_freemails": 3,
    "freemail_skip_when_over_max": 1,
    "freemail_skip_bulk_envfrom": 1,
    "freemail_import_welcomelist_auth": 0,
    "freemail_import_def_welcomelist_auth": 0,
    "fns_extrachars": 50,
    "fns_check": 1,
}
PLUGIN_SETTING_ALIASES = {
    "freemail_import_whitelist_auth": "freemail_import_welcomelist_auth",
    "freemail_import_def_whitelist_auth": "freemail_import_def_welcomelist_auth",
}
_FNS_ADDRLIST_RE = re.compile(r"^\((.+?)\)\s+(.+)\Z", re.DOTALL)
_NUMERIC_RE = re.compile(r"^-?\d+(?:\.\d+)?$|^-?\.\d+$")
# FreeMail's freemail_domains entries: letters, digits, ".", "-" and the wildcards "*", "?"
_FREEMAIL_DOMAIN_RE = re.compile(r"^[a-zA-Z0-9.*?-]+$")
# freemail_welcomelist entries: an address or a domain
_FREEMAIL_WELCOME_RE = re.compile(r"\w[.@]\w", re.ASCII)

# SpamAssassin's trust-boundary directives (``trusted_networks`` etc., ``clear_`` + each)
NETWORK_DIRECTIVES = ("trusted_networks", "internal_networks", "msa_networks")

RULE_TYPES = ("header", "mimeheader", "body", "rawbody", "full", "uri", "meta")
# rule-defining directives we recognise but cannot run
UNSUPPORTED_TYPES = frozenset(
    {
        "uri_detail",
        "askdns",
        "urirhssub",
        "urirhsbl",
        "uridnsbl",
        "uridnssub",
        "hashbl",
        "check_hashbl_bodyre",
        "urilocalbl",
        "uri_block_cc",
        "uri_block_cidr",
        "uri_block_cont",
        "uri_block_isp",
        "dns_block_rule",
        "txrep",
    }
)

SUPPORTED_MODIFIERS = frozenset({"raw", "addr", "name", "first", "last"})
PSEUDO_HEADERS = frozenset({"ALL", "ToCc", "EnvelopeFrom", "MESSAGEID"})

_COMMENT_RE = re.compile(r"(?<!\\)#.*$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_HEADER_RE = re.compile(r"^(\S+)\s*(=~|!~)\s*(.+?)(?:\s*\[if-unset:\s?(.*)\])?\s*$")
_EVAL_RE = re.compile(r"^eval:\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")
_ADDRLIST_RE = re.compile(r"^\(\s*([A-Za-z0-9_]+)\s*\)\s*(\S.*)$")


@dataclass(slots=True)
class RuleDef:
    """One rule as written (the last definition of its name wins)."""

    name: str
    kind: str  # header mimeheader body rawbody full uri meta
    source: str  # "file:line"
    pattern: str | None = None  # Perl pattern text, delimiters removed
    flags: str = ""  # Perl flags
    negate: bool = False  # !~
    header: str | None = None  # header name (or pseudo-header), modifiers stripped
    modifiers: tuple[str, ...] = ()
    exists: bool = False  # header X exists:Name
    if_unset: str | None = None
    eval_name: str | None = None  # eval:name(args)
    eval_args: str = ""
    expr: str | None = None  # meta expression
    error: str | None = None  # set when the definition itself cannot be used


@dataclass(slots=True)
class ParsedRules:
    rules: dict[str, RuleDef] = field(default_factory=dict)
    describe: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    # SpamAssassin's four score sets (0: no Bayes, no network tests; 1: network; 2: Bayes;
    # 3: both). One value on the ``score`` line stands for all four.
    score_sets: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    tflags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # ``enlist_addrlist (NAME) glob ...``: address lists for check_from_in_list and friends
    addrlists: dict[str, list[str]] = field(default_factory=dict)
    # ``enlist_uri_host (NAME) [!]host ...``: host -> listed (False: a "!" exception) per
    # list, for check_uri_host_listed; ``delist_uri_host [(NAME)] host ...`` removes entries
    urihosts: dict[str, dict[str, bool]] = field(default_factory=dict)
    # ``redirector_pattern /re/flags`` lines as written, in order: the redirectors whose
    # target URIs SpamAssassin adds to the URI list the uri rules read
    redirector_patterns: list[str] = field(default_factory=list)
    # FreeMail: ``freemail_domains`` without and with wildcards (lower-cased), the
    # ``freemail_welcomelist`` entries, and ``util_rb_tld``'s valid TLDs (lower-cased)
    freemail_domains: set[str] = field(default_factory=set)
    freemail_wildcards: set[str] = field(default_factory=set)
    freemail_welcomelist: set[str] = field(default_factory=set)
    valid_tlds: set[str] = field(default_factory=set)
    # FromNameSpoof: ``fns_add_addrlist (owner) glob ...`` (owner lower-cased, globs as for
    # enlist_addrlist) and ``fns_ignore_headers``
    fns_addrlists: dict[str, list[str]] = field(default_factory=dict)
    fns_ignore_headers: set[str] = field(default_factory=set)
    # the :data:`PLUGIN_SETTINGS` set by a directive (the last one wins)
    settings: dict[str, float] = field(default_factory=dict)
    # ``trusted_networks`` / ``internal_networks`` / ``msa_networks`` (each line adds;
    # ``clear_*`` empties the list, and the first two read as not configured again): the
    # Received chain's trust boundary, as a site's local.cf gives it to SpamAssassin
    networks: dict[str, list[str]] = field(default_factory=dict)
    inactive: dict[str, str] = field(default_factory=dict)  # name -> hiding condition
    unsupported: dict[str, str] = field(default_factory=dict)  # name -> reason
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # ReplaceTags
    replace_tag: dict[str, str] = field(default_factory=dict)
    replace_pre: dict[str, str] = field(default_factory=dict)
    replace_inter: dict[str, str] = field(default_factory=dict)
    replace_post: dict[str, str] = field(default_factory=dict)
    replace_rules: set[str] = field(default_factory=set)
    replace_start: str = "<"
    replace_end: str = ">"


def rule_files(paths: Iterable[Path | str]) -> list[Path]:
    """Expand directories into their ``*.cf`` files (sorted, as SpamAssassin reads them)."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.glob("*.cf") if f.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"rules path does not exist: {path}")
    return out


def read_cf(path: Path) -> str:
    """Rule files are bytes: read them as latin-1 so every byte survives into patterns."""
    return path.read_bytes().decode("latin-1")


def parse_files(files: Iterable[Path]) -> ParsedRules:
    out = ParsedRules()
    for f in files:
        parse_text(read_cf(f), str(f), out)
    return finish(out)


def parse_string(text: str, source: str = "<string>") -> ParsedRules:
    """Parse rules given as text (tests, ``--rules`` snippets)."""
    return finish(parse_text(text, source))


def finish(out: ParsedRules) -> ParsedRules:
    """After the last file: expand ReplaceTags, keep only truly hidden rules as inactive."""
    apply_replace_tags(out)
    for name in list(out.inactive):
        if name in out.rules:
            del out.inactive[name]
    return out


def parse_text(text: str, source: str, out: ParsedRules | None = None) -> ParsedRules:
    """Parse one file's text into ``out`` (a fresh ParsedRules when None)."""
    out = out if out is not None else ParsedRules()
    out.files.append(source)
    stack: list[tuple[bool, str]] = []  # (condition value, condition text)
    for lineno, raw_line in enumerate(text.splitlines(), 1):
        line = _COMMENT_RE.sub("", raw_line).replace("\\#", "#").strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        parts = line.split(None, 1)
        key = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        if key == "ifplugin":
            stack.append((rest.split()[0] in AVAILABLE_PLUGINS if rest else False, line))
            continue
        if key == "if":
            stack.append((_eval_if(rest, out, where), line))
            continue
        if key == "else":
            if stack:
                val, cond = stack.pop()
                stack.append((not val, f"else of {cond}"))
            else:
                out.warnings.append(f"{where}: else without if")
            continue
        if key == "endif":
            if stack:
                stack.pop()
            else:
                out.warnings.append(f"{where}: endif without if")
            continue
        active = all(v for v, _ in stack)
        if not active:
            if key in RULE_TYPES or key in UNSUPPORTED_TYPES:
                name = rest.split(None, 1)[0] if rest else ""
                hiding = next(c for v, c in reversed(stack) if not v)
                out.inactive.setdefault(name, f"inside inactive block: {hiding}")
            continue
        _directive(key, rest, where, out)
    if stack:
        out.warnings.append(f"{source}: {len(stack)} unclosed if/ifplugin block(s)")
    return out


def _directive(key: str, rest: str, where: str, out: ParsedRules) -> None:
    if key in RULE_TYPES:
        bits = rest.split(None, 1)
        if len(bits) < 2:
            out.warnings.append(f"{where}: {key} without a definition")
            return
        name, spec = bits[0], bits[1].strip()
        if not _NAME_RE.match(name):
            out.warnings.append(f"{where}: bad rule name {name!r}")
            return
        out.unsupported.pop(name, None)
        out.rules[name] = _rule(key, name, spec, where)
    elif key in UNSUPPORTED_TYPES:
        name = rest.split(None, 1)[0] if rest else ""
        if name and name not in out.rules:
            out.unsupported[name] = f"unsupported rule type: {key}"
    elif key == "describe":
        bits = rest.split(None, 1)
        if bits:
            out.describe[bits[0]] = bits[1].strip() if len(bits) > 1 else ""
    elif key == "score":
        bits = rest.split()
        if len(bits) >= 2:
            try:
                values = [float(b) for b in bits[1:5]]
            except ValueError:
                out.warnings.append(f"{where}: bad score {' '.join(bits[1:5])!r}")
            else:
                out.scores[bits[0]] = values[0]
                sets = values if len(values) == 4 else [values[0]] * 4
                out.score_sets[bits[0]] = (sets[0], sets[1], sets[2], sets[3])
    elif key == "tflags":
        bits = rest.split()
        if bits:
            out.tflags[bits[0]] = tuple(bits[1:])
    elif key in ("replace_tag", "replace_pre", "replace_inter", "replace_post"):
        bits = rest.split(None, 1)
        if len(bits) == 2:
            getattr(out, key)[bits[0]] = bits[1].strip()
    elif key == "enlist_addrlist":
        m = _ADDRLIST_RE.match(rest)
        if m is None:
            out.warnings.append(f"{where}: bad enlist_addrlist {rest[:60]!r}")
        else:
            globs = [g.lower() for g in m.group(2).split()]
            out.addrlists.setdefault(m.group(1).upper(), []).extend(globs)
    elif key == "redirector_pattern":
        if rest.strip():
            out.redirector_patterns.append(rest.strip())
    elif key == "enlist_uri_host":
        m = _ADDRLIST_RE.match(rest)
        if m is None:
            out.warnings.append(f"{where}: bad enlist_uri_host {rest[:60]!r}")
        else:
            hosts = out.urihosts.setdefault(m.group(1).upper(), {})
            for h in m.group(2).lower().split():
                hosts[h.lstrip("!")] = not h.startswith("!")
    elif key == "delist_uri_host":
        m = _ADDRLIST_RE.match(rest)
        names, items = ([m.group(1).upper()], m.group(2)) if m else (list(out.urihosts), rest)
        for name in names:
            for h in items.lower().split():
                out.urihosts.get(name, {}).pop(h.lstrip("!"), None)
    elif key == "freemail_domains":
        for d in rest.split():
            if _FREEMAIL_DOMAIN_RE.match(d) is None:
                out.warnings.append(f"{where}: invalid freemail_domains entry {d[:60]!r}")
            elif "*" in d or "?" in d:
                out.freemail_wildcards.add(d.lower())
            else:
                out.freemail_domains.add(d.lower())
    elif key in ("freemail_welcomelist", "freemail_whitelist"):
        for e in rest.lower().split():
            if _FREEMAIL_WELCOME_RE.search(e) is None:
                out.warnings.append(f"{where}: invalid {key} entry {e[:60]!r}")
            else:
                out.freemail_welcomelist.add(e)
    elif key in ("fns_add_addrlist", "fns_remove_addrlist"):
        m = _FNS_ADDRLIST_RE.match(rest)
        if m is None:
            out.warnings.append(f"{where}: bad {key} {rest[:60]!r}")
        else:
            globs = out.fns_addrlists.setdefault(m.group(1).lower(), [])
            items = m.group(2).lower().split()
            if key == "fns_add_addrlist":
                globs.extend(g for g in items if g not in globs)
            else:
                globs[:] = [g for g in globs if g not in items]
    elif key == "fns_ignore_headers":
        out.fns_ignore_headers.update(rest.split())
    elif key == "util_rb_tld":
        out.valid_tlds.update(_ace(t) for t in rest.split())
    elif key in NETWORK_DIRECTIVES:
        words = out.networks.setdefault(key, [])
        for w in rest.split():
            try:
                NetSet.parse([w], loopback=False)
            except ValueError as exc:
                out.warnings.append(f"{where}: {key}: {exc}")
                continue
            words.append(w)
    elif key.startswith("clear_") and key[6:] in NETWORK_DIRECTIVES:
        out.networks.pop(key[6:], None)
    elif key in PLUGIN_SETTINGS or key in PLUGIN_SETTING_ALIASES:
        value = rest.split()[0] if rest else ""
        if _NUMERIC_RE.match(value) is None:
            out.warnings.append(f"{where}: {key} needs a number, not {value[:20]!r}")
        else:
            out.settings[PLUGIN_SETTING_ALIASES.get(key, key)] = float(value)
    elif key == "replace_rules":
        out.replace_rules.update(rest.split())
    elif key == "replace_start" and rest:
        out.replace_start = rest.strip()
    elif key == "replace_end" and rest:
        out.replace_end = rest.strip()
    # everything else: tolerated and ignored


def _ace(label: str) -> str:
    """A TLD as SpamAssassin keeps it: lower case, a UTF-8 label in its ASCII form."""
    try:
        return label.encode("latin-1").decode("utf-8").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return label.lower()


def _rule(kind: str, name: str, spec: str, where: str) -> RuleDef:
    from mailsift.classifier.rules.perlre import RegexError, split_delimited

    rd = RuleDef(name=name, kind=kind, source=where)
    if kind == "meta":
        rd.expr = spec
        return rd
    m = _EVAL_RE.match(spec)
    if m:
        rd.eval_name, rd.eval_args = m.group(1), m.group(2).strip()
        return rd
    if kind in ("header", "mimeheader"):  # mimeheader: the MIMEHeader plugin, every MIME part
        if kind == "header" and spec.startswith("exists:"):
            rd.exists = True
            rd.header = spec[len("exists:") :].strip()
            return rd
        if kind == "header" and re.match(r"^\w+eval:", spec):
            rd.error = f"unsupported header test {spec.split(':', 1)[0]}:"
            return rd
        hm = _HEADER_RE.match(spec)
        if not hm:
            rd.error = f"unparsable {kind} rule"
            return rd
        hdr, op, regex, unset = hm.groups()
        name_mods = hdr.split(":")
        rd.header, rd.modifiers = name_mods[0], tuple(m.lower() for m in name_mods[1:] if m)
        rd.negate = op == "!~"
        rd.if_unset = unset
        allowed = SUPPORTED_MODIFIERS if kind == "header" else frozenset({"raw"})
        bad = [m for m in rd.modifiers if m not in allowed]
        if bad:
            rd.error = f"{kind} modifier not supported: :{bad[0]}"
            return rd
        spec = regex
    try:
        rd.pattern, rd.flags = split_delimited(spec)
    except RegexError as exc:
        rd.error = str(exc)
    return rd


# ---- if-expressions ------------------------------------------------------------------------

_CAN_TRUE_PREFIXES = ("Mail::SpamAssassin::Conf::feature_", "Mail::SpamAssassin::Conf::compat_")
# a plugin's has_* capabilities that our evals implement (the rest answer false, so rules
# that need them stay behind their ``if can(...)``)
_HAS_IMPLEMENTED = frozenset({"Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length"})


def _eval_if(expr: str, out: ParsedRules, where: str) -> bool:
    from mailsift.classifier.rules.meta import MetaError, evaluate_constant

    def plugin(m: re.Match[str]) -> str:
        return " 1 " if m.group(1).strip() in AVAILABLE_PLUGINS else " 0 "

    def can(m: re.Match[str]) -> str:
        target = m.group(1).strip()
        if target.startswith(_CAN_TRUE_PREFIXES) or "perl_min_version" in target:
            return " 1 "
        plugin_name, _, _ = target.rpartition("::")
        if plugin_name not in AVAILABLE_PLUGINS:
            return " 0 "
        return " 1 " if "has_" not in target or target in _HAS_IMPLEMENTED else " 0 "

    s = re.sub(r"\bplugin\s*\(([^)]*)\)", plugin, expr)
    s = re.sub(r"\b(?:can|has)\s*\(([^)]*)\)", can, s)
    s = re.sub(r"\bversion\b", f" {SA_VERSION} ", s)
    try:
        return bool(evaluate_constant(s))
    except MetaError as exc:
        out.warnings.append(f"{where}: cannot evaluate 'if {expr}': {exc}; taken as false")
        return False


# ---- ReplaceTags ---------------------------------------------------------------------------


def apply_replace_tags(out: ParsedRules) -> None:
    """Expand ``<TAG>``, ``<inter X>``, ``<pre X>``, ``<post X>`` in the listed rules."""
    start, end = re.escape(out.replace_start), re.escape(out.replace_end)
    for name in out.replace_rules:
        rd = out.rules.get(name)
        if rd is None or rd.pattern is None:
            continue
        rd.pattern = expand_tags(rd.pattern, out, start, end)


def expand_tags(pattern: str, out: ParsedRules, start: str = "<", end: str = ">") -> str:
    re_s = pattern
    for _ in range(6):
        pre = post = inter = None
        m = re.search(f"{start}pre (.+?){end}", re_s)
        if m:
            pre = out.replace_pre.get(m.group(1))
            re_s = re_s[: m.start()] + re_s[m.end() :]
        m = re.search(f"{start}post (.+?){end}", re_s)
        if m:
            post = out.replace_post.get(m.group(1))
            re_s = re_s[: m.start()] + re_s[m.end() :]
        m = re.search(f"{start}inter (.+?){end}", re_s)
        if m:
            inter = out.replace_inter.get(m.group(1))
            re_s = re_s[: m.start()] + re_s[m.end() :]
        pieces = re.split(f"({start}[^<>]+{end})", re_s)
        while pieces and pieces[-1] == "":
            pieces.pop()  # Perl's split drops trailing empty fields
        again = False
        for i, piece in enumerate(pieces):
            tm = re.fullmatch(f"{start}(.+?){end}", piece)
            if tm:
                value = out.replace_tag.get(tm.group(1))
                if value:
                    again = again or bool(re.search(r"<[^>]+>", value))
                    piece = value
                pieces[i] = (pre or "") + piece + (post or "")
            elif piece == "" and inter:
                pieces[i] = inter
        re_s = "".join(pieces)
        if not again:
            break
    return re_s
