"""``store.stats``: the dashboard's counts on both backends."""

from __future__ import annotations

from mailsift.store import Store, VerdictRecord
from mailsift.store.base import FeedbackRecord
from mailsift.store.stats import StatsRepo

DAY = 86400.0
T0 = 20_000 * DAY  # the start of a day (UTC)


def test_counts_by_bucket_status_and_rule(store: Store) -> None:
    assert isinstance(store.stats, StatsRepo)
    for vid, created, action, rules in [
        ("a", T0 + 10, "ham", [("BAYES_00", -1.0)]),
        ("b", T0 + 3700, "spam", [("DNSBL_SBL", 3.0), ("URIBL_X", 1.0)]),
        ("c", T0 + 3800, "spam", [("DNSBL_SBL", 3.0)]),
        ("d", T0 + DAY + 5, "hold", []),
        ("old", T0 - 10, "ham", [("DNSBL_SBL", 3.0)]),
    ]:
        store.verdicts.add(
            VerdictRecord(vid, "d" * 64, 1.0, 0.5, action, created=created, rules=rules)
        )
    store.feedback.add(FeedbackRecord("spam", "al@x.test", "d1", created=T0 + 1))
    store.feedback.add(
        FeedbackRecord("spam", "bo@x.test", "d2", created=T0 + 2, status="duplicate")
    )
    store.feedback.add(FeedbackRecord("ham", "al@x.test", "d3", created=T0 + DAY))

    hours = sorted(store.stats.verdicts_by_bucket(T0, 3600.0))
    h0 = int(T0 // 3600)
    assert hours == [(h0, "ham", 1), (h0 + 1, "spam", 2), (h0 + 24, "hold", 1)]
    days = sorted(store.stats.verdicts_by_bucket(T0, DAY))
    assert days == [(20_000, "ham", 1), (20_000, "spam", 2), (20_001, "hold", 1)]
    assert sorted(store.stats.feedback_by_bucket(T0, DAY)) == [
        (20_000, "spam", 2),
        (20_001, "ham", 1),
    ]
    assert sorted(store.stats.feedback_by_status(T0)) == [("accepted", 2), ("duplicate", 1)]
    assert store.stats.rule_hits(T0) == {"BAYES_00": 1, "DNSBL_SBL": 2, "URIBL_X": 1}
    assert store.stats.rule_hits(T0 - DAY, limit=1) == {}  # the latest verdict hit nothing
