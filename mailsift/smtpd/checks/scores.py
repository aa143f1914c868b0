"""The scores table of every symbol the deterministic checks emit (rspamd's ``scores``).

Scores are SpamAssassin-scale points: positive is spammy, negative is hammy, 0 is purely
informational (the classifier still sees the symbol as a feature and learns its worth).
DNSBL symbols are built from the configured zones (``DNSBL_<ZONE>_<REASON>``) and take the
zone's weight; everything else is listed here, with a one-line description. The built-in
checks' symbols are written below; a check module of its own adds its symbols through its
registration (``registry.register_check(scores=...)``, which calls ``add_scores``).

The table holds the defaults. The ``[scores]`` block of the configuration overrides any of
them by symbol name (``RDNS_NONE = 2.0``); the check runner applies those overrides to the
symbols of each result (``score_overrides``, set on every check ``build_checks`` builds).
"""

from __future__ import annotations

from collections.abc import Mapping

from mailsift.verdict import Symbol

SCORES: dict[str, tuple[float, str]] = {
    # reverse DNS and HELO (rdns.py)
    "RDNS_FCRDNS": (0.0, "client PTR name resolves back to the client IP (FCrDNS)"),
    "RDNS_NONE": (1.0, "client IP has no PTR record"),
    "RDNS_NOT_FCRDNS": (1.0, "client PTR name does not resolve back to the client IP"),
    "RDNS_TEMPERROR": (0.0, "reverse DNS lookup failed temporarily"),
    "HELO_MISSING": (1.5, "no HELO/EHLO name given"),
    "HELO_BAD_SYNTAX": (1.5, "HELO name is neither a host name nor an address literal"),
    "HELO_BARE_IP": (1.5, "HELO is an IP address without [brackets]"),
    "HELO_NOT_FQDN": (1.0, "HELO name has no dot"),
    "HELO_IP_MISMATCH": (0.5, "HELO address literal is not the client IP"),
    "HELO_CLAIMS_US": (3.0, "HELO claims to be this server, a local domain or our IP"),
    "HELO_NORESOLVE": (1.0, "HELO name does not resolve"),
    "HELO_TEMPERROR": (0.0, "HELO lookup failed temporarily"),
    # DNSBL / URIBL (dnsbl.py); listings take the zone weight
    "DNSBL_BLOCKED_QUERY": (0.0, "a DNSBL refused our query (127.255.255.x): not a listing"),
    "DNSBL_TEMPERROR": (0.0, "a DNSBL lookup failed temporarily"),
    "URIBL_BLOCKED_QUERY": (0.0, "a domain list refused our query (127.255.255.x)"),
    "URIBL_TEMPERROR": (0.0, "a domain-list lookup failed temporarily"),
    # greylisting (greylist.py)
    "GREYLIST_DEFERRED": (0.0, "first attempt of a triplet: deferred"),
    "GREYLIST_EARLY": (0.0, "retried before the greylist delay passed"),
    "GREYLIST_PASSED": (0.0, "triplet retried after the delay: accepted"),
    "GREYLIST_KNOWN": (0.0, "triplet seen before: accepted"),
    "GREYLIST_CLIENT_WHITELISTED": (0.0, "client passed greylisting often enough"),
    "GREYLIST_SKIPPED": (0.0, "greylisting skipped (authenticated, relay network, whitelisted)"),
    "GREYLIST_TEMPERROR": (0.0, "greylist store unavailable: not greylisted"),
    # SPF (RFC 7208), DKIM (RFC 6376), ARC (RFC 8617), DMARC (RFC 7489)
    "SPF_PASS": (-0.1, "SPF pass for the MAIL FROM domain"),
    "SPF_FAIL": (2.0, "SPF fail for the MAIL FROM domain"),
    "SPF_SOFTFAIL": (1.0, "SPF softfail for the MAIL FROM domain"),
    "SPF_NEUTRAL": (0.3, "SPF neutral for the MAIL FROM domain"),
    "SPF_NONE": (0.3, "MAIL FROM domain publishes no SPF record"),
    "SPF_PERMERROR": (0.5, "MAIL FROM domain's SPF record is broken"),
    "SPF_TEMPERROR": (0.0, "SPF check of MAIL FROM failed temporarily"),
    "SPF_HELO_PASS": (-0.05, "SPF pass for the HELO name"),
    "SPF_HELO_FAIL": (1.0, "SPF fail for the HELO name"),
    "SPF_HELO_SOFTFAIL": (0.5, "SPF softfail for the HELO name"),
    "SPF_HELO_NEUTRAL": (0.1, "SPF neutral for the HELO name"),
    "SPF_HELO_NONE": (0.0, "HELO name publishes no SPF record"),
    "SPF_HELO_PERMERROR": (0.2, "HELO name's SPF record is broken"),
    "SPF_HELO_TEMPERROR": (0.0, "SPF check of HELO failed temporarily"),
    "DKIM_PASS": (-0.1, "a valid DKIM signature"),
    "DKIM_FAIL": (1.5, "a DKIM signature that does not verify"),
    "DKIM_NONE": (0.1, "no DKIM signature"),
    "DKIM_TEMPERROR": (0.0, "DKIM key lookup failed temporarily"),
    "DKIM_PERMERROR": (0.5, "DKIM signature or key unusable"),
    "ARC_PASS": (-0.05, "valid ARC chain"),
    "ARC_FAIL": (0.5, "broken ARC chain"),
    "ARC_NONE": (0.0, "no ARC headers"),
    "ARC_TEMPERROR": (0.0, "ARC key lookup failed temporarily"),
    "DMARC_PASS": (-0.2, "DMARC aligned pass"),
    "DMARC_FAIL_REJECT": (4.0, "DMARC fail, domain policy reject"),
    "DMARC_FAIL_QUARANTINE": (2.5, "DMARC fail, domain policy quarantine"),
    "DMARC_FAIL_NONE": (1.0, "DMARC fail, domain policy none"),
    "DMARC_NONE": (0.0, "From domain publishes no DMARC policy"),
    "DMARC_TEMPERROR": (0.0, "DMARC policy lookup failed temporarily"),
    "DMARC_PERMERROR": (0.2, "DMARC record or From header unusable"),
    # barring (barring.py)
    "BARRED_SENDER": (20.0, "sender address on the barring list"),
    "BARRED_RECIPIENT": (20.0, "recipient address on the barring list"),
    # black and white lists (lists.py)
    "WHITELIST_SENDER": (-20.0, "sender on the global white list"),
    "WHITELIST_IP": (-20.0, "client IP on the global white list"),
    "USER_WHITELIST": (-20.0, "sender on a recipient's white list"),
    "BLACKLIST_SENDER": (20.0, "sender on the global black list"),
    "BLACKLIST_IP": (20.0, "client IP on the global black list"),
    "USER_BLACKLIST": (20.0, "sender on a recipient's black list"),
    "LISTS_TEMPERROR": (0.0, "list store unavailable"),
    # antivirus (antivirus.py)
    "AV_CLEAN": (0.0, "clamd found nothing"),
    "AV_VIRUS": (50.0, "clamd found a virus"),
    "AV_TEMPERROR": (0.0, "clamd unavailable or timed out"),
}


def add_scores(table: Mapping[str, tuple[float, str]]) -> None:
    """Add a check's own symbols to the table; a name already there with another score or
    description is an error (two checks would disagree on one symbol)."""
    for name, entry in table.items():
        score, desc = float(entry[0]), str(entry[1])
        if name in SCORES and SCORES[name] != (score, desc):
            raise ValueError(f"symbol {name} is already in the scores table as {SCORES[name]}")
        SCORES[name] = (score, desc)


def table_symbols(*prefixes: str) -> tuple[str, ...]:
    """The symbols of the table whose names start with one of `prefixes`, in table order."""
    return tuple(name for name in SCORES if name.startswith(prefixes))


def symbol(name: str, description: str = "", *, score: float | None = None) -> Symbol:
    """A check symbol with its table score (or `score` for dynamic ones such as DNSBLs)."""
    base_score, base_desc = SCORES.get(name, (0.0, ""))
    return Symbol(
        name=name,
        score=base_score if score is None else score,
        description=description or base_desc,
        source="check",
    )
