"""Fixtures for the rule-engine tests: message builders, corpus samples, the stock rules.

The stock SpamAssassin rules are compiled into Hyperscan once per test session (into a
session temp dir, which also exercises the cache); everything else builds tiny rule sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mailsift.classifier.rules import RuleSet, load_ruleset
from mailsift.config import load_settings
from mailsift.message import ParsedMessage, parse
from mailsift.pipeline.corpus import sample_messages

DATA = Path(__file__).parent / "data"
CORPUS = load_settings().paths.corpus or Path("/work/shared/corpora/spamassassin")
STOCK = Path("/usr/share/spamassassin")


def make_message(
    body: str = "Hello there.\n",
    *,
    subject: str | None = "A subject",
    headers: dict[str, str] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> ParsedMessage:
    """A small RFC 5322 message, parsed."""
    lines = ["From: Alice <alice@example.org>", "To: bob@example.net"]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    lines += ["MIME-Version: 1.0", f"Content-Type: {content_type}", "", body]
    return parse("\r\n".join(lines).encode("utf-8"))


@pytest.fixture(
    params=[(True, True), (False, True), (False, False)], ids=["hyperscan", "pcre", "re"]
)
def engine(request: pytest.FixtureRequest) -> Callable[[str], RuleSet]:
    """Build a RuleSet from .cf text three ways: Hyperscan (hits decided by PCRE2 where it
    cannot answer alone), PCRE2 alone, Python re alone."""
    use_hyperscan, use_pcre = request.param

    def build(text: str) -> RuleSet:
        return RuleSet.from_text(text, use_hyperscan=use_hyperscan, use_pcre=use_pcre)

    return build


def hits(rs: RuleSet, pm: ParsedMessage, subrules: bool = True) -> set[str]:
    return {s.name for s in rs.evaluate(pm, include_subrules=subrules)}


def corpus_messages(limit_per_archive: int, archives: tuple[str, ...] | None = None) -> list[bytes]:
    """Messages read in place from the SpamAssassin public corpus archives."""
    return sample_messages(CORPUS, limit_per_archive, archives or ())


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stock_cache() -> Path:
    """The project's rules cache (``var/cache/rules``, git-ignored), shared with ``make run``.

    Compiling the stock rules into Hyperscan takes a minute or more on a busy machine; the
    cache is keyed by a hash of every pattern, so reusing it across sessions is safe (a
    stale or damaged file is detected and rebuilt). ``MAILSIFT_TEST_RULES_CACHE`` overrides.
    """
    env = os.environ.get("MAILSIFT_TEST_RULES_CACHE")
    path = Path(env) if env else REPO / "var" / "cache" / "rules"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def stock_rules(stock_cache: Path) -> RuleSet:
    """The configured rule set (stock SpamAssassin rules + ours), Hyperscan, once a session.

    Built exactly as ``load_ruleset`` builds it for ``make run``, so the compiled databases
    in the shared cache serve both.
    """
    assert STOCK.is_dir(), "the Debian spamassassin package must be installed"
    return load_ruleset(load_settings(rules={"cache_dir": str(stock_cache)}))


@pytest.fixture(scope="session")
def stock_rules_re(stock_rules: RuleSet) -> RuleSet:
    """The same rules decided by Python re alone: the reference the fast engines must equal."""
    return stock_rules.variant(use_hyperscan=False, use_pcre=False)


@pytest.fixture(scope="session")
def corpus_sample() -> list[bytes]:
    assert CORPUS.is_dir(), f"corpus missing at {CORPUS}"
    return corpus_messages(25)
