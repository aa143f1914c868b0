"""Value types shared by the scorer, the store, the HTTP API and the SMTP filter, and the
verdict's JSON codec.

The codec: ``encode_verdict(v)`` writes a verdict as the JSON document ``POST /v1/score``
answers (the model ``ScoreResponse``, also the API's schema of it), and
``decode_verdict(data)`` reads such a document back into a ``Verdict`` (the SMTP filter's
scoring over HTTP). ``symbol_fields`` and ``token_fields`` are the objects of a rule hit and a
token in it, for writers that keep part of a verdict (a held message's reasons).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import Any, Protocol

from pydantic import BaseModel, Field
from pydantic_core import to_json


class Action(StrEnum):
    """What to do with a message, in increasing severity."""

    HAM = "ham"  # deliver
    SPAM = "spam"  # deliver, tagged (X-Spam-Flag: YES)
    HOLD = "hold"  # quarantine for review
    REJECT = "reject"  # refuse at SMTP time (550 5.7.1)


class Label(StrEnum):
    SPAM = "spam"
    HAM = "ham"


@dataclass(frozen=True, slots=True)
class Envelope:
    """SMTP facts about a message (all optional: the API may know none of them)."""

    client_ip: str | None = None
    helo: str | None = None
    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()
    auth_user: str | None = None
    client_name: str | None = None  # verified reverse DNS name, if any


@dataclass(frozen=True, slots=True)
class Symbol:
    """A named observation with a weight: a rule hit or a deterministic check's result."""

    name: str  # UPPER_SNAKE, e.g. "GTUBE", "SPF_FAIL", "DNSBL_SPAMHAUS_SBL"
    score: float = 0.0  # configured weight (SpamAssassin points), informational
    description: str = ""
    source: str = "rule"  # "rule", "check", "list", "model"


@dataclass(frozen=True, slots=True)
class TokenContribution:
    token: str  # human-readable feature, e.g. "body:viagra", "url:bit.ly", "rule:GTUBE"
    weight: float  # signed contribution to the log-odds of spam


