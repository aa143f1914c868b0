"""Figures for the dashboard, from the store's repositories (``store.stats``: one bounded
query each; ``store.quarantine``; the greylist's store) and the model's manifest.

- verdicts over time by action (per day, or per hour for the last 48 h)
- the rules hit most often (from the recorded verdicts' rule hits)
- feedback received per day by label, and by outcome
- the serving model's version and evaluation metrics (from its manifest)
- greylist and DNSBL counts (greylist triplets by state; DNSBL symbols in verdicts)
- quarantine counts by status
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mailsift.api.ui.charts import horizontal_bars, stacked_columns
from mailsift.store.greylist import GreylistStoreError, sqlite_greylist_counts

log = logging.getLogger(__name__)
ACTIONS = ("ham", "spam", "hold", "reject")


def _buckets(now: float, days: int) -> tuple[float, list[int], list[str]]:
    size = 3600.0 if days <= 2 else 86400.0
    n = int(days * 86400 / size)
    last = int(now // size)
    keys = list(range(last - n + 1, last + 1))
    fmt = "%H:00" if size == 3600.0 else "%m-%d"
    labels = [datetime.fromtimestamp(k * size, UTC).strftime(fmt) for k in keys]
    return size, keys, labels


def verdicts_over_time(store: Any, now: float, days: int) -> dict[str, Any]:
    size, keys, labels = _buckets(now, days)
    rows = store.stats.verdicts_by_bucket(keys[0] * size, size)
    index = {k: i for i, k in enumerate(keys)}
    series: dict[str, list[float]] = {a: [0.0] * len(keys) for a in ACTIONS}
    for b, action, n in rows:
        i = index.get(b)
        if i is not None:
            series.setdefault(action, [0.0] * len(keys))[i] += n
    totals = {a: int(sum(v)) for a, v in series.items()}
    return {"labels": labels, "series": series, "totals": totals}


def top_rules(store: Any, since: float, top: int = 15) -> list[tuple[str, float]]:
    counts = store.stats.rule_hits(since)
    return [(k, float(v)) for k, v in counts.most_common(top)]


def feedback_over_time(store: Any, now: float, days: int) -> dict[str, Any]:
    size, keys, labels = _buckets(now, days)
    rows = store.stats.feedback_by_bucket(keys[0] * size, size)
    index = {k: i for i, k in enumerate(keys)}
    series: dict[str, list[float]] = {"spam": [0.0] * len(keys), "ham": [0.0] * len(keys)}
    for b, label, n in rows:
        i = index.get(b)
        if i is not None and label in series:
            series[label][i] += n
    by_status = store.stats.feedback_by_status(keys[0] * size)
    return {
        "labels": labels,
        "series": series,
        "totals": {k: int(sum(v)) for k, v in series.items()},
        "by_status": sorted(((s, float(n)) for s, n in by_status), key=lambda x: -x[1]),
    }


def dnsbl_counts(store: Any, since: float) -> list[tuple[str, float]]:
    return [(k, v) for k, v in top_rules(store, since, top=200) if k.startswith(("DNSBL", "RBL"))]


def greylist_counts(settings: Any, store: Any, since: float, now: float) -> list[tuple[str, float]]:
    """Greylisting at a glance: triplets waiting / passed and whitelisted clients (SQLite
    backend, when its file exists), plus the GREYLIST_* symbols of recorded verdicts."""
    out: list[tuple[str, float]] = []
    backend = str(settings.greylist.backend or "")
    path: str | None = None
    if not backend:
        path = str(Path(settings.paths.var_dir) / "greylist.db")
    elif backend.startswith("sqlite:///"):
        path = backend[len("sqlite:///") :]
    elif "://" not in backend:
        path = backend
    if path:
        try:
            counts = sqlite_greylist_counts(path, now)
        except GreylistStoreError as exc:
            log.info("greylist counts unavailable: %s", exc)
            counts = None
        if counts is not None:
            out += [
                ("triplets waiting", float(counts["waiting"])),
                ("triplets passed", float(counts["passed"])),
                ("clients whitelisted", float(counts["clients"])),
            ]
    out += [(k, v) for k, v in top_rules(store, since, top=200) if k.startswith("GREYLIST")]
    return out


def model_info(service: Any) -> dict[str, Any]:
    """Version and evaluation metrics of the serving model (its manifest), if known."""
    info: dict[str, Any] = {"version": "", "metrics": {}, "source": ""}
    scorer = getattr(service, "scorer", None)
    model = getattr(scorer, "model", None)
    if model is None:
        return info
    info["version"] = str(getattr(model, "version", "") or "")
    manifest = getattr(model, "manifest", None)
    if manifest is None:
        path = getattr(model, "path", None) or getattr(model, "dir", None)
        if path is not None:
            p = Path(path) / "manifest.json"
            try:
                manifest = json.loads(p.read_text())
            except (OSError, ValueError):
                manifest = None
    if isinstance(manifest, dict):
        metrics = manifest.get("metrics") or manifest.get("extra", {}).get("metrics") or {}
        info["metrics"] = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        info["source"] = str(manifest.get("kind", ""))
    return info


def dashboard(ctx: Any, days: int, now: float) -> dict[str, Any]:
    store = ctx.store
    since = now - days * 86400.0
    v = verdicts_over_time(store, now, days)
    rules = top_rules(store, since)
    fb = feedback_over_time(store, now, days)
    dnsbl = dnsbl_counts(store, since)
    grey = greylist_counts(ctx.settings, store, since, now)
    model = model_info(ctx.service)
    q = ctx.quarantine.counts()
    charts: dict[str, Markup] = {
        "verdicts": stacked_columns(v["labels"], v["series"], title="Verdicts by action"),
        "rules": horizontal_bars(rules, title="Rules hit most often", css="bar"),
        "feedback": stacked_columns(fb["labels"], fb["series"], title="Feedback by label"),
        "dnsbl": horizontal_bars(dnsbl, title="DNSBL listings", css="bar-warn"),
        "greylist": horizontal_bars(grey, title="Greylist triplets", css="bar-alt"),
        "metrics": horizontal_bars(
            sorted(((k, float(x)) for k, x in model["metrics"].items() if 0 <= x <= 1)),
            title="Model evaluation metrics",
            css="bar-alt",
        ),
        "quarantine": horizontal_bars(
            sorted(((k, float(n)) for k, n in q.items())), title="Quarantine by status", css="bar"
        ),
    }
    return {
        "verdicts": v,
        "rules": rules,
        "feedback": fb,
        "dnsbl": dnsbl,
        "greylist": grey,
        "model": model,
        "quarantine": q,
        "charts": charts,
    }
