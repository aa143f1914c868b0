"""The interface every deterministic SMTP check implements.

A check looks at one SMTP stage, returns symbols with scores and perhaps an action with a
reason. It never formats SMTP replies: ``mailsift.smtpd.replies`` maps actions to
``451 4.7.1 ...`` / ``550 5.7.1 ...``. A network failure is a result (``temperror``), not an
exception. Resolver, stores and clock come in through the constructor.

Besides ``name``, ``stage`` and ``run``, a check may declare skip flags
(``skip_authenticated``, ``skip_relay_clients``, ``skip_whitelisted``) that the runner
(``mailsift.smtpd.runner``) reads, and registers itself with its settings block and symbols
(``mailsift.smtpd.checks.registry.register_check``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from mailsift.verdict import Symbol


class Stage(IntEnum):
    CONNECT = 0  # run at EHLO/HELO (aiosmtpd has no connect hook)
    HELO = 1
    MAIL = 2
    RCPT = 3
    DATA = 4


class CheckAction(StrEnum):
    ACCEPT = "accept"  # no objection (symbols may still add score)
    WHITELIST = "whitelist"  # accept and skip later spam checks and the spam verdict
    TEMPFAIL = "tempfail"  # 4xx
    REJECT = "reject"  # 5xx


@dataclass(slots=True)
class SmtpContext:
    """What a check may see. The server fills it as the session goes on."""

    client_ip: str
    client_port: int = 0
    helo: str | None = None
    mail_from: str | None = None  # "" for the null sender <>
    rcpt_to: list[str] = field(default_factory=list)
    current_rcpt: str | None = None  # set during the RCPT stage
    auth_user: str | None = None
    tls: bool = False
    in_relay_network: bool = False
    raw_message: bytes | None = None  # set at DATA
    session_id: str = ""
    # results of earlier checks, by check name (Haraka's results log)
    results: dict[str, CheckResult] = field(default_factory=dict)
    whitelisted: bool = False
    started: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckResult:
    check: str
    action: CheckAction = CheckAction.ACCEPT
    symbols: list[Symbol] = field(default_factory=list)
    reason: str = ""  # human text for the SMTP reply / logs
    enhanced_code: str | None = None  # e.g. "5.7.1"; None -> the default for the action
    result: str = ""  # protocol result word, e.g. "pass", "fail", "temperror" (for A-R)
    auth_results: list[str] = field(default_factory=list)  # Authentication-Results clauses
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(s.score for s in self.symbols)


@runtime_checkable
class Check(Protocol):
    name: ClassVar[str]
    stage: ClassVar[Stage]

    async def run(self, ctx: SmtpContext) -> CheckResult: ...


Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()
