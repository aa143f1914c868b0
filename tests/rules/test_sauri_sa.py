"""The URI list the ``uri`` rules read, against what SpamAssassin 4.0.1 answered for the
same hand-written messages (``sauri_cases``), and unit tests of the ports of HTML.pm's
target_uri and Util's uri_list_canonicalize / url_encode."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.message import parse
from mailsift.uri_list import (
    MAX_URI_LENGTH,
    MAX_URIS,
    sa_uri_list,
    target_uri,
    uri_list_canonicalize,
    url_encode,
)

from .sauri_cases import DATA, cases

RECORDED = json.loads(DATA.read_text())
SA = RECORDED["hits"]
RULES = RECORDED["rules"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    assert {h for hit in SA.values() for h in hit} == set(RULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    values = stock_rules.hit_values(parse(CASES[name]))
    ours = sorted(r for r in RULES if values[stock_rules.names.index(r)])
    assert ours == SA[name]


def test_target_uri() -> None:
    base = "http://b.example/dir/"
    assert target_uri("", "/js/Main.js") == "/js/Main.js"
    assert target_uri("", "www.x.example/a") == "www.x.example/a"
    assert target_uri("", "//www.x.example/a") == "http://www.x.example/a"
    assert target_uri(base, "img/a.png") == "http://b.example/dir/img/a.png"
    assert target_uri(base, "../a.png") == "http://b.example/a.png"
    assert target_uri(base, "/a.png?x#y") == "http://b.example/a.png?x#y"
    assert target_uri(base, "?q") == "http://b.example/dir/?q"
    assert target_uri(base, "http:c.png") == "http://b.example/dir/c.png"
    assert target_uri(base, "https://o.example/p") == "https://o.example/p"


def test_url_encode() -> None:
    # printable %XX decoded (0x21-0x7e but %20 and %7f); the rest kept; raw bytes encoded
    assert url_encode("http://%34%35.1.2.3/%2Fa%3a") == "http://45.1.2.3//a:"
    assert url_encode("%20%7f%0a%a0%41") == "%20%7f%0a%a0A"
    assert url_encode('a b"<é>') == "a%20b%22%3c%c3%a9%3e"


def test_canonicalize_variants() -> None:
    out = uri_list_canonicalize(["http:%2F%2Fwww.example.com", "www.Example.com?x=1"])
    assert out[:2] == ["http:%2F%2Fwww.example.com", "www.Example.com?x=1"]
    assert "http:////www.example.com" in out
    assert "http://www.Example.com/?x=1" in out
    ips = uri_list_canonicalize(
        [
            "http://0x2d.041.12.016/",
            "http://0x2d210c10/",
            "http://757140496/",
            "http://u@h.example:80/p",
        ]
    )
    assert ips.count("http://45.33.12.14/") == 1
    assert "http://45.33.12.16/" in ips
    # the default port and the user name dropped (the port-less variant has no user)
    assert "http://h.example/p" in ips and "http://u@h.example/p" not in ips
    # relative URIs stay as written; the host's trailing junk is cut
    assert uri_list_canonicalize(["/a.png", "#top", "http://x.example!!/"]) == [
        "/a.png",
        "#top",
        "http://x.example!!/",
        "http://x.example/",
    ]
    # a dotless host reads as www.<host>.com, as Firefox does
    assert "http://www.intranet.com/" in uri_list_canonicalize(["http://intranet/"])
    mail = uri_list_canonicalize(["mailto:a@b.example?subject=hi"])
    assert mail == ["mailto:a@b.example?subject=hi", "mailto:a@b.example"]


def test_canonicalize_redirectors() -> None:
    import re

    generic = uri_list_canonicalize(["http://t.example/c?u=http://45.1.2.3/x&y=1"])
    assert "http://45.1.2.3/x" in generic
    # a configured pattern wins over the generic one; its target is canonicalised too
    pat = re.compile(rb"^https?://r\.example/go/(.*)$", re.I)
    out = uri_list_canonicalize(["http://r.example/go/www.t.example/p"], [pat])
    assert "www.t.example/p" in out and "http://www.t.example/p" in out
    # one level at a time, but nested redirects unwind until none is left
    nested = uri_list_canonicalize(["http://a.example/?u=http://b.example/?v=http://c.example/"])
    assert "http://c.example/" in nested


def test_bounds() -> None:
    long = "http://x.example/" + "a" * 10_000
    assert all(len(u) <= MAX_URI_LENGTH for u in uri_list_canonicalize([long]))
    many = [f"http://h{i}.example/" for i in range(3 * MAX_URIS)]
    assert len(uri_list_canonicalize(many)) <= MAX_URIS


def test_features_keep_mailsifts_links() -> None:
    pm = parse(CASES["area_href"])
    assert pm.urls == []  # <area> is no anchor: the learned features see no link
    assert "http://45.33.12.7/login" in sa_uri_list(pm)
    pm = parse(CASES["relative_with_base"])
    assert pm.html_uris == ["http://bank.example/dir/", "http://bank.example/dir/images/Logo.png"]
