"""The scorer connection of the SMTP filter: the verdict at DATA.

Scoring: ``InProcessScoring`` calls ``mailsift.service.ScoringService.score`` in a worker
thread (the SMTP filter gives it a ``VerdictWriter``: the verdict record is then written in
batches by a background thread, off the path of the SMTP reply); ``HttpScoring`` calls the
HTTP API (``settings.api.scorer_url`` with the bearer key ``settings.api.scorer_api_key``).
Any failure raises ``ScoringUnavailable`` and the filter answers ``451 4.3.0``: an unscored
message is never accepted silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from mailsift import outages
from mailsift.smtpd.verdicts import VerdictWriter
from mailsift.store.base import StoreError, VerdictRecord
from mailsift.verdict import Envelope, Symbol, Verdict, decode_verdict

log = logging.getLogger("mailsift.smtpd.scoring")


class ScoringUnavailable(Exception):
    """The scorer could not give a verdict (down, timed out, bad answer). ``reason`` names
    what failed: ``store`` (the verdict could not be recorded), ``scorer_api`` (the HTTP
    scorer), ``scorer`` (anything else)."""

    def __init__(self, message: str, reason: str = "scorer") -> None:
        super().__init__(message)
        self.reason = reason


class Scoring(Protocol):
    async def score(self, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]) -> Verdict: ...


class _Service(Protocol):
    def score(self, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]) -> Verdict: ...

    def evaluate(self, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]) -> Verdict: ...

    def verdict_record(
        self, verdict: Verdict, raw: bytes, envelope: Envelope
    ) -> tuple[VerdictRecord, bytes | None]: ...


def verdict_writer_for(service: object) -> VerdictWriter | None:
    """A writer of ``service``'s verdict records in batches, off the reply's path (the reply
    waits for the next hop, the spool or the MTA, not for the record); None for a service
    without a store of its own (it records, if at all, as it scores)."""
    store = getattr(service, "store", None)
    if store is None or not hasattr(service, "verdict_record"):
        return None
    return VerdictWriter(
        store.verdicts.add_many, exists=lambda vid: store.verdicts.get(vid) is not None
    )


class InProcessScoring:
    """``ScoringService.score`` in a worker thread (it is CPU work and may touch the store).

    With a ``writer`` (``mailsift.smtpd.verdicts.VerdictWriter``) the verdict is evaluated
    in the thread and its record queued to the writer instead of committed before the
    answer; a writer that refuses (the store is down, its queue is full) makes the message
    a ``store`` tempfail before any scoring work is done."""

    def __init__(self, service: _Service, writer: VerdictWriter | None = None) -> None:
        self.service = service
        self.writer = writer

    async def score(self, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]) -> Verdict:
        writer = self.writer
        try:
            if writer is None:
                return await asyncio.to_thread(self.service.score, raw, envelope, list(symbols))
            why = writer.refusal()
            if why is not None:
                raise StoreError(why)
            return await asyncio.to_thread(self._score_queued, writer, raw, envelope, symbols)
        except StoreError as exc:  # the store's outage is logged and counted by the store
            raise ScoringUnavailable(str(exc), reason="store") from exc
        except Exception as exc:
            log.exception("in-process scoring failed")
            raise ScoringUnavailable(str(exc)) from exc

    def _score_queued(
        self, writer: VerdictWriter, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]
    ) -> Verdict:
        verdict = self.service.evaluate(raw, envelope, list(symbols))
        writer.submit(*self.service.verdict_record(verdict, raw, envelope))
        return verdict


class HttpScoring:
    """The scoring API over HTTP (``mailsift.api``): ``POST <scorer_url>/v1/score``.

    The raw message is the body (``message/rfc822``), the envelope goes in query parameters
    (``ip``, ``helo``, ``from``, ``rcpt``..., ``user``, ``hostname``), the key as a bearer
    token. The answer is the verdict's JSON, read by ``mailsift.verdict.decode_verdict``. The
    API takes no check symbols: over HTTP the model sees the checks only through
    ``Authentication-Results``.
    """

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0) -> None:
        import httpx

        headers = {"Content-Type": "message/rfc822"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1/score") else f"{base}/v1/score"
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def score(self, raw: bytes, envelope: Envelope, symbols: Sequence[Symbol]) -> Verdict:
        params: list[tuple[str, str | int | float | bool | None]] = [
            (k, v)
            for k, v in (
                ("ip", envelope.client_ip),
                ("helo", envelope.helo),
                ("from", envelope.mail_from),
                ("user", envelope.auth_user),
                ("hostname", envelope.client_name),
            )
            if v
        ]
        params += [("rcpt", r) for r in envelope.rcpt_to]
        try:
            resp = await self.client.post(self.url, content=raw, params=params)
            resp.raise_for_status()
            verdict = decode_verdict(resp.content)
        except Exception as exc:
            outages.dependency_failed("scorer_api", f"{self.url}: {exc!r}")
            raise ScoringUnavailable(str(exc), reason="scorer_api") from exc
        outages.dependency_ok("scorer_api")
        return verdict

    async def aclose(self) -> None:
        await self.client.aclose()
