"""Sender and recipient barring with Mailtraq "Type 2 wildcard" lists.

The lists (``settings.barring.sender``/``recipient`` plus the optional ``*_file``) are read top
to bottom; each line includes a range of addresses or, with a leading ``~``, excludes one; the
last matching line decides (``mailsift.wildcard``). Barring happens during the SMTP transaction,
on the envelope addresses only (RFC 5321 MAIL FROM / RCPT TO), before any data is read.

A barred address is rejected (``550 5.7.1`` + ``settings.smtp.barred_message``). The default
recipient list bars the relay tricks Mailtraq cannot resolve: bang paths (``*!*``) and quoted
local parts hiding an address (``"*@*"``, ``"*@*"@*``). The null sender ``<>`` is never barred
(bounces must get through).

Symbols: ``BARRED_SENDER``, ``BARRED_RECIPIENT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Self

from mailsift.config import BarringSettings, Settings, SmtpSettings
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.registry import CheckEnv, register_check
from mailsift.smtpd.checks.scores import symbol
from mailsift.wildcard import WildcardList

MAX_ADDRESS_CHARS = 512  # RFC 5321 paths are <= 256 octets; bounded regex work


def load_list(lines: Iterable[str], path: Path | None) -> WildcardList:
    """The inline lines followed by the file's lines (a missing file is a clear error)."""
    all_lines = list(lines)
    if path is not None:
        all_lines += path.read_text(encoding="utf-8").splitlines()
    return WildcardList(all_lines)


def barring_list(barring: BarringSettings, kind: str) -> tuple[list[str], Path | None]:
    """The inline lines and the file of the ``kind`` list ("sender" or "recipient")."""
    return list(getattr(barring, kind)), getattr(barring, f"{kind}_file")


def envelope_address(value: str | None) -> str:
    v = (value or "").strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v


class _Barring:
    name: ClassVar[str]
    stage: ClassVar[Stage]
    _symbol: ClassVar[str]
    _kind: ClassVar[str]  # "sender" or "recipient": the BarringSettings lists it reads

    def __init__(self, wildcards: WildcardList, smtp: SmtpSettings) -> None:
        self.list = wildcards
        self.message = smtp.barred_message

    @classmethod
    def from_settings(cls, barring: BarringSettings, smtp: SmtpSettings) -> Self:
        return cls(load_list(*barring_list(barring, cls._kind)), smtp)

    @classmethod
    def build(cls, env: CheckEnv) -> Self | None:
        check = cls.from_settings(env.block(BarringSettings), env.settings.smtp)
        return check if len(check.list) else None  # an empty list bars nobody

    def _address(self, ctx: SmtpContext) -> str:
        raise NotImplementedError

    async def run(self, ctx: SmtpContext) -> CheckResult:
        addr = envelope_address(self._address(ctx))
        if not addr or not self.list:
            return CheckResult(self.name, result="none")
        entry = self.list.decide(addr[:MAX_ADDRESS_CHARS])
        if entry is None or entry.exclude:
            details = {"excluded_by": entry.pattern} if entry is not None else {}
            return CheckResult(self.name, result="pass", details=details)
        return CheckResult(
            self.name,
            action=CheckAction.REJECT,
            symbols=[symbol(self._symbol, f"{addr} barred by {entry.pattern}")],
            reason=self.message,
            enhanced_code="5.7.1",
            result="barred",
            details={"pattern": entry.pattern, "address": addr},
        )


def _has_list(settings: Settings, kind: str) -> bool:
    lines, path = barring_list(settings.check_block(BarringSettings), kind)
    return bool(lines) or path is not None


@register_check(
    block="barring",
    settings=BarringSettings,
    enabled=lambda settings: _has_list(settings, "sender"),
    build=lambda env: SenderBarring.build(env),
    symbols=("BARRED_SENDER",),
)
class SenderBarring(_Barring):
    name = "barring_sender"
    stage = Stage.MAIL
    _symbol = "BARRED_SENDER"
    _kind = "sender"

    def _address(self, ctx: SmtpContext) -> str:
        return ctx.mail_from or ""


@register_check(
    block="barring",
    settings=BarringSettings,
    enabled=lambda settings: _has_list(settings, "recipient"),
    build=lambda env: RecipientBarring.build(env),
    symbols=("BARRED_RECIPIENT",),
)
class RecipientBarring(_Barring):
    name = "barring_recipient"
    stage = Stage.RCPT
    skip_whitelisted: ClassVar[bool] = False  # relay tricks stay barred for everyone
    _symbol = "BARRED_RECIPIENT"
    _kind = "recipient"

    def _address(self, ctx: SmtpContext) -> str:
        return ctx.current_rcpt or ""
