"""Learning from the quarantine through the real ScoringService (a tiny model, both store
backends): "spam" teaches spam and can untrust the sender; "not spam" teaches ham, releases
and can trust the sender; the same correction twice teaches once; everything is audited."""

from __future__ import annotations

import pytest

from mailsift.quarantine import HELD, RELEASED, Quarantine, QuarantineError
from mailsift.verdict import Envelope
from tests.quarantine.conftest import NextHop, corpus_message, envelope


def _held(q: Quarantine, text: str, rcpt: str = "alice@mailsift.test") -> tuple[str, bytes]:
    raw = corpus_message(99, text).replace(b"sender99@example.org", b"pusher@promo.example")
    env = Envelope(client_ip="192.0.2.9", mail_from="pusher@promo.example", rcpt_to=(rcpt,))
    verdict = q.service.score(raw, env)  # recorded in the store, like the SMTP filter does
    return q.hold(raw, env, verdict), raw


def test_a_users_spam_teaches_their_mail_and_untrusts(
    learning_quarantine: Quarantine, store
) -> None:
    q = learning_quarantine
    qid, raw = _held(q, "Special offer on newsletter subscriptions this week, reply for details")
    alice = Envelope(mail_from="other@promo.example", rcpt_to=("alice@mailsift.test",))
    bob = Envelope(mail_from="other@promo.example", rcpt_to=("bob@mailsift.test",))
    before = q.service.scorer.score(raw, alice).probability
    before_bob = q.service.scorer.score(raw, bob).probability
    r = q.learn(
        qid, "spam", "ui:alice@mailsift.test", untrust_sender=True, reporter="alice@mailsift.test"
    )
    assert r.ok and r.status == HELD and "spam: personal" in r.detail
    # alice's own mail follows her verdict at once; a user's verdict alone moves nobody else
    assert q.service.scorer.score(raw, alice).probability > before
    assert q.service.scorer.score(raw, bob).probability == pytest.approx(before_bob)
    e = q.get(qid)
    assert e.label == "spam" and e.status == HELD
    fb = store.feedback.recent(user="alice@mailsift.test")
    assert [(f.label, f.source, f.verdict_id) for f in fb] == [("spam", "quarantine", e.verdict_id)]
    untrusted = store.lists.entries(kind="untrusted", owner="alice@mailsift.test")
    assert [x.pattern for x in untrusted] == ["pusher@promo.example"]
    # the same correction again teaches nothing new
    again = q.learn(qid, "spam", "ui:alice@mailsift.test", reporter="alice@mailsift.test")
    assert again.ok and "personal" not in again.detail
    assert len(store.feedback.recent(user="alice@mailsift.test")) == 1
    acts = [a.action for a in store.audit.recent(actor="ui:alice@mailsift.test")]
    assert acts.count("quarantine.learn") == 2


def test_an_admins_spam_teaches_everyone(learning_quarantine: Quarantine) -> None:
    q = learning_quarantine
    qid, raw = _held(q, "Exclusive deal on printer toner this month only, order today")
    before = q.service.scorer.score(raw).probability
    r = q.learn(qid, "spam", "ui:admin@mailsift.test", reporter="admin@mailsift.test", trusted=True)
    assert r.ok and "spam: learned" in r.detail
    assert q.service.scorer.score(raw).probability > before


def test_not_spam_teaches_releases_and_trusts(
    learning_quarantine: Quarantine, next_hop: NextHop, store
) -> None:
    q = learning_quarantine
    qid, raw = _held(q, "Free lunch offer tomorrow, click here for the menu and reply now")
    store_lists = store.lists
    q.learn(qid, "spam", "admin", untrust_sender=True, trusted=True)  # first: spam...
    before = q.service.scorer.score(raw).score  # points: not saturated like probability
    r = q.learn(qid, "ham", "admin", trust_sender=True, trusted=True)  # ...then corrected
    assert r.ok and r.status == RELEASED
    assert q.service.scorer.score(raw).score < before
    assert len(next_hop.messages) == 1
    assert next_hop.messages[0].rcpts == ["alice@mailsift.test"]
    kinds = {(x.kind, x.pattern) for x in store_lists.entries(owner="alice@mailsift.test")}
    assert kinds == {("trusted", "pusher@promo.example")}
    # a second "not spam" click neither teaches nor delivers again
    r2 = q.learn(qid, "ham", "admin", trust_sender=True, trusted=True)
    assert r2.already and len(next_hop.messages) == 1


def test_learn_refuses_contradictions_and_deleted(learning_quarantine: Quarantine) -> None:
    q = learning_quarantine
    qid, _ = _held(q, "hello there")
    with pytest.raises(QuarantineError):
        q.learn(qid, "spam", "admin", trust_sender=True)
    with pytest.raises(QuarantineError):
        q.learn(qid, "ham", "admin", untrust_sender=True)
    with pytest.raises(ValueError):
        q.learn(qid, "maybe", "admin")
    q.delete(qid, "admin")
    with pytest.raises(QuarantineError) as exc:
        q.learn(qid, "spam", "admin")
    assert exc.value.status == 409


def test_learn_without_a_recorded_verdict_uses_the_message(
    learning_quarantine: Quarantine, store
) -> None:
    """A verdict recorded elsewhere (HTTP scorer on another machine): learn from the raw."""
    from tests.quarantine.conftest import sample_message, sample_verdict

    q = learning_quarantine
    qid = q.hold(sample_message(), envelope(), sample_verdict())
    r = q.learn(qid, "spam", "admin", trusted=True)
    assert r.ok and "spam: learned" in r.detail
    assert store.feedback.recent()[0].verdict_id is None
