"""What a reader sees (``ParsedMessage.shown_body``): the body tokens' text.

Spam written for 2025 hides text that reads like personal mail or an encyclopedia (to pull a
statistical filter towards ham) where a mail client never shows it: in the plain-text
alternative of an HTML message, or in HTML elements styled out of sight. ``body`` (what the
rules read, as SpamAssassin's body rules do) keeps all of it; ``shown_body`` does not.
"""

from __future__ import annotations

import time

import pytest

from mailsift.classifier.features import make_sample
from mailsift.message import parse

SALAD = "botanical gardens guided tour native plant species carpool"
OFFER = "Convert your points to a gift card before they expire"


def _alternative(plain: str, html: str) -> bytes:
    return (
        "From: Points <points@shop.example>\r\nTo: a@mailsift.test\r\nSubject: points\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{plain}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n--b1--\r\n"
    ).encode()


def _html(body_html: str) -> bytes:
    return (
        "From: Points <points@shop.example>\r\nTo: a@mailsift.test\r\nSubject: points\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body>{body_html}</body></html>\r\n"
    ).encode()


def test_plain_alternative_of_html_is_not_shown() -> None:
    pm = parse(_alternative(f"{SALAD}\n{OFFER}", f"<p>{OFFER}</p>"))
    assert SALAD in pm.body  # the rules still read it
    assert SALAD not in pm.shown_body
    assert OFFER in pm.shown_body
    words = {t for t in make_sample(pm).tokens if t.startswith("w:")}
    assert "w:botanical" not in words and "w:convert" in words


@pytest.mark.parametrize(
    "style",
    [
        "display:none",
        "display: none !important",
        "visibility:hidden",
        "font-size:0",
        "font-size: 0px; line-height:0",
        "font-size:1px",
        "max-height:0px; overflow:hidden",
        "opacity:0",
        "mso-hide:all",
        "position:absolute; left:-9999px; top:-9999px",
        "text-indent:-5000px",
        "transform: scale(0); height:0;",
        "width:0; height:0; overflow:hidden",
        "color:#FFFFFF;font-size:8px;",
        "color: #fefefe",
        "color:rgb(255, 255, 255)",
    ],
)
def test_hidden_html_elements_are_not_shown(style: str) -> None:
    pm = parse(_html(f'<p>{OFFER}</p><div style="{style}">{SALAD}</div>'))
    assert SALAD in pm.html_text
    assert SALAD not in pm.shown_body
    assert OFFER in pm.shown_body


@pytest.mark.parametrize(
    "markup",
    [
        f'<div style="color:#333333; font-size:14px">{SALAD}</div>',
        f'<div style="font-size:12px; max-height:300px">{SALAD}</div>',
        f'<table bgcolor="#000000"><tr><td style="color:#ffffff">{SALAD}</td></tr></table>',
        f'<div style="background-color:#0071ce"><span style="color:white">{SALAD}</span></div>',
        f'<div style="background:url(x.png)"><p style="color:#fff">{SALAD}</p></div>',
        f'<div style="margin-left:-10px; left:-20px">{SALAD}</div>',
        f'<div style="overflow:hidden; height:120px">{SALAD}</div>',
    ],
)
def test_readable_html_stays_shown(markup: str) -> None:
    pm = parse(_html(f"<p>{OFFER}</p>{markup}"))
    assert SALAD in pm.shown_body


def test_nested_hidden_elements_and_the_hidden_attribute() -> None:
    pm = parse(
        _html(
            f'<div style="display:none"><p style="font-size:0">{SALAD}</p>inner</div>'
            f"<p hidden>more {SALAD}</p><p>{OFFER}</p>"
        )
    )
    assert SALAD not in pm.shown_body and "inner" not in pm.shown_body
    assert pm.shown_body == OFFER


def test_plain_text_without_html_alternative_is_shown() -> None:
    raw = (
        b"From: a@shop.example\r\nTo: b@mailsift.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b"--m\r\nContent-Type: text/plain\r\n\r\nthe letter itself\r\n"
        b"--m\r\nContent-Type: text/html\r\n\r\n<p>an HTML attachment shown below</p>\r\n"
        b"--m--\r\n"
    )
    pm = parse(raw)
    assert "the letter itself" in pm.shown_body
    assert "an HTML attachment shown below" in pm.shown_body


def test_alternative_with_related_html_shadows_the_plain_part() -> None:
    raw = (
        "From: a@shop.example\r\nTo: b@mailsift.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
        f"--a\r\nContent-Type: text/plain\r\n\r\n{SALAD}\r\n"
        '--a\r\nContent-Type: multipart/related; boundary="r"\r\n\r\n'
        f"--r\r\nContent-Type: text/html\r\n\r\n<p>{OFFER}</p>\r\n"
        "--r\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n"
        "--r--\r\n--a--\r\n"
    ).encode()
    pm = parse(raw)
    assert SALAD in pm.body and SALAD not in pm.shown_body
    assert OFFER in pm.shown_body


def test_plain_only_and_text_only_alternatives_are_shown() -> None:
    plain = (
        b"From: a@shop.example\r\nTo: b@mailsift.test\r\nSubject: s\r\n\r\nLunch on Thursday?\r\n"
    )
    pm = parse(plain)
    assert "Lunch on Thursday?" in pm.shown_body
    assert pm.shown_body == pm.body
    raw = (
        b"From: a@shop.example\r\nTo: b@mailsift.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
        b"--a\r\nContent-Type: text/plain\r\n\r\nplain words\r\n"
        b"--a\r\nContent-Type: text/enriched\r\n\r\nenriched words\r\n--a--\r\n"
    )
    pm = parse(raw)
    assert "plain words" in pm.shown_body and "enriched words" in pm.shown_body


# what an element inherits (a hidden ancestor, the nearest background) is looked up once per
# element: a document of many styled elements under deep nesting stays linear. CPU seconds,
# generous (these take 20-60 ms; walking every ancestor per element took 0.6 s on the
# deepest), as in test_hostile_html.
GENEROUS = 0.5
DEEP = "<div>" * 250


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        (('<div style="color:#fff">' * 250 + "x" + "</div>" * 250) * 180, ""),
        ('<div style="background:#000">' + DEEP + '<p style="color:#010101">x</p>' * 20000, ""),
        ('<div style="display:none">y</div>' + DEEP + '<p style="color:#333">x</p>' * 20000, "x"),
        (('<div style="font-size:0">' * 250 + "x" + "</div>" * 250) * 180, ""),
    ],
)
def test_hostile_styled_documents_stay_linear(html: str, shown: str) -> None:
    t0 = time.thread_time()
    pm = parse(_html(html))
    spent = time.thread_time() - t0
    assert spent < GENEROUS, f"{spent:.3f} s of CPU"
    assert pm.truncated  # beyond the text cap: what is parsed is bounded too
    assert set(pm.shown_body.split()) == ({shown} if shown else set())
