"""Dashboard figures from a real store (verdicts, feedback, greylist, quarantine) and the
SVG charts drawn from them (escaped, no script, no inline style)."""

from __future__ import annotations

import time

from mailsift.api.ui import stats
from mailsift.api.ui.charts import horizontal_bars
from mailsift.api.ui.context import UiContext
from mailsift.api.ui.security import LoginThrottle, SessionCodec
from mailsift.quarantine import Quarantine
from mailsift.store.base import FeedbackRecord, VerdictRecord
from mailsift.store.greylist import SqliteGreylistStore, Triplet
from tests.fixtures.ports import free_port
from tests.quarantine.conftest import (
    envelope,
    make_settings,
    sample_message,
    sample_verdict,
)


def test_dashboard_counts(tmp_path, sqlite_store) -> None:
    qsettings = make_settings(tmp_path, free_port())
    now = time.time()
    store = sqlite_store
    for i, (action, rules) in enumerate(
        [
            ("ham", [("BAYES_00", -1.0)]),
            ("spam", [("DNSBL_SBL", 3.0), ("URIBL_X", 1.0)]),
            ("hold", [("DNSBL_SBL", 3.0), ("GREYLIST_PASSED", 0.0)]),
            ("reject", [("GTUBE", 1000.0)]),
            ("hold", [("DNSBL_XBL", 3.0)]),
        ]
    ):
        store.verdicts.add(
            VerdictRecord(f"v{i}", f"d{i}", 1.0, 0.5, action, created=now - i * 3600, rules=rules)
        )
    store.verdicts.add(VerdictRecord("old", "dold", 1.0, 0.5, "ham", created=now - 40 * 86400))
    store.feedback.add(FeedbackRecord("spam", "alice@mailsift.test", "d1", created=now))
    store.feedback.add(
        FeedbackRecord("ham", "bob@mailsift.test", "d0", created=now, status="duplicate")
    )
    grey = SqliteGreylistStore(qsettings.paths.var_dir / "greylist.db")
    grey.put_triplet("a", Triplet(now - 600, None, now - 600, now + 3600))
    grey.put_triplet("b", Triplet(now - 900, now - 300, now - 300, now + 86400))
    grey.put_triplet("c", Triplet(now - 900, now - 300, now - 300, now - 1))  # expired
    grey.close()
    q = Quarantine(qsettings, store)
    q.hold(sample_message(), envelope(), sample_verdict())

    ctx = UiContext(
        qsettings, None, q, None, SessionCodec(qsettings, store), LoginThrottle(store, qsettings.ui)
    )
    d = stats.dashboard(ctx, 14, now)
    assert d["verdicts"]["totals"] == {"ham": 1, "spam": 1, "hold": 2, "reject": 1}
    assert d["rules"][0] == ("DNSBL_SBL", 2.0)
    assert dict(d["dnsbl"]) == {"DNSBL_SBL": 2.0, "DNSBL_XBL": 1.0}
    assert d["feedback"]["totals"] == {"spam": 1, "ham": 1}
    assert dict(d["feedback"]["by_status"]) == {"accepted": 1.0, "duplicate": 1.0}
    g = dict(d["greylist"])
    assert g["triplets waiting"] == 1 and g["triplets passed"] == 1
    assert g["GREYLIST_PASSED"] == 1
    assert d["quarantine"] == {"held": 1}
    for name, svg in d["charts"].items():
        assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg, name
    hourly = stats.dashboard(ctx, 2, now)
    assert len(hourly["verdicts"]["labels"]) == 48
    assert hourly["verdicts"]["totals"]["hold"] == 2


def test_chart_labels_are_escaped() -> None:
    svg = horizontal_bars(
        [("<script>alert(1)</script>", 3.0), ('"><img src=x>', 1.0)], title="<b>t</b>"
    )
    assert "<script>" not in svg and "<img" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg
