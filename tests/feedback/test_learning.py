"""Feedback learning through the ScoringService: flips, dedupe, relabels, guards, sync."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mailsift.classifier.model import NB_LOGIT_SCALE
from mailsift.learning.feedback import FeedbackError
from mailsift.verdict import Action, Envelope


def test_trusted_feedback_flips_borderline_campaign_after_a_few_reports(
    make_service, campaign
) -> None:
    svc = make_service()
    probe = campaign("probe")
    first = svc.score(probe)
    assert first.action is Action.HAM and 0.02 < first.probability < 0.5
    probs = [first.probability]
    for n in range(1, 9):
        res = svc.feedback("spam", f"user{n}@x.test", raw=campaign(n), source="admin")
        assert res.status == "learned", res
        probs.append(svc.score(probe).probability)
        if probs[-1] >= svc.settings.thresholds.resolved(svc.scorer.model.thresholds_).spam:
            break
    # each report of the campaign moves the unseen copy towards spam ...
    assert all(b > a for a, b in itertools.pairwise(probs)), probs
    # ... and a few reports flip it
    assert svc.score(probe).action is not Action.HAM, probs
    assert len(probs) - 1 <= 5, probs


def test_same_report_twice_changes_nothing(make_service, campaign) -> None:
    svc = make_service()
    probe, msg = campaign("probe"), campaign(1)
    first = svc.feedback("spam", "alice@x.test", raw=msg, trusted=True)
    assert first.status == "learned"
    p1 = svc.score(probe).probability
    lr_before = svc.scorer.model.lr_.coef_.copy()
    nb_before = svc.scorer.model.nb_.feature_count_.copy()
    again = svc.feedback("spam", "alice@x.test", raw=msg, trusted=True)
    other = svc.feedback("spam", "bob@x.test", raw=msg, trusted=True)  # counts once
    assert again.status == other.status == "duplicate"
    assert not again.learned and again.event_id is None
    assert svc.score(probe).probability == p1
    assert np.array_equal(svc.scorer.model.lr_.coef_, lr_before)
    assert np.array_equal(svc.scorer.model.nb_.feature_count_, nb_before)
    statuses = [f.status for f in svc.store.feedback.recent()]
    assert statuses == ["duplicate", "duplicate", "learned"]


def test_opposite_label_moves_back(make_service, campaign) -> None:
    svc = make_service()
    probe, msg = campaign("probe"), campaign(1)
    p0 = svc.score(probe).probability
    nb0 = svc.scorer.model.nb_.feature_count_.copy()
    svc.feedback("spam", "alice@x.test", raw=msg, trusted=True)
    p_spam = svc.score(probe).probability
    res = svc.feedback("ham", "alice@x.test", raw=msg, trusted=True)
    assert res.status == "relabelled" and "took back spam" in res.detail
    p_ham = svc.score(probe).probability
    assert p_spam > p0 and p_ham < p_spam
    # naive Bayes took the spam counts back exactly and added the ham counts
    nb = svc.scorer.model.nb_.feature_count_
    assert np.allclose(nb[1], nb0[1])
    assert nb[0].sum() > nb0[0].sum()
    state = svc.store.feedback.learned(res.digest)
    assert state is not None and state.label == "ham"


def test_feedback_by_verdict_id(make_service, campaign) -> None:
    svc = make_service()
    v = svc.score(campaign(1), Envelope(mail_from="a@b.test", rcpt_to=("alice@x.test",)))
    rec = svc.verdict(v.verdict_id)
    assert rec is not None and rec.recipients == ("alice@x.test",) and rec.sender == "a@b.test"
    res = svc.feedback("spam", "alice@x.test", verdict_id=v.verdict_id)
    assert res.status == "personal" and res.digest == v.digest and res.verdict_id == v.verdict_id
    assert svc.store.feedback.message(v.digest) is not None  # kept for the next retrain
    with pytest.raises(FeedbackError):
        svc.feedback("spam", "alice@x.test", verdict_id="no-such-verdict")
    with pytest.raises(FeedbackError):
        svc.feedback("maybe", "alice@x.test", raw=campaign(2))
    with pytest.raises(FeedbackError):
        svc.feedback("spam", "", raw=campaign(2))
    with pytest.raises(FeedbackError):
        svc.feedback("spam", "alice@x.test")


def test_rate_caps_count_per_reporter(make_service, campaign) -> None:
    svc = make_service(per_user_per_hour=2)
    assert svc.feedback("spam", "alice@x.test", raw=campaign(1)).learned
    assert svc.feedback("spam", "alice@x.test", raw=campaign(2)).learned
    before = svc.scorer.model.lr_.coef_.copy()
    capped = svc.feedback("spam", "alice@x.test", raw=campaign(3))
    assert capped.status == "rate_limited" and "alice@x.test" in capped.detail
    assert np.array_equal(svc.scorer.model.lr_.coef_, before)
    # every reporter has a bucket of its own: alice's flood locks out nobody else
    for user in ("bob@x.test", "carol@y.test"):
        assert svc.feedback("spam", user, raw=campaign(4)).learned
        assert svc.feedback("spam", user, raw=campaign(5)).learned
    # a user reporting through a pipe or a key: the reporter is the one counted
    assert svc.feedback("spam", "dave@x.test", raw=campaign(6), reporter="bob@x.test").status == (
        "rate_limited"
    )
    # trusted reporters are not capped
    assert svc.feedback("spam", "alice@x.test", raw=campaign(7), source="trap").learned


def test_drift_cap(make_service, campaign) -> None:
    svc = make_service(max_drift=0.02)
    up = svc.learner.updater
    assert up is not None
    statuses = [
        svc.feedback("spam", "mallory@x.test", raw=campaign(n), trusted=True).status
        for n in range(12)
    ]
    assert "drift_capped" in statuses
    model = svc.scorer.model
    sample = svc.scorer.sample(campaign("probe"))
    xt, xm = model.vectorizer.transform_blocks([sample])
    cols = model._lr_x(xt, xm).indices
    drift_lr = np.abs(model.lr_.coef_[0, cols] - up.base_lr[cols])
    assert drift_lr.max() <= up.lr_cap + 1e-9
    drift_nb = np.abs(up._nb_ratio(cols) - up.base_nb[cols])
    assert drift_nb.max() <= up.nb_cap + 1e-3
    # in the model's own log-odds, each weight moved at most max_drift
    stack = model.stack_.coef_[0]
    assert (drift_lr * abs(stack[1])).max() <= 0.02 + 1e-6
    assert (drift_nb * abs(stack[0]) / NB_LOGIT_SCALE).max() <= 0.02 + 1e-3
    audit = svc.store.audit.recent(actor="mallory@x.test")
    assert len(audit) == 12 and {e.action for e in audit} == {"feedback"}
    assert any(f.status == "drift_capped" for f in svc.store.feedback.recent())


def test_trusted_sender_wins_over_spam_score(make_service) -> None:
    svc = make_service()
    gtube = (
        b"From: Friend <friend@pals.test>\r\nTo: alice@x.test\r\nSubject: hi\r\n\r\n"
        b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"
    )
    env = Envelope(client_ip="192.0.2.1", mail_from="friend@pals.test", rcpt_to=("alice@x.test",))
    assert svc.score(gtube, env).action is Action.REJECT
    svc.lists.add("trusted", "*@pals.test", owner="alice@x.test", actor="alice@x.test")
    v = svc.score(gtube, env)
    assert v.action is Action.HAM and v.list_decision == "trusted"
    assert v.probability == 1.0  # the score is kept, the list overrides the action
    rec = svc.verdict(v.verdict_id)
    assert rec.list_decision == "trusted" and rec.action == "ham"
    # not for another recipient
    bob = Envelope(client_ip="192.0.2.1", mail_from="friend@pals.test", rcpt_to=("bob@x.test",))
    assert svc.score(gtube, bob).action is Action.REJECT


def test_untrusted_and_block(make_service, campaign) -> None:
    svc = make_service()
    msg = campaign(1)
    env = Envelope(mail_from="news@shop.test", rcpt_to=("alice@x.test",))
    assert svc.score(msg, env).action is Action.HAM
    svc.lists.add("untrusted", "shop.test", owner="alice@x.test")
    assert svc.score(msg, env).action is Action.SPAM
    svc.lists.add("block", "*@shop.test")
    v = svc.score(msg, env)
    assert v.action is Action.REJECT and v.list_decision == "block"
    svc.lists.add("allow", "news@shop.test")  # allow beats block
    assert svc.score(msg, env).action is Action.HAM


def test_processes_share_lessons_and_restart_replays(make_service, campaign) -> None:
    a = make_service()
    b = make_service(store=a.store)  # another worker on the same store
    probe = campaign("probe")
    assert a.score(probe).probability == b.score(probe).probability
    for n in range(3):
        a.feedback("spam", "alice@x.test", raw=campaign(n), trusted=True)
    pa = a.score(probe).probability
    b.learner.sync()
    assert b.score(probe).probability == pytest.approx(pa, abs=1e-9)
    c = make_service(store=a.store)  # a restart: fresh base model, replays the log
    assert c.score(probe).probability == pytest.approx(pa, abs=1e-9)
    assert c.learner.applied_event_id == a.store.feedback.last_event_id()


def test_partial_fit_mode(make_service, campaign) -> None:
    svc = make_service(mode="partial_fit")
    assert svc.learner.updater is None
    probe = campaign("probe")
    p0 = svc.score(probe).probability
    assert svc.feedback("spam", "alice@x.test", raw=campaign(1), trusted=True).learned
    assert svc.score(probe).probability > p0


def test_service_on_each_backend(make_service, store, campaign) -> None:
    """The service's verdicts, feedback and lists on SQLite and on PostgreSQL."""
    svc = make_service(store=store)
    env = Envelope(client_ip="203.0.113.9", mail_from="x@y.test", rcpt_to=("alice@x.test",))
    v = svc.score(campaign(1), env)
    rec = store.verdicts.get(v.verdict_id)
    assert rec is not None and rec.action == v.action.value and rec.digest == v.digest
    assert rec.client_ip == "203.0.113.9" and rec.model_version == v.model_version
    res = svc.feedback("spam", "alice@x.test", verdict_id=v.verdict_id, trusted=True)
    assert res.status == "learned" and store.feedback.learned(v.digest).label == "spam"
    assert svc.feedback("spam", "bob@x.test", verdict_id=v.verdict_id).status == "personal"
    assert svc.feedback("spam", "bob@x.test", verdict_id=v.verdict_id).status == "duplicate"
    svc.lists.add("trusted", "y.test", owner="alice@x.test")
    assert svc.score(campaign(2), env).list_decision == "trusted"
