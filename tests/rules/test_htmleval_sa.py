"""HTMLEval's ``html_image_only`` and BodyEval's ``multipart_alternative_difference`` against
what SpamAssassin 4.0.1 answered for the same hand-written messages (``htmleval_cases``).

``html_image_only`` measures each HTML part's source, not its visible text: a newsletter
with a few words over a long layout is no image-only message. The alternative difference
compares the whole rendered HTML text, hidden elements included, with the text part."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.message import parse

from .htmleval_cases import DATA, RULES, cases

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    # the cases tell the old readings apart: sizes across the ranges, a newsletter, hidden text
    assert SA["newsletter_long_source"] == []
    assert {h for hit in SA.values() for h in hit} >= {
        "HTML_IMAGE_ONLY_04",
        "HTML_IMAGE_ONLY_08",
        "HTML_IMAGE_ONLY_12",
        "HTML_IMAGE_ONLY_28",
        "HTML_IMAGE_ONLY_32",
        "MPART_ALT_DIFF",
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]


def test_part_lengths_follow_the_source() -> None:
    pm = parse(CASES["two_html_parts"])
    assert [img for _, img in pm.html_part_images] == [True, False]
    assert 600 < pm.html_part_images[0][0] <= 800 and pm.html_part_images[1][0] > 4000
    # UTF-8 source: characters, not bytes
    utf8 = parse(CASES["utf8_counted_in_characters"])
    ((n, img),) = utf8.html_part_images
    assert img and n <= 400 < len(CASES["utf8_counted_in_characters"])