def new_verdict_id() -> str:
    """32 hex digits laid out as a UUID version 7 (RFC 9562): the creation time in
    milliseconds in the first 48 bits, then 74 random bits. The time tells a lookup whether
    the verdict may still be on its way to the store (``verdict_id_time``)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF
    return f"{value:032x}"


def verdict_id_time(verdict_id: str) -> float | None:
    """When a verdict id of ``new_verdict_id`` was made (Unix seconds); None for any other
    id (an older random one, or not 32 hex digits)."""
    if len(verdict_id) != 32 or verdict_id[12] != "7" or verdict_id[16] not in "89ab":
        return None
    try:
        return int(verdict_id[:12], 16) / 1000.0
    except ValueError:
        return None


@dataclass(slots=True)
class Verdict:
    verdict_id: str
    probability: float  # spam probability 0..1
    score: float  # SpamAssassin-compatible points; >= required_score means spam
    required_score: float
    action: Action
    rules: list[Symbol] = field(default_factory=list)
    tokens: list[TokenContribution] = field(default_factory=list)
    model_version: str = ""
    elapsed_ms: float = 0.0
    digest: str = ""  # sha256 of the raw message
    reason: str = ""  # e.g. "trusted sender (user list)", "GTUBE"
    list_decision: str | None = None  # "trusted", "untrusted", "allow", "block"
    truncated: bool = False  # the parser capped what it scanned

    @property
    def is_spam(self) -> bool:
        return self.action is not Action.HAM


@dataclass(frozen=True, slots=True)
class ListDecision:
    """The outcome of black/white and trusted/untrusted sender lists for one message.

    kind: "allow" (global white list), "trusted" (a recipient's own list): never spam;
          "block" (global black list): rejected; "untrusted" (a recipient's list): always spam.
    """

    kind: str
    reason: str  # e.g. "sender *@example.com on alice@example.com's trusted list"


class ListPolicy(Protocol):
    """Looks up the sender lists; implemented by mailsift.store (global and per-user)."""

    def decide(self, envelope: Envelope, from_addr: str) -> ListDecision | None: ...


# ---- the verdict's JSON ----------------------------------------------------------------------


class RuleHit(BaseModel):
    name: str
    score: float
    description: str = ""
    source: str = "rule"


class TokenWeight(BaseModel):
    token: str
    weight: float = Field(description="Signed contribution to the log-odds of spam")


# The verdict's JSON document: its fields, their order, types and limits. Named as the API
# documents it (the answer of POST /v1/score); no docstring, which would become the
# schema's description.
class ScoreResponse(BaseModel):
    verdict_id: str
    probability: float = Field(ge=0.0, le=1.0, description="Spam probability")
    score: float = Field(description="SpamAssassin-compatible points")
    required_score: float
    action: Action
    is_spam: bool
    rules: list[RuleHit] = Field(description="Rule and check hits")
    tokens: list[TokenWeight] = Field(description="Features that weighed most")
    model_version: str
    elapsed_ms: float = Field(description="Time taken to score, in milliseconds")
    digest: str = Field(description="sha256 of the raw message")
    reason: str = ""
    list_decision: str | None = None
    truncated: bool = False

    @classmethod
    def from_verdict(cls, v: Verdict) -> ScoreResponse:
        return cls(
            verdict_id=v.verdict_id,
            probability=v.probability,
            score=v.score,
            required_score=v.required_score,
            action=v.action,
            is_spam=v.is_spam,
            rules=[
                RuleHit(name=s.name, score=s.score, description=s.description, source=s.source)
                for s in v.rules
            ],
            tokens=[TokenWeight(token=t.token, weight=t.weight) for t in v.tokens],
            model_version=v.model_version,
            elapsed_ms=v.elapsed_ms,
            digest=v.digest,
            reason=v.reason,
            list_decision=v.list_decision,
            truncated=v.truncated,
        )


_FLOAT, _STR = frozenset((float,)), frozenset((str,))
_rule_name, _rule_score = attrgetter("name"), attrgetter("score")
_rule_desc, _rule_source = attrgetter("description"), attrgetter("source")
_token, _weight = attrgetter("token"), attrgetter("weight")


def _plain(v: Verdict) -> bool:
    """True when every value of ``v`` already has the type ``ScoreResponse`` validation
    gives it (floats finite, the probability within [0, 1]): nothing would be converted."""
    rules, tokens = v.rules, v.tokens
    floats = [v.probability, v.score, v.required_score, v.elapsed_ms]
    floats += map(_rule_score, rules)
    floats += map(_weight, tokens)
    strs = [v.verdict_id, v.model_version, v.digest, v.reason]
    strs += map(_rule_name, rules)
    strs += map(_rule_desc, rules)
    strs += map(_rule_source, rules)
    strs += map(_token, tokens)
    return (
        _FLOAT.issuperset(map(type, floats))
        and math.isfinite(sum(floats))  # NaN and inf propagate (an overflow only costs time)
        and 0.0 <= v.probability <= 1.0
        and _STR.issuperset(map(type, strs))
        and type(v.action) is Action
        and (v.list_decision is None or type(v.list_decision) is str)
        and type(v.truncated) is bool
    )


def symbol_fields(s: Symbol) -> dict[str, Any]:
    """A rule hit as the verdict's JSON writes it."""
    return {"name": s.name, "score": s.score, "description": s.description, "source": s.source}


def token_fields(t: TokenContribution) -> dict[str, Any]:
    """A token's contribution as the verdict's JSON writes it."""
    return {"token": t.token, "weight": t.weight}


def encode_verdict(v: Verdict) -> bytes:
    """The verdict's JSON document: ``ScoreResponse.from_verdict(v).model_dump_json()``,
    byte for byte, without building and validating the models (most of the time that
    takes): the same fields in the same order, serialised by the same pydantic-core
    serialiser. A verdict with a value that validation would convert or refuse (an int or
    numpy float for a float, NaN, a probability out of range, a str for an Action...) goes
    through the model instead, to the same outcome (``ValidationError`` when refused)."""
    if not _plain(v):
        return ScoreResponse.from_verdict(v).model_dump_json().encode()
    return to_json(
        {
            "verdict_id": v.verdict_id,
            "probability": v.probability,
            "score": v.score,
            "required_score": v.required_score,
            "action": v.action.value,
            "is_spam": v.action is not Action.HAM,
            "rules": [symbol_fields(r) for r in v.rules],
            "tokens": [token_fields(t) for t in v.tokens],
            "model_version": v.model_version,
            "elapsed_ms": v.elapsed_ms,
            "digest": v.digest,
            "reason": v.reason,
            "list_decision": v.list_decision,
            "truncated": v.truncated,
        }
    )


def decode_verdict(data: bytes | str | Mapping[str, Any]) -> Verdict:
    """A verdict from its JSON document (or the document already parsed). The id, the
    probability, the score, the required score and the action are required; the other
    fields default as in ``Verdict`` (``is_spam`` follows the action). Raises ``ValueError``
    (``json.JSONDecodeError`` included), ``KeyError`` or ``TypeError`` for a document that
    is not a verdict."""
    d = json.loads(data) if isinstance(data, bytes | str) else data
    return Verdict(
        verdict_id=str(d["verdict_id"]),
        probability=float(d["probability"]),
        score=float(d["score"]),
        required_score=float(d["required_score"]),
        action=Action(d["action"]),
        rules=[Symbol(**r) for r in d.get("rules", [])],
        tokens=[TokenContribution(**t) for t in d.get("tokens", [])],
        model_version=str(d.get("model_version", "")),
        elapsed_ms=float(d.get("elapsed_ms", 0.0)),
        digest=str(d.get("digest", "")),
        reason=str(d.get("reason", "")),
        list_decision=d.get("list_decision"),
        truncated=bool(d.get("truncated", False)),
    )
