"""Scorer: one message (+ envelope facts, check symbols) -> Verdict.

Steps: parse (``settings.message`` caps) -> rules (:mod:`mailsift.classifier.rules`) ->
features (:func:`~mailsift.classifier.features.make_sample`) -> model probability -> score
-> action (``settings.thresholds``, else the model's calibrated thresholds) -> sender lists
(applied last).

Score (SpamAssassin points, ``required_score`` = 5.0 by default) is a monotone map of the
probability's log-odds, anchored so that ``probability == thresholds.spam`` gives exactly
``required_score`` and ``probability == thresholds.reject`` gives twice that::

    score = required * (1 + (logit(p) - logit(t_spam)) / (logit(t_reject) - logit(t_spam)))

(logits clipped to +-30). The GTUBE test string (SpamAssassin's Generic Test for Unsolicited
Bulk Email) gives probability 1.0 and 1000 points, like SpamAssassin: action ``reject``.

Sender lists (a :class:`mailsift.verdict.ListPolicy`) come last: ``allow`` (global) and
``trusted`` (the recipient's own list) make the message ham, ``block`` rejects it and
``untrusted`` makes it at least spam; the reason is recorded in the verdict.

Thread-safe: scoring reads the current model reference without locking (a swap is atomic);
``learn`` and ``replace_model`` serialise on one lock, so a score never waits for another.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mailsift.budget import SCAN_BUDGET_SYMBOL, ScanBudget
from mailsift.classifier.features import UNLEARNED_RULES, Sample, make_sample
from mailsift.classifier.model import LOGIT_CLIP, SpamModel
from mailsift.config import ResolvedThresholds, Settings
from mailsift.message import ParsedMessage, parse
from mailsift.verdict import (
    Action,
    Envelope,
    Label,
    ListPolicy,
    Symbol,
    TokenContribution,
    Verdict,
    new_verdict_id,
)

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_SCORE = 1000.0
_ACTION_ORDER = [Action.HAM, Action.SPAM, Action.HOLD, Action.REJECT]

_UNLEARNED = frozenset(f"rule:{n}" for n in UNLEARNED_RULES)  # as meta features


class RuleEvaluator(Protocol):
    """What the scorer needs of a rule set (mailsift.classifier.rules.RuleSet)."""

    def evaluate(self, pm: ParsedMessage, *, budget: ScanBudget | None = None) -> list[Symbol]: ...


class NoRules:
    """An empty rule set (used when the rules package is unavailable or disabled)."""

    names: list[str] = []
    skipped: list[tuple[str, str]] = []

    def evaluate(self, pm: ParsedMessage, *, budget: ScanBudget | None = None) -> list[Symbol]:
        return []


def load_rules(settings: Settings) -> RuleEvaluator:
    """The configured rule set (project rules + stock SpamAssassin rules when installed)."""
    from mailsift.classifier import rules as rules_pkg

    loader = getattr(rules_pkg, "load_ruleset", None)
    if loader is None:  # the rules engine has not landed in this checkout
        return NoRules()
    ruleset: RuleEvaluator = loader(settings)
    return ruleset


def parse_with(raw: bytes, settings: Settings) -> ParsedMessage:
    m = settings.message
    return parse(
        raw,
        max_parse_bytes=m.max_parse_bytes,
        max_text_chars=m.max_text_chars,
        max_parts=m.max_parts,
    )


def sample_of(
    raw_or_parsed: bytes | str | ParsedMessage,
    settings: Settings,
    rules: RuleEvaluator,
    symbols: Iterable[Symbol | str] = (),
    budget: ScanBudget | None = None,
) -> tuple[ParsedMessage, Sample, list[Symbol]]:
    """Parse (unless parsed already), run the rules and build the model's sample.

    With a ``budget`` spent by the parse, no rule runs; the rule engine stops between its
    stages once it is spent (``budget.exceeded`` says so afterwards)."""
    if isinstance(raw_or_parsed, ParsedMessage):
        pm = raw_or_parsed
    else:
        raw = (
            raw_or_parsed.encode("utf-8", "surrogateescape")
            if isinstance(raw_or_parsed, str)
            else raw_or_parsed
        )
        pm = parse_with(raw, settings)
    if budget is None:
        hits = rules.evaluate(pm)
    elif budget.spent("parsing"):
        hits = []
    else:
        hits = rules.evaluate(pm, budget=budget)
    return pm, make_sample(pm, hits, symbols), hits


def has_gtube(pm: ParsedMessage) -> bool:
    return GTUBE in pm.body or GTUBE.encode() in pm.raw


def _logit(p: float) -> float:
    p = min(max(p, 1e-13), 1 - 1e-13)
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1 - p))))


def thresholds_for(settings: Settings, model: SpamModel | None = None) -> ResolvedThresholds:
    """The thresholds in force: the configured ones, else the model's calibrated ones."""
    return settings.thresholds.resolved(None if model is None else model.thresholds_)


