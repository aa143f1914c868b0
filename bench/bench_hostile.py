"""Hostile HTML bench: html_to_text CPU time on documents built to be slow.

    .venv/bin/python -m bench.bench_hostile [--repeat 5] [--json OUT]

For the nested-div family (``<div>`` * n + text + ``</div>`` * n, n = 10k ... 200k) and a
few other shapes an HTML5 tree builder is slow on (stray end tags, reopened formatting
elements, nested lists, a select of 20,000 options) or the shown-text pass could be (many
styled elements under deep nesting), and shapes made for the HTMLEval pass (``<`` never
closed, a link's text cut by 50,000 tags, a title of entities), prints the median CPU time
(thread time, ms) of ``html_to_text``, of the HTMLEval measures (:func:`htmleval`) and of
lexbor parsing the same document unbounded, the latter only where it stays under a few
seconds (``--unbounded-max`` tags). Figures are noisy on a
shared 2-core machine: they say what was measured, when.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selectolax.lexbor import LexborHTMLParser

from mailsift.classifier.rules import evals
from mailsift.message import html_to_text


def _cpu_ms(fn: Any, arg: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn(arg)
        times.append((time.thread_time() - t0) * 1000.0)
    return statistics.median(times)


class _Views:
    """What the HTMLEval measures read of a message's views: its HTML and a memo."""

    def __init__(self, html: str) -> None:
        self.pm = type("pm", (), {"html": html})()
        self.memo: dict[str, Any] = {}


def htmleval(html: str) -> None:
    """Every HTMLEval measure the stock rules ask for, on one document."""
    v: Any = _Views(html)
    for kind in ("comment", "title", "anchor"):
        evals._html_strings(v, kind)
    for tag in ("head", "body", "center"):
        evals._tag_balance(v, tag)


def documents() -> list[tuple[str, int, str]]:
    out = [
        (f"nested div x{n // 1000}k", n, "<div>" * n + "deep text" + "</div>" * n)
        for n in (10_000, 50_000, 100_000, 200_000)
    ]
    out += [
        ("stray end tags x40k", 40_000, "<div></b>" * 40_000 + "x"),
        (
            "reopened formatting x40k",
            40_000,
            ("<div>" + "".join(f"<b id={i}>" for i in range(200)) + "</div>x") * 200,
        ),
        ("nested lists x40k", 80_000, "<ul><li>" * 40_000),
        ("select of 20k options", 20_000, "<select>" + "<option>x" * 20_000),
        # the shown-text pass: styled elements whose hidden ancestor or background is
        # looked up (once per element) under deep nesting
        (
            "20k coloured <p> under 250 <div>",
            20_250,
            '<div style="background:#000">'
            + "<div>" * 250
            + '<p style="color:#010101">x</p>' * 20_000,
        ),
        (
            "20k styled <p> after a hidden <div>",
            20_251,
            '<div style="display:none">y</div>'
            + "<div>" * 250
            + '<p style="color:#333">x</p>' * 20_000,
        ),
        ("70k '<a ' never closed", 70_000, "<a " * 70_000),
        ("link text cut by 50k tags", 50_001, '<a href="x">' + "x<b>" * 50_000),
        ("title of 30k entities", 30_001, "<title>" + "&amp;<i>" * 30_000),
        ("60k links inside a script", 60_001, "<script>" + "<a><img>" * 60_000),
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--unbounded-max", type=int, default=20_000, help="tags, for lexbor alone")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    print(
        f"{'document':28} {'chars':>9} {'html_to_text ms':>16} {'htmleval ms':>12} "
        f"{'lexbor unbounded ms':>20}"
    )
    for name, tags, html in documents():
        ours = _cpu_ms(html_to_text, html, args.repeat)
        stats = _cpu_ms(htmleval, html, args.repeat)
        raw = _cpu_ms(LexborHTMLParser, html, 1) if tags <= args.unbounded_max else None
        rows.append(
            {
                "document": name,
                "chars": len(html),
                "html_to_text_ms": ours,
                "htmleval_ms": stats,
                "lexbor_unbounded_ms": raw,
            }
        )
        shown = f"{raw:.1f}" if raw is not None else "-"
        print(f"{name:28} {len(html):9d} {ours:16.1f} {stats:12.1f} {shown:>20}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
