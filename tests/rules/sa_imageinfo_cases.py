"""Hand-written messages for SpamAssassin's ImageInfo plugin (``image_count``,
``pixel_coverage``, ``image_to_text_ratio`` and the metas on them), whose SpamAssassin 4.0.1
answers are recorded in ``data/sa_imageinfo.json`` (``python -m tests.rules.sa_imageinfo_cases
--record PORT`` asks a ``spamd -L`` on 127.0.0.1:PORT through ``spamc -y`` and rewrites the
file). The images are built here: only their headers matter to ImageInfo."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

from .sa_record import main, record_hits

DATA = Path(__file__).parent / "data" / "sa_imageinfo.json"
# the rules the cases are about; the recorded answers keep only these
RULES = (
    "DC_GIF_UNO_LARGO",
    "DC_PNG_UNO_LARGO",
    "DC_IMAGE_SPAM_TEXT",
    "DC_IMAGE_SPAM_HTML",
    "TO_NO_BRKTS_HTML_IMG",
    "T_REMOTE_IMAGE",
)


def gif(width: int, height: int) -> bytes:
    """A GIF header (logical screen ``width`` x ``height``) and an empty image."""
    return (
        b"GIF89a"
        + width.to_bytes(2, "little")
        + height.to_bytes(2, "little")
        + b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data).to_bytes(4, "big")
    return len(data).to_bytes(4, "big") + kind + data + crc


def png(width: int, height: int, before: bytes = b"") -> bytes:
    """A PNG with an IHDR for ``width`` x ``height`` (after the chunks ``before``)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + before
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00"))
        + _chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    """A JPEG's segments up to the scan: JFIF APP0, a comment, then the baseline frame."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    com = b"made by hand" * 20
    sof = b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + (len(app0) + 2).to_bytes(2, "big")
        + app0
        + b"\xff\xfe"
        + (len(com) + 2).to_bytes(2, "big")
        + com
        + b"\xff\xc0"
        + (len(sof) + 2).to_bytes(2, "big")
        + sof
        + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\xd2\xcf\x20\xff\xd9"
    )


HEAD = (
    "To: reader@example.net\r\nSubject: Our news\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <case@shop.example>\r\n"
    "MIME-Version: 1.0\r\n"
)
FROM = "From: news@shop.example\r\n"
# an <img> without a src: SpamAssassin takes a cid: src for a URI (__HAS_URI), mailsift not
HTML_IMG = "<html><body><p>Hello</p><img width=600 height=400></body></html>"
WORDS = "Our winter catalogue is here with coats, boots and scarves for everyone. "


def html_text(repeat: int) -> str:
    return "<html><body><p>" + WORDS * repeat + "</p></body></html>"


def _b64(data: bytes) -> str:
    raw = base64.b64encode(data).decode()
    return "\r\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))


def message(
    html: str | None,
    *images: tuple[str, bytes],
    cte: str = "base64",
    extra_cte: str | None = None,
    frm: str = FROM,
) -> bytes:
    """A multipart/related message: the HTML part (if any) and the images, each
    ``(content type, data)``, sent in ``cte`` (a second Content-Transfer-Encoding header
    ``extra_cte`` first, when given)."""
    out = frm + HEAD + 'Content-Type: multipart/related; boundary="REL"\r\n\r\n'
    if html is not None:
        out += "--REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
    for n, (ctype, data) in enumerate(images, 1):
        out += f"--REL\r\nContent-Type: {ctype}\r\nContent-ID: <img{n}@shop.example>\r\n"
        if extra_cte:
            out += f"Content-Transfer-Encoding: {extra_cte}\r\n"
        out += f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        out += (_b64(data) if cte == "base64" else data.decode("latin-1")) + "\r\n"
    return (out + "--REL--\r\n").encode("latin-1")


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    return {
        # one GIF of 600 x 400 = 240,000 pixels: a single large GIF, image-only HTML
        "gif_large": message(HTML_IMG, ("image/gif", gif(600, 400))),
        # the area bounds, both in: 180,000 and 475,000; 475,500 is out
        "gif_area_180000": message(HTML_IMG, ("image/gif", gif(600, 300))),
        "gif_area_475000": message(HTML_IMG, ("image/gif", gif(950, 500))),
        "gif_area_475500": message(HTML_IMG, ("image/gif", gif(951, 500))),
        "gif_small": message(HTML_IMG, ("image/gif", gif(120, 60))),
        # two GIFs: no single large one
        "gif_two": message(HTML_IMG, ("image/gif", gif(600, 400)), ("image/gif", gif(10, 10))),
        # a GIF and a PNG: one of each
        "gif_and_png": message(HTML_IMG, ("image/gif", gif(600, 400)), ("image/png", png(10, 10))),
        "png_large": message(HTML_IMG, ("image/png", png(500, 500))),
        # a 16-byte chunk before IHDR: ImageInfo steps 8 bytes at a time and finds it
        "png_ihdr_after_16_bytes": message(
            HTML_IMG, ("image/png", png(500, 500, before=_chunk(b"teXt", b"abcd")))
        ),
        # a 17-byte chunk before IHDR: IHDR is off ImageInfo's 8-byte steps, no size
        "png_ihdr_misaligned": message(
            HTML_IMG, ("image/png", png(500, 500, before=_chunk(b"teXt", b"abcde")))
        ),
        "jpeg_one": message(HTML_IMG, ("image/jpeg", jpeg(640, 480))),
        "jpg_type": message(HTML_IMG, ("image/jpg", jpeg(640, 480))),
        # not base64: ImageInfo skips the part
        "gif_not_base64": message(HTML_IMG, ("image/gif", gif(600, 400)), cte="8bit"),
        # two encodings: the last one (base64) is the one read
        "gif_last_cte_base64": message(
            HTML_IMG, ("image/gif", gif(600, 400)), extra_cte="7bit", cte="base64"
        ),
        # text beside the large GIF: the rendered text over the area (below 0.008), the
        # raw body over it (below 0.015)
        "gif_large_short_text": message(html_text(12), ("image/gif", gif(600, 400))),
        "gif_large_medium_text": message(html_text(40), ("image/gif", gif(600, 400))),
        "gif_large_long_text": message(html_text(60), ("image/gif", gif(600, 400))),
        # no HTML part: image only, little text
        "gif_large_no_html": message(None, ("image/gif", gif(600, 400))),
        # image-only HTML with no image part: __HTML_IMG_ONLY makes T_REMOTE_IMAGE
        "html_img_only_no_image_part": message(HTML_IMG),
        # a From with a name: TO_NO_BRKTS_HTML_IMG wants none
        "from_full_name": message(
            HTML_IMG, ("image/gif", gif(600, 400)), frm="From: Shop <news@shop.example>\r\n"
        ),
    }


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


if __name__ == "__main__":
    main(__doc__, record)
