"""Quarantine test helpers: a real SMTP next hop (aiosmtpd on loopback) that records what
arrives, settings pointing at it, and a Quarantine over a real store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from mailsift.config import Settings, load_settings
from mailsift.quarantine import Quarantine
from mailsift.store import Store
from mailsift.verdict import Action, Envelope, Symbol, TokenContribution, Verdict, new_verdict_id
from tests.fixtures.ports import free_port


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 Ok: queued"


@dataclass
class NextHop:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


@pytest.fixture
def next_hop() -> Iterator[NextHop]:
    handler = RecordingHandler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield NextHop("127.0.0.1", port, handler)
    finally:
        ctl.stop()


def make_settings(tmp_path: Path, port: int, **over: object) -> Settings:
    return load_settings(
        paths={"var_dir": str(tmp_path / "var"), "models_dir": str(tmp_path / "models")},
        smtp={"next_hop_host": "127.0.0.1", "next_hop_port": port},
        quarantine={"retention_days": 30.0},
        ui={"secret_key": "test-secret", "secure_cookies": False},
        **over,
    )


@pytest.fixture
def qsettings(tmp_path: Path, next_hop: NextHop) -> Settings:
    return make_settings(tmp_path, next_hop.port)


@pytest.fixture
def quarantine(qsettings: Settings, store: Store) -> Quarantine:
    return Quarantine(qsettings, store)


def sample_message(
    subject: str = "Cheap meds",
    sender: str = "spammer@bad.example",
    to: str = "alice@mailsift.test",
    body: str = "Buy now!\r\n",
) -> bytes:
    return (
        f"From: Spam King <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{new_verdict_id()}@bad.example>\r\nDate: Sun, 29 Nov 2026 05:00:00 +0000\r\n"
        f"\r\n{body}"
    ).encode()


def sample_verdict(score: float = 9.5, probability: float = 0.95) -> Verdict:
    return Verdict(
        verdict_id=new_verdict_id(),
        probability=probability,
        score=score,
        required_score=5.0,
        action=Action.HOLD,
        rules=[Symbol("MEDS_PITCH", 2.5, "Pharmacy pitch"), Symbol("URGENT_BUY", 1.0, "Urgency")],
        tokens=[TokenContribution("body:meds", 1.7), TokenContribution("hdr:mailsift.test", -0.4)],
        model_version="test-1",
        reason="spam probability 0.95",
    )


def envelope(sender: str = "spammer@bad.example", *rcpts: str) -> Envelope:
    return Envelope(
        client_ip="192.0.2.1", mail_from=sender, rcpt_to=tuple(rcpts or ("alice@mailsift.test",))
    )


def hold_sample(q: Quarantine, subject: str, sender: str, *rcpts: str, score: float = 9.5) -> str:
    """Hold ``sample_message(subject)`` from ``sender`` to ``rcpts`` with a sample verdict
    of ``score``; returns the entry's id."""
    return q.hold(sample_message(subject), envelope(sender, *rcpts), sample_verdict(score))


HAM_TEXTS = [
    "Hi team, the meeting moves to Thursday at 10. Agenda attached in the wiki.",
    "Can you review my patch for the parser? The tests pass locally.",
    "Lunch tomorrow? The new place near the station opened this week.",
    "Minutes of the board call: budget approved, hiring plan next month.",
    "The build is green again after the dependency update, thanks for the fix.",
    "Please send me the slides from yesterday's talk when you have a moment.",
]
SPAM_TEXTS = [
    "MAKE MONEY FAST!!! Earn $5000 a week from home, 100% GUARANTEED, act now!",
    "Cheap viagra and cialis, no prescription, lowest prices, order today!!!",
    "You WON the lottery! Claim your FREE prize now, click here, limited offer!",
    "Lose weight fast with this miracle pill, FREE trial, buy now and save!!!",
    "Refinance your mortgage at the lowest rates, no credit check, apply now!",
    "Hot singles in your area want to meet you, click here for FREE access!!!",
]


def corpus_message(i: int, text: str) -> bytes:
    return (
        f"From: sender{i}@example.org\r\nTo: alice@mailsift.test\r\nSubject: note {i}\r\n"
        f"Message-ID: <m{i}@example.org>\r\n\r\n{text}\r\n"
    ).encode()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in a second on a dozen synthetic messages (project rules only):
    enough for the scoring service to score and learn in quarantine tests."""
    from mailsift.classifier.model import train_model
    from mailsift.classifier.scorer import load_rules
    from mailsift.pipeline.extract import samples_of

    tmp = tmp_path_factory.mktemp("tiny-model")
    settings = tiny_settings(tmp)
    raws = [corpus_message(i, t) for i, t in enumerate(HAM_TEXTS * 3 + SPAM_TEXTS * 3)]
    y = [0] * (len(HAM_TEXTS) * 3) + [1] * (len(SPAM_TEXTS) * 3)
    samples = samples_of(raws, settings, load_rules(settings))
    model = train_model(samples, y, None, settings)
    out = tmp / "model"
    model.save(out, {"training_data": {"source": "synthetic", "messages": len(raws)}})
    return out


def tiny_settings(tmp: Path, port: int = 25, **over: object) -> Settings:
    return make_settings(
        tmp, port, rules={"use_stock": False, "cache_dir": str(tmp / "rules-cache")}, **over
    )


@pytest.fixture
def learning_quarantine(
    tmp_path: Path, next_hop: NextHop, store: Store, tiny_model_dir: Path
) -> Iterator[Quarantine]:
    """A Quarantine whose ScoringService (tiny model) learns from its feedback."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    settings = tiny_settings(tmp_path, next_hop.port)
    scorer = Scorer(SpamModel.load(tiny_model_dir), load_rules(settings), settings)
    service = ScoringService(settings, scorer=scorer, store=store)
    yield Quarantine(settings, store, service=service)
