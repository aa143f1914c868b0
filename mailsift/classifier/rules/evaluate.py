"""Evaluation: the compiled rules run on one message, stage by stage.

:class:`Evaluator` holds what evaluation needs from a built rule set: the scan targets, the
header requests grouped by the header they read, the ``mimeheader`` rules, the eval tests
and the meta function. The stages run in order: body, rawbody and full, uri (each URL on its
own), headers, eval tests; a :class:`~mailsift.budget.ScanBudget` spent after a stage
skips the rest, and the metas run last over what was reached.

A target is scanned with its Hyperscan database; a prefilter hit, a ``multiple`` count and
the patterns Hyperscan does not hold are decided by :func:`.targets.count` (PCRE2, else
``re``). A prefilter hit is confirmed from Hyperscan's first report minus the pattern's
longest possible match (:func:`.targets.reach`), since no match ends before that report. A
target other than ``body`` with at most :data:`DIRECT_MAX` patterns, all in PCRE2, runs
them one by one instead.

The ``mimeheader`` rules of one header give the same hits whenever a message's parts hold
the same values of it (most messages: one of a few dozen Content-Type values), so the hits of
each list of values are remembered (at most :data:`MIME_MEMO_ENTRIES` lists a header).

Header rules: a missing header reads as the ``[if-unset: ...]`` text or the empty string (so
``!~`` hits), as in SpamAssassin; ``exists:`` tests presence. Requests for one real header
first read as absent, and only the headers the message has are read. ``mimeheader`` rules
(the MIMEHeader plugin) test the first such header of every MIME part, the top level
included.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from mailsift.budget import ScanBudget
from mailsift.classifier.rules import evals as evals_mod
from mailsift.classifier.rules.relays import Trust
from mailsift.classifier.rules.targets import (
    MODE_HS,
    MODE_PREFILTER,
    Entry,
    HeaderTarget,
    Target,
    count,
    hs,
    native,
)
from mailsift.classifier.rules.views import MessageViews, header_request, to_bytes
from mailsift.message import ParsedMessage
from mailsift.uri_list import sa_uri_list

# the engine's modules log under one name, the one operators filter on
log = logging.getLogger("mailsift.classifier.rules.engine")

MAX_URLS = 200
# a target of at most this many patterns, all compiled by PCRE2, skips its Hyperscan
# database: on header values, a few PCRE2 searches cost less than one scan and its set-up
DIRECT_MAX = 4

# mimeheader hits remembered: per header, for lists of at most MIME_MEMO_VALUES values of at
# most MIME_MEMO_BYTES bytes each (so at most 640 kB of values a header), started afresh when
# full
MIME_MEMO_ENTRIES = 1024
MIME_MEMO_VALUES = 4
MIME_MEMO_BYTES = 160

# (eval function, its arguments, the rules it answers)
EvalGroup = tuple[evals_mod.EvalFn, tuple[Any, ...], list[int]]
# mimeheader rule: (entry, lower-cased header name, raw, if-unset text)
MimeRule = tuple[Entry, str, bool, bytes]


class Evaluator:
    """The evaluation plan of a rule set: per-rule values of one message at a time.

    Built once the targets are compiled (or loaded from the cache): compiles with PCRE2
    what it will decide (when ``use_pcre``) and groups the header requests. Scratch space
    for Hyperscan is per thread, so one evaluator serves every thread.
    """

    def __init__(
        self,
        *,
        body: Target,
        rawbody: Target,
        full: Target,
        uri: Target,
        header_targets: list[Target],
        requests: Iterable[HeaderTarget],
        mime: list[MimeRule],
        eval_groups: list[EvalGroup],
        meta_fn: Callable[[list[int]], None],
        names: list[str],
        max_scan_bytes: int,
        use_pcre: bool,
    ) -> None:
        self._body = body
        self._rawbody = rawbody
        self._full = full
        self._uri = uri
        self._eval_groups = eval_groups
        self._meta_fn = meta_fn
        self._names = names
        self._max_scan_bytes = max_scan_bytes
        # the configured trusted / internal networks the relay rules split by (None: trust
        # inferred, as SpamAssassin does without trusted_networks)
        self.trust: Trust | None = None
        # the configuration's redirector_pattern lines (uri_list.uri_list_canonicalize)
        self.redirectors: tuple[re.Pattern[bytes], ...] = ()
        self._local = threading.local()
        # requests for one real header, by its name (most name a header a message lacks:
        # their if-unset values are set up front, and only present headers are read)
        self._by_header: dict[str, list[HeaderTarget]] = {}
        self._special_requests: list[HeaderTarget] = []
        self._absent_hits: list[tuple[int, int]] = []
        for ht in requests:
            ht.unset_hits = []
            for e in ht.target.entries if ht.target is not None else ():
                r = e.unset_result if e.unset_result is not None else e.empty_result
                if r:
                    ht.unset_hits.append((e.rule, r))
            if ht.plain_name is None:
                self._special_requests.append(ht)
            else:
                self._by_header.setdefault(ht.plain_name, []).append(ht)
                self._absent_hits.extend(ht.unset_hits)
        self._header_set = frozenset(self._by_header)
        if use_pcre:
            # PCRE2 compiles (and JITs) only what it will run: Hyperscan answers its exact
            # patterns alone (a JIT copy of every pattern would cost 6 MB a process for
            # nothing)
            for t in (body, rawbody, full, uri, *header_targets):
                small = 0 < len(t.entries) <= DIRECT_MAX and t is not body
                for e in t.entries:
                    if small or e.mode != MODE_HS or e.multiple:
                        e.pc = native(e)
                t.direct = small and all(e.pc is not None for e in t.entries)
            for e, *_ in mime:
                e.pc = native(e)
        # mimeheader rules grouped by the header they read: each group's per-part values are
        # looked up once a message, not once a rule; whether a rule matches its if-unset
        # text (what an absent header reads as) is decided once, here, by the matcher that
        # would decide it on a message
        self._mime_groups: dict[tuple[str, bool], list[tuple[Entry, bool]]] = {}
        for e, lname, raw, unset in mime:
            self._mime_groups.setdefault((lname, raw), []).append((e, bool(count(e, unset))))
        # each group's hits by the values of its header on a message's parts (see the module
        # doc); shared by every thread: a lookup and a store are single dict operations, and
        # two threads storing the hits of one list store the same hits
        self._mime_memo: dict[tuple[str, bool], dict[tuple[bytes | None, ...], list[int]]] = {
            key: {} for key in self._mime_groups
        }

    def hit_values(self, pm: ParsedMessage, budget: ScanBudget | None = None) -> list[int]:
        """Raw per-rule values (index as in the rule set's names), metas included."""
        h = [0] * len(self._names)
        self._run_stages(MessageViews(pm, self._max_scan_bytes, self.trust), h, budget)
        self._meta_fn(h)
        return h

    def _scratch(self, t: Target) -> Any:
        cache: dict[int, Any] | None = getattr(self._local, "scratch", None)
        if cache is None:
            cache = {}
            self._local.scratch = cache
        s = cache.get(id(t))
        if s is None:
            s = hs.Scratch(t.db)
            cache[id(t)] = s
        return s

    def _scan(self, t: Target, data: bytes, h: list[int] | dict[int, int]) -> None:
        """Scan ``data`` with a target's database; confirm and count with PCRE2 (or re)."""
        entries = t.entries
        if t.direct:
            for e in entries:
                n = count(e, data)
                if e.negate:
                    if not n:
                        h[e.rule] = 1
                elif n:
                    h[e.rule] = max(h[e.rule], n)
            return
        matched: set[int] = set()
        if t.db is not None:
            found: list[tuple[int, int]] = []
            t.db.scan(data, _on_match, context=found, scratch=self._scratch(t))
            for hid, end in found:
                ei = t.hs_ids[hid]
                e = entries[ei]
                if e.mode == MODE_PREFILTER or e.multiple:
                    # no match of the pattern ends before hyperscan's first report (exact
                    # or a superset): a bounded pattern cannot start earlier than its reach
                    n = count(e, data, end - e.reach if e.reach >= 0 else 0)
                    if n:
                        matched.add(ei)
                        if not e.negate:
                            h[e.rule] = max(h[e.rule], n)
                else:
                    matched.add(ei)
                    if not e.negate:
                        h[e.rule] = 1
        for ei in t.re_only:
            e = entries[ei]
            n = count(e, data)
            if n:
                matched.add(ei)
                if not e.negate:
                    h[e.rule] = max(h[e.rule], n)
        for ei in t.negated:
            if ei not in matched:
                h[entries[ei].rule] = 1

    def _scan_uris(self, views: MessageViews, h: list[int]) -> None:
        t = self._uri
        if not t.entries:
            return
        any_url = False
        # per-URI scans over SpamAssassin's URI list; a negated uri rule hits when some URI
        # does not match it
        hits: dict[int, int] = collections.defaultdict(int)  # the few uri rules that hit
        for uri in sa_uri_list(views.pm, self.redirectors)[:MAX_URLS]:
            any_url = True
            self._scan(t, to_bytes(uri), hits)
        if any_url:
            for i, v in hits.items():
                if v:
                    h[i] = max(h[i], v)

    def _request(self, views: MessageViews, ht: HeaderTarget, h: list[int]) -> None:
        """One header request: its exists: rules, then its regex rules on the value (or
        their if-unset results when the message gives no value)."""
        value = header_request(views, ht.name, ht.modifiers)
        for ri in ht.exists_rules:
            h[ri] = 1 if value is not None else 0
        if ht.target is None:
            return
        if value is None:
            for ri, r in ht.unset_hits:
                h[ri] = r
        else:
            self._scan(ht.target, value, h)

    def _run_stages(self, views: MessageViews, h: list[int], budget: ScanBudget | None) -> None:
        if self._body.entries:
            self._scan(self._body, views.body, h)
        if budget is not None and budget.spent("body rules"):
            return
        if self._rawbody.entries:
            self._scan(self._rawbody, views.rawbody, h)
        if self._full.entries:
            self._scan(self._full, views.full, h)
        if budget is not None and budget.spent("rawbody and full rules"):
            return
        self._scan_uris(views, h)
        if budget is not None and budget.spent("uri rules"):
            return
        # every request for a real header first reads as absent (its exists: rules 0, its
        # rules their if-unset value); then the headers the message has are read
        for ri, r in self._absent_hits:
            h[ri] = r
        for name in self._header_set.intersection(views.header_names()):
            for ht in self._by_header[name]:
                if ht.target is None:  # exists: tests only: its text is not needed
                    for ri in ht.exists_rules:
                        h[ri] = 1
                    continue
                for ri, _ in ht.unset_hits:
                    h[ri] = 0
                self._request(views, ht, h)
        for ht in self._special_requests:
            self._request(views, ht, h)
        for key, group in self._mime_groups.items():
            values = views.part_header_values(*key)
            memo = self._mime_memo[key]
            vkey = tuple(values)
            rules = memo.get(vkey)
            if rules is None:
                rules = _mime_hits(group, values)
                if len(values) <= MIME_MEMO_VALUES and all(
                    v is None or len(v) <= MIME_MEMO_BYTES for v in values
                ):
                    if len(memo) >= MIME_MEMO_ENTRIES:
                        memo.clear()
                    memo[vkey] = rules
            for ri in rules:
                h[ri] = 1
        if budget is not None and budget.spent("header rules"):
            return
        for fn, args, rule_ids in self._eval_groups:  # the same test under two names runs once
            try:
                result = int(fn(views, args))
            except Exception as exc:  # an eval bug must not lose the message
                log.warning("eval rule %s failed: %s", self._names[rule_ids[0]], exc)
                continue
            for ri in rule_ids:
                h[ri] = result


def _mime_hits(group: list[tuple[Entry, bool]], values: list[bytes | None]) -> list[int]:
    """The rules of one ``mimeheader`` group that hit, given the header's first value in each
    MIME part (None: absent). SpamAssassin's MIMEHeader: the top level included, an absent
    header reads as its if-unset text (else ""); a hit when some part matches (!~: when
    none does)."""
    absent = None in values
    # a value that several parts share is matched once
    present = [v for v in dict.fromkeys(values) if v is not None]
    return [
        e.rule
        for e, unset_found in group
        if ((absent and unset_found) or any(count(e, v) for v in present)) != e.negate
    ]


def _on_match(hid: int, start: int, end: int, flags: int, ctx: list[tuple[int, int]]) -> None:
    ctx.append((hid, end))
