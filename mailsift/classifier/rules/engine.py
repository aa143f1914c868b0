"""The rule engine: compile parsed rules once, evaluate them fast on every message.

Every regex rule belongs to a *scan target*: ``body``, ``rawbody``, ``full``, ``uri`` (each
URL on its own) and one target per header request (name plus modifiers, e.g.
``From:addr``); :mod:`.views` builds what each target reads. All patterns of a target go
into one Hyperscan database; patterns Hyperscan takes exactly answer directly, the others
are confirmed or run alone. Those decisions are PCRE2's with its JIT (the native ``_pcre``
module: Perl's semantics, about 6x faster than ``re`` here, with a bounded backtracking
budget), or Python ``re``'s where the module is not built or ``rules.pcre`` is off; a match
that exhausts PCRE2's budget is decided by ``re``. Every engine scans the same UTF-8 bytes
with the same translated pattern (see :mod:`.perlre`), and all give the same hits on every
corpus message; the ``re`` pattern is auto-possessified as PCRE does
(:func:`.perlre.possessive`).

The modules: :mod:`.targets` (targets, their compiled patterns, the matchers),
:mod:`.hscompile` (the Hyperscan compiler, sandboxed in a child process), :mod:`.dbcache`
(the compiled databases cached on disk, keyed by every pattern), :mod:`.evaluate` (running
the stages on a message), and here :class:`RuleSet`, which builds all of it from parsed
``.cf`` rules and answers with :class:`mailsift.verdict.Symbol` hits.

Meta rules run last, as one generated Python function in dependency order. Rules scored 0
are disabled (not reported), but still computed when a meta needs them; with
``prune_unused`` (the configured default) rules that no reported rule depends on are not
compiled at all. ``tflags multiple`` rules count their matches (up to ``maxhits``) and metas
see the count.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailsift.budget import ScanBudget
from mailsift.classifier.rules import dbcache
from mailsift.classifier.rules import evals as evals_mod
from mailsift.classifier.rules import meta as meta_mod
from mailsift.classifier.rules.evaluate import EvalGroup, Evaluator, MimeRule
from mailsift.classifier.rules.hscompile import Compiler, compile_target, predict_flags
from mailsift.classifier.rules.parser import (
    ParsedRules,
    RuleDef,
    parse_files,
    parse_string,
    rule_files,
)
from mailsift.classifier.rules.perlre import (
    RegexError,
    compile_python,
    parse_tree,
    pcre_agrees,
    possessive,
    split_delimited,
    translate,
)
from mailsift.classifier.rules.relays import PSEUDO_HEADERS, Trust
from mailsift.classifier.rules.targets import (
    HS_VERSION,
    MODE_HS,
    MODE_PREFILTER,
    MODE_RE,
    PCRE_VERSION,
    Entry,
    HeaderTarget,
    Target,
    _pcre,
    hs,
    match_re,
    reach,
)
from mailsift.classifier.rules.views import RELAY_RANGE_HEADERS, to_bytes
from mailsift.message import ParsedMessage
from mailsift.verdict import Symbol

__all__ = ["HS_VERSION", "PCRE_VERSION", "CompileStats", "RuleSet"]

DEFAULT_SCORE = 1.0
MAX_MULTIPLE = 1000


@dataclass(frozen=True, slots=True)
class CompileStats:
    by_type: dict[str, int]
    hyperscan: int  # regex rules answered by hyperscan exactly
    prefilter: int  # hyperscan prefilter + re confirmation
    re_only: int
    evals: int
    metas: int
    disabled: int
    cached: bool


class RuleSet:
    """Compiled rules. Build with :meth:`load` (files) or :meth:`from_parsed`."""

    def __init__(
        self,
        parsed: ParsedRules,
        *,
        cache_dir: Path | str | None = None,
        use_hyperscan: bool = True,
        max_scan_bytes: int = 262144,
        exclude: Iterable[str] = (),
        prune_unused: bool = False,
        use_pcre: bool = True,
    ) -> None:
        self._parsed = parsed
        self._trust_setting: Trust | None = None  # set through ``trust``; else the .cf's
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.use_hyperscan = bool(use_hyperscan and hs is not None)
        self.use_pcre = bool(use_pcre and _pcre is not None)
        self.max_scan_bytes = max_scan_bytes
        self.exclude = tuple(exclude)
        self.prune_unused = prune_unused
        self._build()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        paths: Iterable[Path | str],
        *,
        cache_dir: Path | str | None = None,
        use_hyperscan: bool = True,
        max_scan_bytes: int = 262144,
        exclude: Iterable[str] = (),
        prune_unused: bool = False,
        use_pcre: bool = True,
    ) -> RuleSet:
        """Read ``.cf`` files (directories expand to their sorted ``*.cf``), in order.

        ``exclude``: rule-name globs not to compile (reported as skipped), e.g. stock rules
        whose regexes are too slow for Python ``re``. ``prune_unused``: do not compile rules
        that can never change a reported hit (see :meth:`_unused`). ``use_pcre``: decide
        with the native PCRE2 matcher where it is built (else Python ``re``).
        """
        parsed = parse_files(rule_files(paths))
        return cls(
            parsed,
            cache_dir=cache_dir,
            use_hyperscan=use_hyperscan,
            max_scan_bytes=max_scan_bytes,
            exclude=exclude,
            prune_unused=prune_unused,
            use_pcre=use_pcre,
        )

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        cache_dir: Path | str | None = None,
        use_hyperscan: bool = True,
        max_scan_bytes: int = 262144,
        use_pcre: bool = True,
    ) -> RuleSet:
        """Rules given as ``.cf`` text (as a UTF-8 file would hold it)."""
        as_file = text.encode("utf-8", "surrogateescape").decode("latin-1")
        return cls(
            parse_string(as_file),
            cache_dir=cache_dir,
            use_hyperscan=use_hyperscan,
            max_scan_bytes=max_scan_bytes,
            use_pcre=use_pcre,
        )

    def variant(
        self, *, use_hyperscan: bool | None = None, use_pcre: bool | None = None
    ) -> RuleSet:
        """The same rules with another engine choice (benchmarks, differential tests);
        an unnamed choice stays as it is."""
        out = RuleSet(
            self._parsed,
            cache_dir=self.cache_dir,
            use_hyperscan=self.use_hyperscan if use_hyperscan is None else use_hyperscan,
            max_scan_bytes=self.max_scan_bytes,
            exclude=self.exclude,
            prune_unused=self.prune_unused,
            use_pcre=self.use_pcre if use_pcre is None else use_pcre,
        )
        if self._trust_setting is not None:
            out.trust = self._trust_setting
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {
            "parsed": self._parsed,
            "cache_dir": self.cache_dir,
            "use_hyperscan": self.use_hyperscan,
            "use_pcre": self.use_pcre,
            "max_scan_bytes": self.max_scan_bytes,
            "exclude": self.exclude,
            "prune_unused": self.prune_unused,
            "trust": self._trust_setting,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._parsed = state["parsed"]
        self.cache_dir = state["cache_dir"]
        self.use_hyperscan = bool(state["use_hyperscan"] and hs is not None)
        self.use_pcre = bool(state.get("use_pcre", True) and _pcre is not None)
        self.max_scan_bytes = state["max_scan_bytes"]
        self.exclude = tuple(state.get("exclude", ()))
        self.prune_unused = bool(state.get("prune_unused", False))
        self._trust_setting = state.get("trust")
        self._build()

    def _build(self) -> None:
        p = self._parsed
        self.skipped: list[tuple[str, str]] = []
        self.warnings: list[str] = list(p.warnings)
        # redirector_pattern lines, as Python patterns (possessive where PCRE would be, so
        # none backtracks without end on a long URI)
        redirectors: list[re.Pattern[bytes]] = []
        for spec in p.redirector_patterns:
            try:
                pat, flags = split_delimited(spec)
                redirectors.append(possessive(compile_python(translate(pat, flags))))
            except RegexError as exc:
                self.warnings.append(f"redirector_pattern {spec[:60]!r}: {exc}")
        self._redirectors = tuple(redirectors)
        names: list[str] = []
        kinds: list[str] = []
        self._index: dict[str, int] = {}
        usable: dict[str, RuleDef] = {}
        for name, rd in p.rules.items():
            reason = rd.error
            if reason is None and any(fnmatch.fnmatchcase(name, g) for g in self.exclude):
                reason = "excluded by configuration"
            if reason is None and rd.eval_name is not None and rd.eval_name not in evals_mod.EVALS:
                reason = f"eval test not implemented: {rd.eval_name}"
            if (
                reason is None
                and rd.kind == "header"
                and rd.header is not None
                and rd.header.lower().startswith(("x-spam-relays-", "all-"))
                and rd.header.lower() not in PSEUDO_HEADERS
                and rd.header not in RELAY_RANGE_HEADERS
            ):
                reason = f"pseudo-header not available: {rd.header}"
            if reason is not None:
                self.skipped.append((name, reason))
                continue
            usable[name] = rd
        if self.prune_unused:
            for name in self._unused(usable):
                del usable[name]
                self.skipped.append((name, "unused: score 0 or a sub-rule no scoring rule needs"))
        for name, reason in p.unsupported.items():
            if name not in p.rules:
                self.skipped.append((name, reason))
        for name, reason in p.inactive.items():
            self.skipped.append((name, reason))

        self._body = Target("body")
        self._rawbody = Target("rawbody")
        self._full = Target("full")
        self._uri = Target("uri")
        # one target (database) per header request, in order of first use
        self._header_targets: list[Target] = []
        self._headers: dict[tuple[str, tuple[str, ...]], HeaderTarget] = {}
        self._evals: list[tuple[int, evals_mod.EvalFn, tuple[Any, ...]]] = []
        # mimeheader rules (few, short values): (entry, header name, raw, if-unset text)
        self._mime: list[MimeRule] = []
        metas: dict[str, RuleDef] = {}

        def add(name: str, kind: str) -> int:
            idx = len(names)
            names.append(name)
            kinds.append(kind)
            self._index[name] = idx
            return idx

        for name, rd in usable.items():
            if rd.kind == "meta":
                metas[name] = rd
                continue
            if rd.eval_name is not None:
                try:
                    args = evals_mod.parse_args(rd.eval_args)
                    evals_mod.check_args(rd.eval_name, args)
                    if rd.eval_name in evals_mod.ADDRLIST_EVALS:
                        args = evals_mod.addrlist_args(args, p.addrlists)
                    elif rd.eval_name in evals_mod.URIHOST_EVALS:
                        args = evals_mod.urihost_args(rd.eval_name, args, p.urihosts)
                    elif rd.eval_name in evals_mod.FREEMAIL_EVALS:
                        args = evals_mod.freemail_args(rd.eval_name, args, p)
                    elif rd.eval_name in evals_mod.FROMNAME_EVALS:
                        args = evals_mod.fromname_args(rd.eval_name, args, p)
                    elif rd.eval_name in evals_mod.IMAGEINFO_EVALS:
                        args = evals_mod.imageinfo_args(rd.eval_name, args, rd.kind)
                except ValueError as exc:
                    self.skipped.append((name, str(exc)))
                    continue
                self._evals.append((add(name, rd.kind), evals_mod.EVALS[rd.eval_name], args))
                continue
            if rd.kind == "header" and rd.exists:
                assert rd.header is not None
                ht = self._header_target(rd.header, ())
                ht.exists_rules.append(add(name, "header"))
                continue
            entry_or_reason = self._entry(rd)
            if isinstance(entry_or_reason, str):
                self.skipped.append((name, entry_or_reason))
                continue
            entry = entry_or_reason
            entry.rule = add(name, rd.kind)
            if rd.kind == "mimeheader":
                assert rd.header is not None
                unset = to_bytes(rd.if_unset) if rd.if_unset is not None else b""
                self._mime.append((entry, rd.header.lower(), "raw" in rd.modifiers, unset))
            elif rd.kind == "header":
                assert rd.header is not None
                ht = self._header_target(rd.header, rd.modifiers)
                self._header_db(ht).entries.append(entry)
            else:
                self._target_for(rd).entries.append(entry)

        # metas: resolve names, order by dependencies, drop cycles
        self._compile_metas(metas, names, kinds, add)
        self.names: list[str] = names
        self._kinds = kinds
        groups: dict[tuple[Any, ...], list[int]] = {}
        for ri, fn, args in self._evals:
            groups.setdefault((fn, args), []).append(ri)
        self._eval_groups: list[EvalGroup] = [(fn, args, ris) for (fn, args), ris in groups.items()]
        self._scores = [self._score(n) for n in names]
        self._describe = [p.describe.get(n, "") for n in names]
        # Symbols are immutable: one per rule, handed out on every hit
        self._symbols = [
            Symbol(n, sc, d, "rule")
            for n, sc, d in zip(names, self._scores, self._describe, strict=True)
        ]
        # "score NAME 0" disables a rule: computed for metas, never reported
        disabled = [self._parsed.scores.get(n) == 0.0 for n in names]
        self._disabled = disabled
        self._report = [
            not d and not n.startswith("__") for n, d in zip(names, disabled, strict=True)
        ]
        self._report_sub = [not d for d in disabled]
        self._compile_targets()
        self.skipped.sort()

    def _unused(self, usable: dict[str, RuleDef]) -> set[str]:
        """Rules that cannot change any reported hit: disabled (``score NAME 0``) or ``__``
        sub-rules that no reported rule depends on, through any chain of metas. SpamAssassin
        skips them too; the stock set has hundreds (the FUZZY_* obfuscation rules, scored 0,
        alone cost a third of the regex work)."""
        scores = self._parsed.scores
        known = list(usable)
        wanted = [n for n in usable if not n.startswith("__") and scores.get(n) != 0.0]
        needed: set[str] = set()
        while wanted:
            n = wanted.pop()
            if n in needed:
                continue
            needed.add(n)
            rd = usable[n]
            if rd.kind == "meta" and rd.expr is not None:
                try:
                    deps = meta_mod.names_in(rd.expr, known)
                except meta_mod.MetaError:
                    continue  # reported as a bad meta expression later
                wanted.extend(d for d in deps if d in usable and d not in needed)
        return set(usable) - needed

    def _score(self, name: str) -> float:
        p = self._parsed
        if name in p.scores:
            return p.scores[name]
        if name.startswith("__"):
            return 0.0
        return -DEFAULT_SCORE if "nice" in p.tflags.get(name, ()) else DEFAULT_SCORE

    def _multiple(self, name: str) -> int:
        flags = self._parsed.tflags.get(name, ())
        if "multiple" not in flags:
            return 0
        for f in flags:
            if f.startswith("maxhits="):
                try:
                    return max(1, min(int(f.split("=", 1)[1]), MAX_MULTIPLE))
                except ValueError:
                    pass
        return MAX_MULTIPLE

    def _entry(self, rd: RuleDef) -> Entry | str:
        assert rd.pattern is not None
        try:
            t = translate(rd.pattern, rd.flags, multiline=rd.kind in ("body", "rawbody"))
            py = compile_python(t)
        except RegexError as exc:
            msg = str(exc)
            return msg if msg.startswith(("regex error", "unsupported")) else f"regex error: {msg}"
        except RecursionError:
            return "regex error: too deeply nested"
        flags = 0
        if hs is not None:
            flags = (
                (hs.HS_FLAG_CASELESS if t.caseless else 0)
                | (hs.HS_FLAG_MULTILINE if t.multiline else 0)
                | (hs.HS_FLAG_DOTALL if t.dotall else 0)
            )
        entry = Entry(
            rule=-1,
            py=py,
            hs_pattern=t.hs,
            hs_flags=flags,
            negate=rd.negate,
            multiple=self._multiple(rd.name),
        )
        entry.predicted = predict_flags(t.hs, flags, py)
        tree = parse_tree(py)
        entry.reach = reach(py, tree)
        entry.pcre_ok = tree is not None and pcre_agrees(py, tree)
        # the same matches, without the backtracking that can only fail (rewrites the tree)
        entry.py = possessive(py, tree)
        if rd.kind == "header":
            entry.empty_result = match_re(entry, b"")
            if rd.if_unset is not None:
                entry.unset_result = match_re(entry, to_bytes(rd.if_unset))
        return entry

    @staticmethod
    def _header_key(name: str) -> str:
        return name if name in ("ALL", "MESSAGEID") or name in RELAY_RANGE_HEADERS else name.lower()

    def _header_target(self, name: str, modifiers: tuple[str, ...]) -> HeaderTarget:
        key = (self._header_key(name), tuple(sorted(modifiers)))
        ht = self._headers.get(key)
        if ht is None:
            ht = HeaderTarget(name, key[1])
            special = (
                name in ("ALL", "MESSAGEID")
                or name in RELAY_RANGE_HEADERS
                or name.lower() in ("tocc", "envelopefrom")
                or name.lower() in PSEUDO_HEADERS
            )
            ht.plain_name = None if special else name.lower()
            self._headers[key] = ht
        return ht

    def _header_db(self, ht: HeaderTarget) -> Target:
        """The request's own database: one shared by all requests reports every pattern
        that matches a value, whoever it belongs to, and sorting those out cost more than
        the scan (measured: one database per request, 0.1 ms a message less)."""
        if ht.target is None:
            mods = ":".join(ht.modifiers)
            ht.target = Target(f"header:{self._header_key(ht.name)}:{mods}")
            self._header_targets.append(ht.target)
        return ht.target

    def _target_for(self, rd: RuleDef) -> Target:
        return {
            "body": self._body,
            "rawbody": self._rawbody,
            "full": self._full,
            "uri": self._uri,
        }[rd.kind]

    def _compile_metas(
        self,
        metas: dict[str, RuleDef],
        names: list[str],
        kinds: list[str],
        add: Callable[[str, str], int],
    ) -> None:
        all_known = list(self._index) + list(metas)
        deps: dict[str, set[str]] = {}
        for name, rd in metas.items():
            assert rd.expr is not None
            try:
                meta_mod.to_python(rd.expr, lambda _n: "0", lambda _g: [])  # validate syntax
                deps[name] = meta_mod.names_in(rd.expr, all_known) & set(metas)
            except meta_mod.MetaError as exc:
                self.skipped.append((name, f"bad meta expression: {exc}"))
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(n: str, path: list[str]) -> bool:
            if state.get(n) == 2:
                return True
            if state.get(n) == 1:
                return False
            state[n] = 1
            ok = True
            for d in sorted(deps.get(n, ())):
                if d in deps and not visit(d, [*path, n]):
                    ok = False
            state[n] = 2
            if ok:
                order.append(n)
            else:
                self.skipped.append((n, "meta dependency cycle"))
            return ok

        for n in deps:
            visit(n, [])
        for n in order:
            add(n, "meta")
        statements: list[tuple[int, str]] = []
        known = list(self._index)

        def resolve(ref: str) -> str:
            i = self._index.get(ref)
            return f"h[{i}]" if i is not None else "0"

        for n in order:
            expr = metas[n].expr
            assert expr is not None
            src = meta_mod.to_python(expr, resolve, lambda g: sorted(fnmatch.filter(known, g)))
            statements.append((self._index[n], src))
        self._meta_src = statements
        self._meta_fn = meta_mod.build_function(statements)

    # -- compiled databases ---------------------------------------------------------------
    def _all_targets(self) -> list[Target]:
        return [self._body, self._rawbody, self._full, self._uri, *self._header_targets]

    def _compile_targets(self) -> None:
        """Give every target its Hyperscan database (from the cache, else compiled in the
        sandbox and cached), then plan the evaluation."""
        try:
            self._compile_all()
        finally:
            self._evaluator = Evaluator(
                body=self._body,
                rawbody=self._rawbody,
                full=self._full,
                uri=self._uri,
                header_targets=self._header_targets,
                requests=self._headers.values(),
                mime=self._mime,
                eval_groups=self._eval_groups,
                meta_fn=self._meta_fn,
                names=self.names,
                max_scan_bytes=self.max_scan_bytes,
                use_pcre=self.use_pcre,
            )
            self._evaluator.trust = self._trust_setting or self.cf_trust()
            self._evaluator.redirectors = self._redirectors

    def _compile_all(self) -> None:
        targets = [t for t in self._all_targets() if t.entries]
        self.cached = False
        for t in targets:
            t.negated = [i for i, e in enumerate(t.entries) if e.negate]
        if not self.use_hyperscan:
            for t in targets:
                t.re_only = list(range(len(t.entries)))
                for e in t.entries:
                    e.mode = MODE_RE
            return
        key = dbcache.cache_key(targets)
        if self.cache_dir is not None and dbcache.load(self.cache_dir, key, targets, self.warnings):
            self.cached = True
            return
        compiler = Compiler()
        try:
            for t in targets:
                compile_target(t, compiler)
        finally:
            compiler.close()
        if self.cache_dir is not None and not compiler.broken:
            try:
                dbcache.save(self.cache_dir, key, targets)
            except OSError as exc:
                self.warnings.append(f"cannot write rules cache: {exc}")

    # -- evaluation ---------------------------------------------------------------------
    @property
    def trust(self) -> Trust | None:
        """The trusted / internal / MSA networks the relay rules split the Received chain
        by (:class:`~mailsift.classifier.rules.relays.Trust`): the ones set here, else the
        rule files' ``trusted_networks`` / ``internal_networks`` / ``msa_networks``
        (:meth:`cf_trust`); None: trust is inferred, as SpamAssassin does without them."""
        return self._evaluator.trust

    @trust.setter
    def trust(self, trust: Trust | None) -> None:
        self._trust_setting = trust
        self._evaluator.trust = trust or self.cf_trust()

    def cf_trust(self) -> Trust | None:
        """The networks the rule files configure (a site's local.cf), None when neither
        ``trusted_networks`` nor ``internal_networks`` is set there."""
        n = self._parsed.networks
        return Trust.configured(
            n.get("trusted_networks"), n.get("internal_networks"), n.get("msa_networks", [])
        )

    def hit_values(self, pm: ParsedMessage, budget: ScanBudget | None = None) -> list[int]:
        """Raw per-rule values (index as in :attr:`names`), metas included.

        With a ``budget``, the stages after the one that found it spent are skipped (their
        rules read as not hit) and the metas are computed over what was reached."""
        return self._evaluator.hit_values(pm, budget)

    def evaluate(
        self,
        pm: ParsedMessage,
        *,
        include_subrules: bool = False,
        budget: ScanBudget | None = None,
    ) -> list[Symbol]:
        """Rules that hit, as Symbols (source "rule"), in rule order (see ``hit_values``
        for ``budget``)."""
        h = self.hit_values(pm, budget)
        report = self._report_sub if include_subrules else self._report
        symbols = self._symbols
        return [
            symbols[i]
            for i in itertools.compress(range(len(h)), h)  # the few hits, at C speed
            if report[i]
        ]

    # -- introspection ------------------------------------------------------------------
    def rule_kind(self, name: str) -> str:
        return self._kinds[self._index[name]]

    def score_of(self, name: str) -> float:
        return self._scores[self._index[name]]

    def score_set(self, score_set: int) -> dict[str, float]:
        """Every reported rule's score in one of SpamAssassin's four score sets (2: Bayes on,
        network tests off, the set a local SpamAssassin with Bayes uses); rules without a
        ``score`` line get the default score, as in SpamAssassin."""
        sets = self._parsed.score_sets
        return {
            n: (sets[n][score_set] if n in sets else sc)
            for n, sc, rep in zip(self.names, self._scores, self._report, strict=True)
            if rep
        }

    def sources(self) -> dict[str, str]:
        """The file each reported rule is defined in (``score_set``'s rules)."""
        defs = self._parsed.rules
        out: dict[str, str] = {}
        for n, rep in zip(self.names, self._report, strict=True):
            rd = defs.get(n)
            if rep and rd is not None:
                out[n] = rd.source.rsplit(":", 1)[0]
        return out

    def description(self, name: str) -> str:
        return self._describe[self._index[name]]

    def regex_mode(self, name: str) -> str | None:
        """``hs``, ``prefilter`` or ``re`` for a regex rule, None for others."""
        idx = self._index.get(name)
        for t in self._all_targets():
            for e in t.entries:
                if e.rule == idx:
                    return e.mode
        return None

    def stats(self) -> CompileStats:
        by_type: dict[str, int] = {}
        for k in self._kinds:
            by_type[k] = by_type.get(k, 0) + 1
        modes = [e.mode for t in self._all_targets() for e in t.entries]
        return CompileStats(
            by_type=by_type,
            hyperscan=modes.count(MODE_HS),
            prefilter=modes.count(MODE_PREFILTER),
            re_only=modes.count(MODE_RE),
            evals=len(self._evals),
            metas=len(self._meta_src),
            disabled=sum(self._disabled),
            cached=self.cached,
        )

    def __len__(self) -> int:
        return len(self.names)
