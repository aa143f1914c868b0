"""Fixtures for the feedback tests: a fresh Scorer per test (learning mutates its model), a
borderline ham message from the held-out corpus and a way to make campaign variants of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailsift.config import Settings, load_settings
from mailsift.store import Store
from tests.fixtures.model import campaign_copy, pick_borderline_ham

FB_TRAIN_HAM, FB_TRAIN_SPAM = 500, 250


@pytest.fixture(scope="session")
def fb_model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    test_settings: Settings,
    corpus_messages,  # type: ignore[no-untyped-def]
    small_split,  # type: ignore[no-untyped-def]
) -> Path:
    """A default-kind model trained on a small stratified slice, over the scorer's own
    features without the rule engine (compiling the stock rules takes minutes on a loaded
    machine; rules are features like any other for learning)."""
    from mailsift.classifier.model import train_model
    from mailsift.classifier.scorer import NoRules
    from mailsift.pipeline.extract import samples_of

    _, raws, y = corpus_messages
    train, _ = small_split
    ham = [i for i in train if y[i] == 0][:FB_TRAIN_HAM]
    spam = [i for i in train if y[i] == 1][:FB_TRAIN_SPAM]
    idx = sorted(ham + spam)
    samples = samples_of([raws[i] for i in idx], test_settings, NoRules())
    model = train_model(samples, y[idx], None, test_settings)
    out = tmp_path_factory.mktemp("fb-model") / "model"
    model.save(out, {"training_data": {"source": "feedback tests", "messages": len(idx)}})
    return out


@pytest.fixture(scope="session")
def fb_scorer(fb_model_dir: Path, test_settings: Settings):  # type: ignore[no-untyped-def]
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import NoRules, Scorer

    return Scorer(SpamModel.load(fb_model_dir), NoRules(), test_settings)


def settings_with(base: Settings, **feedback: object) -> Settings:
    return load_settings(
        paths=base.paths.model_dump(),
        rules=base.rules.model_dump(),
        feedback={**base.feedback.model_dump(), **feedback},
    )


@pytest.fixture
def make_service(
    fb_model_dir: Path, test_settings: Settings, sqlite_store_url: str
) -> Iterator[Callable[..., object]]:
    """make_service(store=None, **feedback_settings) -> ScoringService with its own Scorer."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import NoRules, Scorer
    from mailsift.service import ScoringService
    from mailsift.store import open_store

    made: list[ScoringService] = []
    stores: list[Store] = []

    def make(store: Store | None = None, **fb: object) -> ScoringService:
        settings = settings_with(test_settings, **fb)
        if store is None:
            if not stores:
                stores.append(open_store(sqlite_store_url))
            store = stores[0]
        scorer = Scorer(SpamModel.load(fb_model_dir), NoRules(), settings)
        svc = ScoringService(settings, scorer=scorer, store=store)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()
    for s in stores:
        s.close()


@pytest.fixture(scope="session")
def borderline_ham(fb_scorer, corpus_messages, small_split) -> bytes:  # type: ignore[no-untyped-def]
    """A held-out ham message the small model scores ham, but not confidently."""
    return pick_borderline_ham(fb_scorer, corpus_messages, small_split, near=0.25, among=300)


@pytest.fixture
def campaign(borderline_ham: bytes) -> Callable[[int | str], bytes]:
    return lambda n: campaign_copy(borderline_ham, n)


@pytest.fixture(scope="session")
def rejected_spam(fb_scorer, corpus_messages, small_split) -> bytes:  # type: ignore[no-untyped-def]
    """A held-out spam message the small model rejects (p >= thresholds.reject)."""
    _, raws, y = corpus_messages
    _, test = small_split
    from mailsift.classifier.scorer import thresholds_for

    reject = thresholds_for(fb_scorer.settings, fb_scorer.model).reject
    for i in [i for i in test if y[i] == 1][:300]:
        v = fb_scorer.score(campaign_copy(bytes(raws[i]), "probe"))
        if reject <= v.probability < 0.99999:
            return bytes(raws[i])
    raise AssertionError("no rejected spam in the held-out set")


@pytest.fixture(scope="session")
def clear_ham(fb_scorer, corpus_messages, small_split) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Two held-out ham messages the small model scores clearly ham."""
    _, raws, y = corpus_messages
    _, test = small_split
    out = [bytes(raws[i]) for i in [i for i in test if y[i] == 0][:200]]
    out = [r for r in out if fb_scorer.score(campaign_copy(r, "probe")).probability < 0.01]
    assert len(out) >= 2, "no clear ham in the held-out set"
    return out[:2]
