"""Value types shared by the scorer, the store, the HTTP API and the SMTP filter."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol


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
    return uuid.uuid4().hex


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"] = self.action.value
        return d


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
