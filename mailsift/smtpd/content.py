"""The content decision shared by the SMTP filter and the milter: DATA-stage checks, header
hygiene, scoring, and the header fields that report the result.

Both front ends (``mailsift.smtpd.handler`` for SMTP, ``mailsift.smtpd.milter`` for the
Sendmail/Postfix milter protocol) collect the envelope their own way and then call
``judge``, so a message gets the same checks, the same verdict and the same headers whichever
way it arrived:

1. the DATA-stage checks (antivirus, DKIM/ARC, DMARC, URL lists); a refusal is the answer;
2. incoming ``X-Spam-*`` fields and ``Authentication-Results`` claiming our authserv-id are
   removed (never believed, never learned from);
3. the scorer (rules + model + the checks' symbols), unless a check whitelisted the sender;
   a scorer failure is ``451 4.3.0`` (never an unscored accept); a REJECT verdict is
   ``550 5.7.1``.

``result_headers`` builds ``Authentication-Results`` and the ``X-Spam-*`` fields from the
checks' results and the verdict (the SMTP filter adds its own ``Received`` above them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mailsift.smtpd import headers as hdr
from mailsift.smtpd import replies
from mailsift.smtpd.checks.base import CheckAction, SmtpContext, Stage
from mailsift.smtpd.runner import CheckRunner, collect_auth_results, collect_symbols
from mailsift.smtpd.scoring import Scoring, ScoringUnavailable
from mailsift.verdict import Action, Envelope, Symbol, Verdict

log = logging.getLogger("mailsift.smtpd.content")


@dataclass(slots=True)
class Judgement:
    """What to do with one message.

    ``reply`` is a refusal to answer now (a check's 4xx/5xx, the scorer down, a spam
    reject) or None when the message goes on; ``raw`` is the message with the untrusted
    header fields removed (``removed`` names them).
    """

    raw: bytes
    envelope: Envelope
    reply: str | None = None
    refused_by: CheckAction | None = None  # REJECT/TEMPFAIL when a check refused
    verdict: Verdict | None = None
    symbols: list[Symbol] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # what a refusal comes from, for mailsift.outages: a check (its name, or
    # "<name>_temperror"), "store" / "scorer" / "scorer_api", or "spam"; and whether it
    # comes from a dependency that failed
    reason: str = ""
    outage: bool = False

    @property
    def action(self) -> Action | None:
        return self.verdict.action if self.verdict is not None else None


async def judge(
    raw: bytes,
    ctx: SmtpContext,
    *,
    runner: CheckRunner,
    scoring: Scoring | None,
    authserv_id: str,
    mail_from: str,
    rcpt_to: list[str],
    client_name: str | None = None,
) -> Judgement:
    """Run the DATA stage and the scorer over ``raw`` (``ctx`` holds the session so far)."""
    env = Envelope(
        client_ip=ctx.client_ip,
        helo=ctx.helo,
        mail_from=mail_from,
        rcpt_to=tuple(rcpt_to),
        auth_user=ctx.auth_user,
        client_name=client_name,
    )
    ctx.raw_message = raw
    out = await runner.run(Stage.DATA, ctx)
    if out.reply:
        return Judgement(
            raw=raw, envelope=env, reply=out.reply, refused_by=out.action,
            symbols=collect_symbols(ctx), reason=out.reason, outage=out.outage,
        )  # fmt: skip
    cleaned, removed = hdr.remove_untrusted(raw, authserv_id)
    if removed:
        log.info("removed untrusted headers: %s", ", ".join(removed))
    j = Judgement(raw=cleaned, envelope=env, symbols=collect_symbols(ctx), removed=removed)
    if scoring is None or ctx.whitelisted:
        return j
    try:
        j.verdict = await scoring.score(cleaned, env, j.symbols)
    except ScoringUnavailable as exc:
        j.reply, j.reason, j.outage = replies.SCORER_DOWN, exc.reason, True
        return j
    if j.verdict.action is Action.REJECT:
        j.reply, j.reason = replies.verdict_reject(j.verdict), "spam"
    return j


def result_headers(
    authserv_id: str, ctx: SmtpContext, verdict: Verdict | None, symbols: list[Symbol]
) -> list[tuple[str, str]]:
    """``Authentication-Results`` and the ``X-Spam-*`` fields, first one on top."""
    fields = [hdr.authentication_results(authserv_id, collect_auth_results(ctx), ctx.auth_user)]
    if verdict is not None:
        fields.extend(hdr.spam_headers(verdict, [s.name for s in symbols]))
    elif ctx.whitelisted:
        fields.append(("X-Spam-Status", "No, score=0.0 tests=WHITELISTED autolearn=no"))
    return fields
