"""The rule views' fast paths give what their plain definitions give, on odd inputs."""

from __future__ import annotations

import random
import re

import pytest

from mailsift.classifier.rules.views import render_body
from mailsift.message import ParsedMessage

_PARA_BREAK = re.compile(r"[ \t\r\f\v\u00a0]*\n(?:[ \t\r\f\v\u00a0]*\n)+[ \t\r\f\v\u00a0\n]*")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]{2,}|[\t\r\n\f\v\u00a0]")


def _ref_render_body(pm: ParsedMessage, max_chars: int | None = None) -> str:
    """The body view as two regex substitutions (paragraph breaks, then runs of blanks)."""
    text = pm.body if max_chars is None else pm.body[:max_chars]
    text = _PARA_BREAK.sub("\x00", text.strip())
    text = _SPACES.sub(" ", text).replace(" \x00", "\x00").replace("\x00 ", "\x00")
    return pm.subject + "\n" + text.replace("\x00", "\n") + "\n"


def _pm(text: str, html_text: str = "", subject: str = "s") -> ParsedMessage:
    return ParsedMessage(
        raw=b"", size=0, digest="", text=text, html_text=html_text, headers=[("Subject", subject)]
    )


# blanks of the view, other Unicode white space, NUL, separators, surrogates, letters
_ALPHABET = list("ab. \t\r\n\f\v\u00a0\x00\x1c\x1f\x85\u2003\u3000\u2028é\udcff")


@pytest.mark.parametrize("seed", range(4))
def test_render_body_is_the_regex_definition(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 16)))
        html = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 4)))
        pm = _pm(text, html)
        assert render_body(pm) == _ref_render_body(pm), (text, html)
        assert render_body(pm, 5) == _ref_render_body(pm, 5), (text, html)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "one line",
        "para one\nstill one\n\npara two\n \t\n\n  para three  ",
        "a\r\n\r\nb\r\nc",
        "a \u00a0\n\u00a0 \nb",
        "tab\there\fform\vfeed",
        "nul\x00 inside\n\nnext",
        "em\u2003space\n\nnext",
    ],
)
def test_render_body_examples(text: str) -> None:
    pm = _pm(text)
    assert render_body(pm) == _ref_render_body(pm)


def test_the_written_out_class_is_every_other_white_space_and_nul() -> None:
    from mailsift.classifier.rules.views import _BODY_SPACES, _NOT_BODY_SPACE_RE

    derived = {
        chr(c)
        for c in range(0x110000)
        if (chr(c).isspace() and chr(c) not in _BODY_SPACES) or c == 0
    }
    written = {chr(c) for c in range(0x110000) if _NOT_BODY_SPACE_RE.match(chr(c))}
    assert written == derived
