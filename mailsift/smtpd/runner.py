"""The check runner of the SMTP filter: each stage's checks, in order.

``CheckRunner`` runs the deterministic checks (``mailsift.smtpd.checks``, Haraka-style: each
stage's checks in order, each result kept in ``ctx.results`` for later stages and headers).
The stages: CONNECT and HELO run at EHLO/HELO (aiosmtpd has no connect hook), MAIL at MAIL
FROM, RCPT once per recipient, DATA after the message arrived. REJECT stops the stage at
once; TEMPFAIL is remembered while the remaining checks still run (their symbols count);
WHITELIST marks the session so later spam checks and the spam verdict are skipped.

A check says when it does not apply with class attributes the runner reads (defaults in
brackets); no check tests these conditions itself:

- ``skip_authenticated`` [False]: skipped for AUTH users;
- ``skip_relay_clients`` [False]: skipped for clients in ``relay_networks``;
- ``skip_whitelisted`` [True]: skipped once the session was whitelisted (antivirus, barring
  of recipients and the authentication checks set False).

A check skipped for a whitelisted session records nothing (the session's spam checks are
over). One skipped for an authenticated or relay client records nothing either, unless it
has an ``on_skip(ctx, why)`` method: its result is then recorded as if the check had run
(greylisting emits ``GREYLIST_SKIPPED`` with the reason, so the model still sees it).

A check that raises or overruns ``settings.smtp.check_timeout`` is a tempfail
(``451 4.3.0``), never a silent accept.

Outages: a check naming a ``dependency`` (``clamd``, ``redis``) reports each ``temperror``
result (and each timeout or crash) as a failure of that dependency and any other answer as
a success, to ``mailsift.outages`` (WARNING lines when it goes down and comes back,
Prometheus counters). DNS is reported by the session resolver itself
(``mailsift.smtpd.checks.dns``), query by query: a check's temperror there may be one
domain's SERVFAIL, and many check results need no query at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailsift import outages
from mailsift.smtpd.checks.base import Check, CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.replies import check_reply
from mailsift.verdict import Symbol

log = logging.getLogger("mailsift.smtpd.runner")


@dataclass(slots=True)
class StageOutcome:
    reply: str | None = None  # an SMTP refusal (4xx/5xx) or None
    action: CheckAction = CheckAction.ACCEPT
    results: list[CheckResult] = field(default_factory=list)
    cause: CheckResult | None = None  # the result the reply comes from

    @property
    def outage(self) -> bool:
        """The refusal comes from a dependency that failed (not from a policy)."""
        return self.cause is not None and self.cause.result == "temperror"

    @property
    def reason(self) -> str:
        """The refusal as a tempfail reason: the check's name for a policy answer
        (``greylist``), ``<name>_temperror`` when its dependency failed."""
        name = self.cause.check if self.cause is not None else "check"
        return f"{name}_temperror" if self.outage else name


SKIP_FLAGS: dict[str, bool] = {
    "skip_authenticated": False,
    "skip_relay_clients": False,
    "skip_whitelisted": True,
}  # the skip flags a check may declare, with their defaults


def skip_flags(check: object) -> dict[str, bool]:
    """The skip flags of a check (instance or class), defaults filled in."""
    return {flag: bool(getattr(check, flag, default)) for flag, default in SKIP_FLAGS.items()}


def skip_reason(check: object, ctx: SmtpContext) -> str:
    """Why `check` does not apply to this session ("" when it does), from its skip flags:
    ``whitelisted``, ``authenticated`` or ``relay network``, the first that holds."""
    flags = skip_flags(check)
    if ctx.whitelisted and flags["skip_whitelisted"]:
        return "whitelisted"
    if ctx.auth_user and flags["skip_authenticated"]:
        return "authenticated"
    if ctx.in_relay_network and flags["skip_relay_clients"]:
        return "relay network"
    return ""


class CheckRunner:
    def __init__(self, checks: Iterable[Check] = (), timeout: float = 60.0) -> None:
        self.checks = list(checks)
        self.timeout = timeout
        self.by_stage: dict[Stage, list[Check]] = {s: [] for s in Stage}
        for c in self.checks:
            self.by_stage[Stage(c.stage)].append(c)

    async def run(self, stage: Stage, ctx: SmtpContext) -> StageOutcome:
        out = StageOutcome()
        tempfail: CheckResult | None = None
        for check in self.by_stage[stage]:
            why = skip_reason(check, ctx)
            if why:
                on_skip = getattr(check, "on_skip", None)
                if on_skip is None or why == "whitelisted":
                    continue
                result = on_skip(ctx, why)
            else:
                result = await self._run_one(check, ctx)
            key = check.name if stage is not Stage.RCPT else f"{check.name}:{ctx.current_rcpt}"
            ctx.results[key] = result
            out.results.append(result)
            if result.action is CheckAction.WHITELIST:
                ctx.whitelisted = True
            elif result.action is CheckAction.REJECT:
                out.action, out.reply = CheckAction.REJECT, check_reply(result)
                out.cause = result
                return out
            elif result.action is CheckAction.TEMPFAIL and tempfail is None:
                tempfail = result
        if tempfail is not None:
            out.action, out.reply = CheckAction.TEMPFAIL, check_reply(tempfail)
            out.cause = tempfail
        return out

    async def _run_one(self, check: Check, ctx: SmtpContext) -> CheckResult:
        result = await self._call(check, ctx)
        dependency = getattr(check, "dependency", None)
        if dependency:
            if result.result == "temperror":
                why = result.details.get("error") or result.reason
                if not why and result.symbols:
                    why = result.symbols[0].description
                outages.dependency_failed(dependency, f"{check.name}: {why or 'temperror'}")
            elif result.result not in ("", "skip"):
                outages.dependency_ok(dependency)
        return result

    async def _call(self, check: Check, ctx: SmtpContext) -> CheckResult:
        try:
            return await asyncio.wait_for(check.run(ctx), self.timeout)
        except TimeoutError:
            log.warning("check %s timed out after %.1fs", check.name, self.timeout)
            reason = f"{check.name} check timed out, try again later"
        except Exception:
            log.exception("check %s failed", check.name)
            reason = f"{check.name} check failed, try again later"
        return CheckResult(
            check.name, CheckAction.TEMPFAIL, reason=reason, enhanced_code="4.3.0",
            result="temperror",
        )  # fmt: skip


def collect_symbols(ctx: SmtpContext) -> list[Symbol]:
    seen: dict[str, Symbol] = {}
    for res in ctx.results.values():
        for s in res.symbols:
            seen.setdefault(s.name, s)
    return list(seen.values())


def collect_auth_results(ctx: SmtpContext) -> list[str]:
    out: list[str] = []
    for res in ctx.results.values():
        for clause in res.auth_results:
            if clause not in out:
                out.append(clause)
    return out
