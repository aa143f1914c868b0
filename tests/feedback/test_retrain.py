"""``mailsift retrain``: base corpus + feedback through the pipeline (MLflow run, gate), and a
service that loads the retrained model replays only the feedback it does not contain."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mailsift.commands.retrain import retrain_once
from mailsift.config import load_settings
from mailsift.store import open_store


def test_retrain_with_feedback_then_reload(
    tmp_path: Path, sqlite_store_url: str, corpus_messages, campaign
) -> None:  # type: ignore[no-untyped-def]
    _, raws, y = corpus_messages
    corpus = tmp_path / "corpus"
    for label, cls in (("ham", 0), ("spam", 1)):
        (corpus / label).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(y == cls)[:60]):
            (corpus / label / f"{n}.eml").write_bytes(raws[i])
    settings = load_settings(
        paths={"var_dir": tmp_path / "var", "models_dir": tmp_path / "models"},
        rules={"use_default": False, "use_stock": False},
        store={"url": sqlite_store_url},
        train={"n_jobs": 1},
    )
    store = open_store(sqlite_store_url)
    try:
        from mailsift.learning.feedback import record_report

        record_report(store, settings, "spam", "alice@x.test", campaign(1))
        second = campaign(2)
        record_report(store, settings, "spam", "bob@x.test", second)
        record_report(store, settings, "ham", "bob@x.test", second)  # relabel
        summary = retrain_once(settings, [str(corpus)], store=store)
        assert summary["feedback_messages"] == 2 and summary["feedback_spam"] == 1
        assert summary["last_event_id"] == 3
        assert summary["registered_version"] is not None
        assert summary["promoted"] is True  # no champion yet: the gate lets it through
        version = summary["model_version"]
        assert store.feedback.retrain_event_id(version) == 3
        assert store.audit.recent(action="retrain")[0].target == version

        # a service on the retrained model: nothing to replay; newer feedback is applied
        from mailsift.classifier.model import SpamModel
        from mailsift.classifier.scorer import NoRules, Scorer
        from mailsift.service import ScoringService

        model = SpamModel.load(summary["model_dir"])
        svc = ScoringService(settings, scorer=Scorer(model, NoRules(), settings), store=store)
        assert svc.learner.applied_event_id == 3
        res = svc.feedback("spam", "carol@x.test", raw=campaign(3), trusted=True)
        assert res.status == "learned"
        assert svc.learner.applied_event_id == 4
        assert svc.reload_model(summary["model_dir"]) == version
        assert svc.learner.applied_event_id == 4  # replayed event 4 onto the reloaded model
    finally:
        store.close()
