"""An SMTP check that lives outside mailsift, added the documented way: this module alone.

``sender_domains`` (MAIL): the MAIL FROM domain against ``[sender_domains] deny``; a denied
domain scores ``SENDER_DOMAIN_DENIED`` and, with ``reject = true``, is refused
(``550 5.7.1``). Authenticated users and relay clients are not checked (skip flags). The
settings block, its scores and the registration are all here; ``[checks] modules`` imports
the module and ``[checks] order`` enables the check (tests/checks/test_example_check.py).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.context import domain_of
from mailsift.smtpd.checks.registry import register_check
from mailsift.smtpd.checks.scores import symbol


class SenderDomainsSettings(BaseModel):
    deny: list[str] = Field(default_factory=list)  # domains, each with its subdomains
    reject: bool = False


@register_check(
    block="sender_domains",
    settings=SenderDomainsSettings,
    scores={"SENDER_DOMAIN_DENIED": (4.0, "MAIL FROM domain on the deny list")},
    enabled=lambda settings: bool(settings.check_block(SenderDomainsSettings).deny),
    build=lambda env: SenderDomains(env.block(SenderDomainsSettings)),
)
class SenderDomains:
    name: ClassVar[str] = "sender_domains"
    stage: ClassVar[Stage] = Stage.MAIL
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True

    def __init__(self, settings: SenderDomainsSettings) -> None:
        self.settings = settings
        self.deny = [d.lower().strip(".") for d in settings.deny]

    async def run(self, ctx: SmtpContext) -> CheckResult:
        domain = domain_of(ctx.mail_from)
        hit = next((d for d in self.deny if domain == d or domain.endswith("." + d)), None)
        if hit is None:
            return CheckResult(self.name, result="pass")
        res = CheckResult(
            self.name,
            symbols=[symbol("SENDER_DOMAIN_DENIED", f"{domain} (deny list: {hit})")],
            result="denied",
        )
        if self.settings.reject:
            res.action = CheckAction.REJECT
            res.reason = f"Sender domain {domain} refused by local policy"
        return res
