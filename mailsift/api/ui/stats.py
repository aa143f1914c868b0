"""Figures for the dashboard, read from the store (one pass of SQL each, bounded).

- verdicts over time by action (per day, or per hour for the last 48 h)
- the rules hit most often (from the recorded verdicts' rule hits)
- feedback received per day by label, and by outcome
- the serving model's version and evaluation metrics (from its manifest)
- greylist and DNSBL counts (greylist triplets by state; DNSBL symbols in verdicts)
- quarantine counts by status
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mailsift.api.ui.charts import horizontal_bars, stacked_columns

log = logging.getLogger(__name__)
ACTIONS = ("ham", "spam", "hold", "reject")
MAX_RULE_ROWS = 20_000


def _bucket_expr(dialect: str, size: float) -> str:
    if dialect == "postgresql":
        return f"CAST(FLOOR(created / {size:.0f}) AS BIGINT)"
    return f"CAST(created / {size:.0f} AS INTEGER)"


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
    rows = store.query(
        f"SELECT {_bucket_expr(store.dialect, size)} AS b, action, COUNT(*) AS n "
        "FROM verdicts WHERE created >= ? GROUP BY b, action",
        (keys[0] * size,),
    )
    index = {k: i for i, k in enumerate(keys)}
    series: dict[str, list[float]] = {a: [0.0] * len(keys) for a in ACTIONS}
    for r in rows:
        i = index.get(int(r["b"]))
        if i is not None:
            series.setdefault(str(r["action"]), [0.0] * len(keys))[i] += int(r["n"])
    totals = {a: int(sum(v)) for a, v in series.items()}
    return {"labels": labels, "series": series, "totals": totals}


def top_rules(store: Any, since: float, top: int = 15) -> list[tuple[str, float]]:
    rows = store.query(
        "SELECT rules FROM verdicts WHERE created >= ? ORDER BY created DESC LIMIT ?",
        (since, MAX_RULE_ROWS),
    )
    counts: Counter[str] = Counter()
    for r in rows:
        try:
            hits = json.loads(r["rules"] or "[]")
        except ValueError:
            continue
        for h in hits:
            name = (
                h[0] if isinstance(h, list | tuple) else h.get("name") if isinstance(h, dict) else h
            )
            if name:
                counts[str(name)] += 1
    return [(k, float(v)) for k, v in counts.most_common(top)]


def feedback_over_time(store: Any, now: float, days: int) -> dict[str, Any]:
    size, keys, labels = _buckets(now, days)
    rows = store.query(
        f"SELECT {_bucket_expr(store.dialect, size)} AS b, label, COUNT(*) AS n "
        "FROM feedback WHERE created >= ? GROUP BY b, label",
        (keys[0] * size,),
    )
    index = {k: i for i, k in enumerate(keys)}
    series: dict[str, list[float]] = {"spam": [0.0] * len(keys), "ham": [0.0] * len(keys)}
    for r in rows:
        i = index.get(int(r["b"]))
        if i is not None and str(r["label"]) in series:
            series[str(r["label"])][i] += int(r["n"])
    by_status = store.query(
        "SELECT status, COUNT(*) AS n FROM feedback WHERE created >= ? GROUP BY status",
        (keys[0] * size,),
    )
    return {
        "labels": labels,
        "series": series,
        "totals": {k: int(sum(v)) for k, v in series.items()},
        "by_status": sorted(
            ((str(r["status"]), float(r["n"])) for r in by_status), key=lambda x: -x[1]
        ),
    }


def dnsbl_counts(store: Any, since: float) -> list[tuple[str, float]]:
    return [(k, v) for k, v in top_rules(store, since, top=200) if k.startswith(("DNSBL", "RBL"))]


def greylist_counts(settings: Any, store: Any, since: float, now: float) -> list[tuple[str, float]]:
    """Greylisting at a glance: triplets waiting / passed and whitelisted clients (SQLite
    backend, read-only), plus the GREYLIST_* symbols of recorded verdicts."""
    out: list[tuple[str, float]] = []
    backend = str(settings.greylist.backend or "")
    path: str | None = None
    if not backend:
        path = str(Path(settings.paths.var_dir) / "greylist.db")
    elif backend.startswith("sqlite:///"):
        path = backend[len("sqlite:///") :]
    elif "://" not in backend:
        path = backend
    if path and Path(path).is_file():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                row = db.execute(
                    "SELECT SUM(CASE WHEN passed IS NULL THEN 1 ELSE 0 END),"
                    " SUM(CASE WHEN passed IS NOT NULL THEN 1 ELSE 0 END)"
                    " FROM greylist_triplets WHERE expires > ?",
                    (now,),
                ).fetchone()
                clients = db.execute(
                    "SELECT COUNT(*) FROM greylist_clients WHERE expires > ?", (now,)
                ).fetchone()
            out += [
                ("triplets waiting", float(row[0] or 0)),
                ("triplets passed", float(row[1] or 0)),
                ("clients whitelisted", float(clients[0] or 0)),
            ]
        except sqlite3.Error as exc:
            log.info("greylist counts unavailable: %s", exc)
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
