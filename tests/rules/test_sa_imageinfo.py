"""SpamAssassin's ImageInfo plugin (loaded by a stock install) against what SpamAssassin
4.0.1 answered for the same hand-written messages (``sa_imageinfo_cases``): image counts and
pixel areas by kind for base64 GIF, PNG and JPEG parts, the image-to-text ratios, and the
rules that read ``__ONE_IMG`` and ``__HTML_IMG_ONLY`` from it."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.classifier.rules.parser import AVAILABLE_PLUGINS
from mailsift.message import parse

from .sa_imageinfo_cases import DATA, HTML_IMG, RULES, cases, gif, jpeg, message, png

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    # T_REMOTE_IMAGE: none of the cases, checked never to fire
    assert {h for hit in SA.values() for h in hit} == set(RULES) - {"T_REMOTE_IMAGE"}


def test_plugin_loads() -> None:
    assert "Mail::SpamAssassin::Plugin::ImageInfo" in AVAILABLE_PLUGINS


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]


def test_imageinfo_evals_are_compiled(stock_rules: RuleSet) -> None:
    skipped = dict(stock_rules.skipped)
    for name in ("__GIF_ATTACH_1", "__PNG_AREA_180K", "__DC_IMG_HTML_RATIO", "__ONE_IMG"):
        assert name not in skipped


def test_image_sizes_read_from_the_headers() -> None:
    pm = parse(
        message(
            HTML_IMG,
            ("image/gif", gif(600, 400)),
            ("image/png", png(500, 300)),
            ("image/jpeg", jpeg(640, 480)),
            ("image/jpg", jpeg(32, 16)),
        )
    )
    assert pm.image_dims == [
        ("gif", 600, 400),
        ("png", 500, 300),
        ("jpeg", 640, 480),
        ("jpeg", 32, 16),
    ]
    # counted, size unreadable: a truncated GIF, a PNG without its signature
    bad = parse(message(HTML_IMG, ("image/gif", b"GIF89a\x01"), ("image/png", b"PNG")))
    assert bad.image_dims == [("gif", 0, 0), ("png", 0, 0)]
    assert parse(message(HTML_IMG, ("image/gif", gif(1, 1)), cte="8bit")).image_dims == []
