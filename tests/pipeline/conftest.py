"""Pipeline test set-up: a small handwritten corpus and settings in a temp var dir."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailsift.config import Settings, load_settings
from tests.pipeline import fixtures as F

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DRIFT_WORDS = [
    "bitcoin",
    "wallet",
    "token",
    "airdrop",
    "mining",
    "crypto",
    "profit",
    "invest",
    "coin",
]


def drift_corpus(root: Path, n: int = 120) -> Path:
    """Spam changes vocabulary half-way (a new campaign); ham stays the same. Dated in order."""
    start = datetime(2002, 3, 1, tzinfo=UTC)
    msgs: list[tuple[str, bytes]] = []
    for i in range(n):
        when = start + timedelta(hours=i)
        label = "spam" if i % 3 == 0 else "ham"
        if label == "spam" and i >= n // 2:  # the new campaign: other words, sender, subject
            body = " ".join(DRIFT_WORDS[(i + k) % 9] for k in range(30)) + f"\nid {i}\n"
            raw = F.message(
                i,
                label,
                when=when,
                body=body,
                sender="alice@work.example",  # dressed as ham: only the new words tell
                subject=f"notes on the {DRIFT_WORDS[i % 9]}",
            )
        else:
            raw = F.message(i, label, when=when)
        msgs.append((label, raw))
    return F.labelled(root, msgs)


def make_settings(tmp: Path, corpus: Path | None = None, **over: object) -> Settings:
    return load_settings(
        paths={"var_dir": tmp / "var", "models_dir": tmp / "models", "corpus": corpus},
        rules={"use_stock": False, "cache_dir": tmp / "rules-cache"},
        train={"n_jobs": 1},
        model={"n_features": 2**16},
        **over,
    )


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 messages (1/3 spam) in the SpamAssassin archive layout, dated over 80 hours."""
    root = tmp_path_factory.mktemp("sa")
    start = datetime(2002, 5, 1, tzinfo=UTC)
    spam = [F.message(i, "spam", when=start + timedelta(hours=i)) for i in range(0, 80, 3)]
    ham = [F.message(i, "ham", when=start + timedelta(hours=i)) for i in range(80) if i % 3]
    F.sa_archive(root / "20030228_spam.tar.bz2", "spam", spam)
    F.sa_archive(root / "20030228_easy_ham.tar.bz2", "easy_ham", ham)
    return root
