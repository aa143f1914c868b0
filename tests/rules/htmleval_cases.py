"""Hand-written messages for HTMLEval's ``html_image_only`` and BodyEval's
``multipart_alternative_difference``, whose SpamAssassin 4.0.1 answers are recorded in
``data/htmleval_sa.json`` (``python -m tests.rules.htmleval_cases --record PORT`` asks a
``spamd -L`` on 127.0.0.1:PORT through ``spamc -y`` and rewrites the file)."""

from __future__ import annotations

from pathlib import Path

from .sa_record import main, record_hits

DATA = Path(__file__).parent / "data" / "htmleval_sa.json"
# the rules the cases are about; the recorded answers keep only these
RULES = (
    *(f"HTML_IMAGE_ONLY_{n:02d}" for n in range(4, 36, 4)),
    "MPART_ALT_DIFF",
    "MPART_ALT_DIFF_COUNT",
)

HEAD = (
    "From: Shop <news@shop.example>\r\nTo: reader@example.net\r\nSubject: Our news\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <case@shop.example>\r\n"
    "MIME-Version: 1.0\r\n"
)
FILLER = "<!-- layout -->"


def _html(visible: str, size: int, img: bool = True, extra: str = "") -> str:
    """An HTML document of exactly ``size`` characters showing ``visible`` (and an image)."""
    body = f"<html><body>{extra}<p>{visible}</p>"
    if img:
        body += '<img src="http://img.shop.example/a.png" width="600" height="300">'
    tail = "</body></html>"
    pad = size - len(body) - len(tail)
    if pad < 0:
        raise ValueError(f"size {size} too small for the document")
    return body + (FILLER * (pad // len(FILLER) + 1))[:pad] + tail


def _single(html: str, charset: str = "utf-8", cte: str = "8bit") -> bytes:
    return (
        (
            HEAD + f"Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: "
            f"{cte}\r\n\r\n"
        ).encode()
        + html.encode("utf-8" if charset == "utf-8" else "latin-1")
        + b"\r\n"
    )


def _alternative(text: str, html: str) -> bytes:
    return (
        HEAD + 'Content-Type: multipart/alternative; boundary="ALT"\r\n\r\n--ALT\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n--ALT\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--ALT--\r\n"
    ).encode()


def _mixed(*parts: tuple[str, str]) -> bytes:
    out = HEAD + 'Content-Type: multipart/mixed; boundary="MIX"\r\n\r\n'
    for ctype, content in parts:
        out += f"--MIX\r\nContent-Type: {ctype}\r\n"
        if ctype.startswith("image/"):
            out += "Content-Transfer-Encoding: base64\r\n"
        out += "\r\n" + content + "\r\n"
    return (out + "--MIX--\r\n").encode()


NEWS_WORDS = "Winter sale: twenty percent off every coat this week"


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    hidden = '<div style="display:none">Preview: Tuesday delivery updates inside</div>'
    return {
        # little visible text but a long source: a newsletter, no HTML_IMAGE_ONLY
        "newsletter_long_source": _single(_html("Sale!", 6000)),
        # the same short visible text in a short source: by the source's length
        "short_source_300": _single(_html("Sale!", 300)),
        "source_400_boundary": _single(_html("Sale!", 400)),
        "source_401": _single(_html("Sale!", 401)),
        "source_1000": _single(_html("Sale!", 1000)),
        "source_2500": _single(_html("Sale!", 2500)),
        "source_3100": _single(_html("Sale!", 3100)),
        # no <img> tag: an attached image does not count
        "no_img_tag_attached_image": _mixed(
            ("text/html; charset=utf-8", _html("Sale!", 600, img=False)),
            (
                "image/png",
                "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
            ),
        ),
        # characters, not bytes, when the source is UTF-8: 390 characters, 500+ bytes
        "utf8_counted_in_characters": _single(_html("Sälé! " + "é" * 120, 390)),
        # each HTML part on its own: a short one with an image, a long one without
        "two_html_parts": _mixed(
            ("text/html; charset=utf-8", _html("Sale!", 700)),
            ("text/html; charset=utf-8", _html("More words " * 40, 5000, img=False)),
        ),
        # multipart/alternative: the HTML words the text part lacks
        "alt_same_words": _alternative(NEWS_WORDS, _html(NEWS_WORDS, 800)),
        "alt_different_words": _alternative(
            NEWS_WORDS, _html("Claim your prize now at our partner site today", 800)
        ),
        # hidden HTML text counts (SpamAssassin compares the whole rendered text)
        "alt_hidden_words": _alternative(NEWS_WORDS, _html(NEWS_WORDS, 900, extra=hidden)),
        "alt_hidden_words_in_text": _alternative(
            NEWS_WORDS + "\r\nPreview: Tuesday delivery updates inside",
            _html(NEWS_WORDS, 900, extra=hidden),
        ),
        "alt_image_only_html": _alternative(NEWS_WORDS, _html("", 300)),
        # shown words all differ, the hidden ones match the text part: half the HTML's
        # words are in the text part, no MPART_ALT_DIFF
        "alt_shown_differ_hidden_match": _alternative(
            NEWS_WORDS,
            _html(
                "Claim your prize now at our partner site today",
                1500,
                extra=f'<div style="display:none">{NEWS_WORDS}</div>',
            ),
        ),
        # two shown HTML words, ten hidden ones; the text part has them all
        "alt_few_shown_many_hidden": _alternative(
            "Hello friend " + NEWS_WORDS + " and more",
            _html(
                "Hello friend",
                1500,
                extra=f'<div style="display:none">{NEWS_WORDS} and more</div>',
            ),
        ),
    }


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


if __name__ == "__main__":
    main(__doc__, record)
