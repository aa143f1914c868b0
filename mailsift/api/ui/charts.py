"""Server-rendered SVG charts for the dashboard (inline, no script, CSP-safe).

Each function returns ``markupsafe.Markup`` of an ``<svg>`` element; every text that goes in
is XML-escaped here. Colours come from CSS classes (``static/ui.css``), not inline styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _e(s: object) -> str:
    return escape(str(s), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


def stacked_columns(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """Columns per label, one stacked segment per series (CSS class ``s-<name>``)."""
    pad_l, pad_b, pad_t = 40, 34, 10
    n = max(len(labels), 1)
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    peak = max([*totals, 1.0])
    col_w = plot_w / n
    parts = [
        f'<svg class="chart" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(title)}</title>",
        f'<line class="axis" x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 10}" '
        f'y2="{pad_t + plot_h}"/>',
        f'<text class="tick" x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end">{_fmt(peak)}</text>',
        f'<text class="tick" x="{pad_l - 4}" y="{pad_t + plot_h}" text-anchor="end">0</text>',
    ]
    step = max(1, n // 8)
    for i, label in enumerate(labels):
        x = pad_l + i * col_w + col_w * 0.1
        y = float(pad_t + plot_h)
        for name, values in series.items():
            v = float(values[i])
            if v <= 0:
                continue
            h = plot_h * v / peak
            y -= h
            parts.append(
                f'<rect class="s-{_e(name)}" x="{x:.1f}" y="{y:.1f}" width="{col_w * 0.8:.1f}" '
                f'height="{h:.1f}"><title>{_e(label)} {_e(name)}: {_fmt(v)}</title></rect>'
            )
        if i % step == 0:
            parts.append(
                f'<text class="tick" x="{x + col_w * 0.4:.1f}" y="{height - pad_b + 14}" '
                f'text-anchor="middle">{_e(label)}</text>'
            )
    lx = pad_l
    for name in series:
        parts.append(
            f'<rect class="s-{_e(name)}" x="{lx}" y="{height - 12}" width="10" height="10"/>'
            f'<text class="legend" x="{lx + 14}" y="{height - 3}">{_e(name)}</text>'
        )
        lx += 20 + 8 * len(name) + 10
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every input above is escaped by _e


def horizontal_bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 640,
    css: str = "bar",
    bar_height: int = 18,
) -> Markup:
    """One labelled bar per item, longest first as given."""
    label_w = 230
    height = max(1, len(items)) * (bar_height + 6) + 10
    peak = max([v for _, v in items] + [1.0])
    parts = [
        f'<svg class="chart" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(title)}</title>",
    ]
    if not items:
        parts.append('<text class="tick" x="4" y="16">no data yet</text>')
    for i, (label, v) in enumerate(items):
        y = 5 + i * (bar_height + 6)
        w = (width - label_w - 60) * v / peak
        parts.append(
            f'<text class="tick" x="{label_w - 6}" y="{y + bar_height - 5}" '
            f'text-anchor="end">{_e(label[:34])}</text>'
            f'<rect class="{_e(css)}" x="{label_w}" y="{y}" width="{max(w, 1):.1f}" '
            f'height="{bar_height}"><title>{_e(label)}: {_fmt(v)}</title></rect>'
            f'<text class="tick" x="{label_w + w + 4:.1f}" y="{y + bar_height - 5}">{_fmt(v)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every input above is escaped by _e