def probability_to_score(
    p: float, settings: Settings, thresholds: ResolvedThresholds | None = None
) -> float:
    """Monotone probability -> SpamAssassin points; p == thresholds.spam -> required_score."""
    t = thresholds or thresholds_for(settings)
    lo, hi = _logit(t.spam), _logit(t.reject)
    span = hi - lo if hi > lo else 1.0
    return round(t.required_score * (1.0 + (_logit(p) - lo) / span), 2)


def action_for(
    p: float, settings: Settings, thresholds: ResolvedThresholds | None = None
) -> Action:
    t = thresholds or thresholds_for(settings)
    if p >= t.reject:
        return Action.REJECT
    if p >= t.hold:
        return Action.HOLD
    if p >= t.spam:
        return Action.SPAM
    return Action.HAM


def at_least(action: Action, floor: Action) -> Action:
    return max(action, floor, key=_ACTION_ORDER.index)


class Scorer:
    """Raw message -> Verdict, with the current model; learns from feedback."""

    def __init__(
        self,
        model: SpamModel,
        rules: RuleEvaluator | None,
        settings: Settings,
        list_policy: ListPolicy | None = None,
    ) -> None:
        self._model = model
        self.rules: RuleEvaluator = rules if rules is not None else NoRules()
        self.settings = settings
        self.list_policy = list_policy
        self._lock = threading.Lock()
        self._descriptions: dict[str, str] = {}
        # additive corrections learned from users' feedback (mailsift.classifier.online.
        # FeedbackLayers): set by the feedback learner; None scores with the model alone
        self.layers: Any = None

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_model_dir(
        cls,
        path: str | Path,
        settings: Settings,
        list_policy: ListPolicy | None = None,
        rules: RuleEvaluator | None = None,
    ) -> Scorer:
        """A scorer serving the model saved in ``path`` (its fitted arrays only: see
        ``SpamModel.load``), with ``rules`` or else the configured rule set. Which folder
        serves (a configured path, the registry's champion, the default model) is decided
        by the caller: :func:`mailsift.pipeline.registry.serving_model_dir`."""
        model = SpamModel.load(path, serving=True)
        return cls(
            model, rules if rules is not None else load_rules(settings), settings, list_policy
        )

    @property
    def model(self) -> SpamModel:
        return self._model

    @property
    def model_version(self) -> str:
        return self._model.version

    def replace_model(self, model: SpamModel) -> None:
        """Swap in another model (e.g. a new champion); in-flight scores finish on the old."""
        with self._lock:
            self._model = model

    # ---- scoring ---------------------------------------------------------------------------
    def score(
        self,
        raw_or_parsed: bytes | str | ParsedMessage,
        envelope: Envelope | None = None,
        symbols: Sequence[Symbol] = (),
    ) -> Verdict:
        t0 = time.perf_counter()
        model = self._model  # one consistent model for this message
        budget = ScanBudget(self.settings.message.scan_budget_ms / 1000.0)
        pm, sample, hits = sample_of(raw_or_parsed, self.settings, self.rules, symbols, budget)
        prob, tokens, nb_factor = model.predict_explain(sample, top=10)
        layers = self.layers
        if layers is not None and layers.active:
            prob = self._corrected(model, sample, prob, tokens, layers, envelope)
        thresholds = thresholds_for(self.settings, model)
        score, reason = probability_to_score(prob, self.settings, thresholds), ""
        if has_gtube(pm) or any(h.name == "GTUBE" for h in hits):
            prob, score, reason = 1.0, GTUBE_SCORE, "GTUBE test string"
        verdict = Verdict(
            verdict_id=new_verdict_id(),
            probability=round(prob, 6),
            score=score,
            required_score=thresholds.required_score,
            action=action_for(prob, self.settings, thresholds),
            rules=self._weighted_rules(model, nb_factor, hits, symbols),
            tokens=tokens,
            model_version=model.version,
            digest=pm.digest,
            reason=reason,
            truncated=pm.truncated,
        )
        if budget.exceeded:
            # reported, not a model feature: no model was trained with it
            verdict.rules.append(
                Symbol(
                    SCAN_BUDGET_SYMBOL,
                    0.0,
                    f"scanning stopped after {budget.stage}: over the"
                    f" {self.settings.message.scan_budget_ms:g} ms CPU budget",
                    "check",
                )
            )
        self._apply_lists(verdict, pm, envelope)
        verdict.elapsed_ms = round((time.perf_counter() - t0) * 1000.0, 3)
        return verdict

    @staticmethod
    def _corrected(
        model: SpamModel,
        sample: Sample,
        prob: float,
        tokens: list[Any],
        layers: Any,
        envelope: Envelope | None,
    ) -> float:
        """The probability with the feedback corrections added to its log-odds: the global
        one (users' corroborated lessons) and the recipients' own (their verdicts); each
        joins the explanation as a contribution of its own."""
        rcpts = envelope.rcpt_to if envelope is not None else ()
        if layers.g is None and not layers.has_user(rcpts):
            return prob
        cols = np.unique(model.row_vectors(sample)[0])
        z_g = layers.global_offset(cols)
        z_u = layers.recipients_offset(rcpts, cols) if rcpts else 0.0
        if not (z_g or z_u):
            return prob
        for name, z in (("feedback:global", z_g), ("feedback:personal", z_u)):
            if z:
                tokens.append(TokenContribution(name, round(z, 4)))
        tokens.sort(key=lambda t: -abs(t.weight))
        z = _logit(prob) + z_g + z_u
        return 1.0 / (1.0 + math.exp(-max(min(z, 2 * LOGIT_CLIP), -2 * LOGIT_CLIP)))

    def _weighted_rules(
        self, model: SpamModel, nb_factor: float, hits: Sequence[Symbol], symbols: Sequence[Symbol]
    ) -> list[Symbol]:
        """Rule hits and check symbols, each with the weight the model gives it."""
        items = [(f"rule:{h.name}", h) for h in hits] + [(f"sym:{s.name}", s) for s in symbols]
        if not items:
            return []
        weights = model.feature_weights([f for f, _ in items], nb_factor=nb_factor)
        out = [
            # a rule the model does not learn from weighs nothing, whatever its column holds
            Symbol(s.name, 0.0 if f in _UNLEARNED else round(float(w), 4), s.description, s.source)
            for (f, s), w in zip(items, weights, strict=True)
        ]
        out.sort(key=lambda s: -s.score)
        return out

    def _apply_lists(self, verdict: Verdict, pm: ParsedMessage, envelope: Envelope | None) -> None:
        if self.list_policy is None:
            return
        decision = self.list_policy.decide(envelope or Envelope(), pm.from_addr)
        if decision is None:
            return
        verdict.list_decision = decision.kind
        verdict.reason = decision.reason
        if decision.kind in ("allow", "trusted"):
            verdict.action = Action.HAM
        elif decision.kind == "block":
            verdict.action = Action.REJECT
        elif decision.kind == "untrusted":
            verdict.action = at_least(verdict.action, Action.SPAM)

    # ---- learning --------------------------------------------------------------------------
    def sample(
        self, raw_or_parsed: bytes | str | ParsedMessage, symbols: Sequence[Symbol] = ()
    ) -> Sample:
        """The model's features of a message (what ``learn`` learns)."""
        return sample_of(raw_or_parsed, self.settings, self.rules, symbols)[1]

    def learn(
        self,
        raw_or_parsed: bytes | str | ParsedMessage | Sample,
        label: Label | str,
        weight: float = 1.0,
        symbols: Sequence[Symbol] = (),
    ) -> None:
        """partial_fit the live model on one message. A negative weight unlearns it."""
        sample = (
            raw_or_parsed
            if isinstance(raw_or_parsed, Sample)
            else self.sample(raw_or_parsed, symbols)
        )
        y = 1 if Label(label) is Label.SPAM else 0
        with self._lock:
            self._model.partial_fit([sample], [y], sample_weight=[weight])

    def unlearn(
        self, raw_or_parsed: bytes | str | ParsedMessage | Sample, label: Label | str
    ) -> None:
        """Take back an earlier ``learn`` of this message with ``label`` (see SpamModel.unlearn)."""
        sample = raw_or_parsed if isinstance(raw_or_parsed, Sample) else self.sample(raw_or_parsed)
        y = 1 if Label(label) is Label.SPAM else 0
        with self._lock:
            self._model.unlearn([sample], [y])
