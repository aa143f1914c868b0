"""SpamAssassin-syntax rule engine, plus the project's own default rules.

- :class:`RuleSet` (``RuleSet.load(paths, cache_dir=..., use_hyperscan=..., max_scan_bytes=...)``)
  compiles ``.cf`` rules; ``ruleset.evaluate(pm)`` returns the hits as
  :class:`mailsift.verdict.Symbol` (source ``"rule"``); ``ruleset.names``;
  ``ruleset.skipped`` lists ``(name, reason)`` for every rule that could not be used.
- :func:`load_ruleset` builds the configured set: our ``default/*.cf``, then the stock
  SpamAssassin rules when installed and enabled, then ``settings.rules.extra_paths`` (later
  definitions of a name override earlier ones, as in SpamAssassin).

Modules: :mod:`.parser` (``.cf`` syntax), :mod:`.perlre` (Perl regex translation),
:mod:`.meta` (meta expressions), :mod:`.evals` (built-in eval tests), :mod:`.engine` (the
rule set) with :mod:`.views`, :mod:`.targets`, :mod:`.hscompile`, :mod:`.dbcache`, :mod:`.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mailsift.classifier.rules.engine import RuleSet
from mailsift.classifier.rules.parser import rule_files
from mailsift.classifier.rules.relays import Trust
from mailsift.classifier.rules.views import render_body

if TYPE_CHECKING:
    from mailsift.config import Settings

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "default"
STOCK_RULES_DIR = Path("/usr/share/spamassassin")
STOCK_SITE_DIR = Path("/etc/spamassassin")

__all__ = [
    "DEFAULT_RULES_DIR",
    "RuleSet",
    "configured_paths",
    "load_ruleset",
    "render_body",
    "rule_files",
    "stock_paths",
]


def stock_paths(settings: Settings) -> list[Path]:
    """Stock SpamAssassin rule files: configured paths, else the Debian locations if present."""
    if settings.rules.stock_paths is not None:
        return [Path(p) for p in settings.rules.stock_paths]
    out: list[Path] = []
    if STOCK_RULES_DIR.is_dir() and any(STOCK_RULES_DIR.glob("*.cf")):
        out.append(STOCK_RULES_DIR)
        if STOCK_SITE_DIR.is_dir():
            out.extend(sorted(STOCK_SITE_DIR.glob("*.cf")))
    return out


def configured_paths(settings: Settings) -> list[Path]:
    """Rule files in load order: stock (if enabled), our defaults, extra paths.

    Stock rules come first so that our own definitions and the operator's extra files
    override them (SpamAssassin's "later wins").
    """
    paths: list[Path] = []
    if settings.rules.use_stock:
        paths.extend(stock_paths(settings))
    if settings.rules.use_default:
        paths.append(DEFAULT_RULES_DIR)
    paths.extend(Path(p) for p in settings.rules.extra_paths)
    return paths


def load_ruleset(settings: Settings) -> RuleSet:
    """The configured rule set, with its Hyperscan databases cached under the cache dir."""
    rules = RuleSet.load(
        configured_paths(settings),
        cache_dir=settings.rules_cache_dir,
        use_hyperscan=settings.rules.hyperscan,
        max_scan_bytes=settings.rules.max_scan_bytes,
        exclude=settings.rules.exclude,
        prune_unused=settings.rules.prune_unused,
        use_pcre=settings.rules.pcre,
    )
    # mailsift's own settings, when they name networks, rule over the rule files' (local.cf)
    configured = Trust.configured(
        settings.rules.trusted_networks,
        settings.rules.internal_networks,
        settings.rules.msa_networks,
    )
    if configured is not None:
        rules.trust = configured
    return rules
