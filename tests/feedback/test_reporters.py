"""No single reporter steers everyone: the attacks of one account replayed against the
service (real SQLite store, the real learner), and honest corroboration still working."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mailsift.classifier.scorer import thresholds_for
from mailsift.verdict import Action, Envelope
from tests.fixtures.model import campaign_copy


def _for(user: str) -> Envelope:
    return Envelope(mail_from="sender@campaign.test", rcpt_to=(user,))


def test_one_user_1000_false_ham_reports_move_nobody_else(make_service, rejected_spam) -> None:
    """One account sends 1,000 "ham" reports about a rejected spam and 50 variants: other
    users' score of it moves < 0.1 and a fresh variant is still rejected; the reporter's own
    mail follows their verdict at once; the flood is rate-capped for that account only."""
    svc = make_service()
    probe = campaign_copy(rejected_spam, "probe")
    before_bob = svc.score(probe, _for("bob@other.test")).probability
    before_s = svc.score(rejected_spam, _for("bob@other.test")).probability
    statuses: dict[str, int] = {}
    msgs = [rejected_spam] + [campaign_copy(rejected_spam, n) for n in range(50)]
    for n in range(1000):
        res = svc.feedback("ham", "mallory@evil.test", raw=msgs[n % len(msgs)])
        statuses[res.status] = statuses.get(res.status, 0) + 1
        assert res.scope in ("personal", ""), res
    assert statuses["rate_limited"] == 1000 - svc.settings.feedback.per_user_per_hour
    assert "learned" not in statuses and "budget_capped" not in statuses
    # everyone else: unmoved, and a fresh variant is still rejected
    after_bob = svc.score(probe, _for("bob@other.test"))
    assert abs(after_bob.probability - before_bob) < 0.1
    assert after_bob.action is Action.REJECT
    fresh = svc.score(campaign_copy(rejected_spam, "fresh"), _for("carol@third.test"))
    assert fresh.action is Action.REJECT
    assert abs(svc.score(rejected_spam, _for("bob@other.test")).probability - before_s) < 0.1
    assert svc.learner.layers.g is None  # no global lesson at all
    # ... while mallory's own mail follows mallory's verdicts
    mine = svc.score(campaign_copy(rejected_spam, "mine"), _for("mallory@evil.test"))
    assert mine.action is Action.HAM, mine.probability
    assert any(t.token == "feedback:personal" and t.weight < 0 for t in mine.tokens)
    # a message to mallory and bob: only what both recipients' corrections agree on
    both = svc.score(probe, Envelope(rcpt_to=("mallory@evil.test", "bob@other.test")))
    assert both.action is Action.REJECT


def test_one_user_1000_false_spam_reports_move_nobody_else(make_service, clear_ham) -> None:
    svc = make_service(per_user_per_hour=1000)
    ham, other = clear_ham
    probe = campaign_copy(ham, "probe")
    before = svc.score(probe, _for("bob@other.test")).probability
    before_other = svc.score(other, _for("bob@other.test")).probability
    msgs = [ham] + [campaign_copy(ham, n) for n in range(50)]
    for n in range(1000):
        svc.feedback("spam", "mallory@evil.test", raw=msgs[n % len(msgs)])
    v = svc.score(probe, _for("bob@other.test"))
    assert abs(v.probability - before) < 0.1 and v.action is Action.HAM
    assert abs(svc.score(other, _for("bob@other.test")).probability - before_other) < 0.1
    assert svc.score(campaign_copy(ham, "x"), _for("mallory@evil.test")).action is not Action.HAM


def test_three_reporters_of_three_domains_flip_a_campaign_for_everyone(
    make_service, campaign
) -> None:
    svc = make_service()
    probe = campaign("probe")
    p0 = svc.score(probe, _for("zoe@else.test")).probability
    assert p0 < thresholds_for(svc.settings, svc.scorer.model).spam
    # two reporters: their own mail follows them, everyone else's does not move yet
    for n, user in enumerate(("alice@a.test", "bob@b.test")):
        res = svc.feedback("spam", user, raw=campaign(n))
        assert res.status == "personal" and res.votes == n + 1, res
        assert svc.score(campaign(f"own{n}"), _for(user)).action is not Action.HAM
    assert svc.score(probe, _for("zoe@else.test")).probability == pytest.approx(p0)
    # a second account of a domain that already voted adds nothing
    assert svc.feedback("spam", "alice2@a.test", raw=campaign(5)).votes == 2
    # the third domain: a global lesson within this one round trip
    t = time.perf_counter()
    res = svc.feedback("spam", "carol@c.test", raw=campaign(3))
    elapsed = time.perf_counter() - t
    assert res.status == "learned" and res.scope == "global" and res.votes == 3, res
    v = svc.score(probe, _for("zoe@else.test"))
    assert v.action is not Action.HAM, v.probability
    assert any(t.token == "feedback:global" for t in v.tokens)
    assert elapsed < 5.0  # generous: the figure (< 5 ms for the update) is in the bench
    # other workers (same store) learn the same at their next sync
    other = make_service(store=svc.store)
    assert other.score(probe, _for("zoe@else.test")).probability == pytest.approx(v.probability)


def test_one_trusted_report_flips_at_once(make_service, campaign) -> None:
    svc = make_service()
    probe = campaign("probe")
    assert svc.score(probe).action is Action.HAM
    for n in range(4):
        assert svc.feedback("spam", "postmaster@x.test", raw=campaign(n), source="admin").learned
        if svc.score(probe).action is not Action.HAM:
            break
    assert svc.score(probe).action is not Action.HAM


def test_votes_against_cancel_and_votes_lapse(make_service, campaign) -> None:
    svc = make_service()
    for user in ("a@a.test", "b@b.test"):
        svc.feedback("spam", user, raw=campaign(user))
    assert svc.feedback("ham", "h@h.test", raw=campaign("h")).votes == -1  # 1 ham vs 2 spam
    res = svc.feedback("spam", "c@c.test", raw=campaign("c"))
    assert res.votes == 2 and res.scope == "personal"  # 3 for, 1 against: not enough
    lapsed = make_service(vote_days=1e-9)  # votes older than ~0.1 ms no longer count
    for user in ("d@d.test", "e@e.test", "f@f.test"):
        time.sleep(0.01)
        assert lapsed.feedback("spam", user, raw=campaign("lapse" + user)).scope == "personal"


def test_a_reporters_budget_bounds_what_they_can_move(make_service, campaign) -> None:
    """However many corroborated lessons, the part of any message's log-odds owed to one
    reporter is at most feedback.reporter_budget (the L1 norm of their charges)."""
    budget = 0.3
    svc = make_service(reporter_budget=budget, global_margin=8.0)
    gang = ("a@a.test", "b@b.test", "c@c.test")
    statuses = []
    for n in range(6):
        for user in gang:
            statuses.append(svc.feedback("spam", user, raw=campaign(f"{n}-{user}")).status)
    assert "budget_capped" in statuses
    layers = svc.learner.layers
    assert set(layers.spent) == set(gang)
    assert all(v <= budget + 1e-9 for v in layers.spent.values())
    assert np.abs(layers.g).sum() <= len(gang) * budget + 1e-6
    # so no message, not even the campaign itself, moved more than that
    probe = svc.scorer.sample(campaign("probe"))
    cols = np.unique(svc.scorer.model.row_vectors(probe)[0])
    assert abs(layers.global_offset(cols)) <= len(gang) * budget + 1e-6
