"""The rules' address parser against SpamAssassin 4.0.1's: ``Util::parse_header_addresses``
of odd header values (recorded from perl), the rules reading ``:addr`` / ``:name`` on
hand-written messages (recorded from spamd), and hostile values parsed without runaway backtracking."""

from __future__ import annotations

import json
import signal

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.classifier.rules.addresses import is_fqdn_valid, parse_header_addresses
from mailsift.message import parse

from .sa_addresses_cases import DATA, RULES, VALUES, cases, values

SA = json.loads(DATA.read_text())["hits"]
TABLE = json.loads(VALUES.read_text())["values"]
CASES = cases()


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    assert [v for v, _ in TABLE] == values()
    # the cases tell the stdlib's strict reading apart from SpamAssassin's
    assert SA["bare_twice_paypal"] == ["FROM_PAYPAL_SPOOF", "POSSIBLE_PAYPAL_PHISH_02"]


@pytest.mark.parametrize("value,expected", TABLE, ids=[repr(v)[:40] for v, _ in TABLE])
def test_parser_equals_spamassassins(value: str, expected: list[list[str | None]]) -> None:
    assert [list(a) for a in parse_header_addresses(value)] == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(stock_rules: RuleSet, name: str) -> None:
    pm = parse(CASES[name])
    ours = {s.name for s in stock_rules.evaluate(pm)} & set(RULES)
    assert sorted(ours) == SA[name]


def test_fqdn_valid() -> None:
    assert is_fqdn_valid("PayPal.COM.")
    assert is_fqdn_valid("a_b.mail.example")
    assert not is_fqdn_valid("a_b.example")
    assert not is_fqdn_valid("localhost")
    assert not is_fqdn_valid("-a.example")
    assert not is_fqdn_valid("a..example")
    assert not is_fqdn_valid("x" * 64 + ".example")
    assert not is_fqdn_valid("caf\u00e9.example")


@pytest.mark.parametrize(
    "unit", ['"', "<", ">", "< >", "<a", "(", "\\", '\\"', "<@", "x@", " ", "a", "<a@b><", "@<"]
)
def test_hostile_values_do_not_backtrack_without_end(unit: str) -> None:
    # SpamAssassin's own expressions backtrack exponentially on such values (40 quotes: 0.6 s,
    # a dozen "< >": 1.3 s, twice as long for each more); the port's must finish at all. The
    # alarm only stops a runaway match (seconds, not a speed target: a value takes ~0.1 s)
    def runaway(signum: int, frame: object) -> None:
        raise TimeoutError(f"{unit!r}: the address expressions did not finish")

    old = signal.signal(signal.SIGALRM, runaway)
    signal.setitimer(signal.ITIMER_REAL, 30.0)
    try:
        for pre, post in (("", ""), ("x <", ""), ("", ">"), ('"', ""), ("<", "@x"), ("g: ", ";")):
            value = pre + unit * (20000 // len(unit)) + post
            got = parse_header_addresses(value)
            assert all(len(a.address or "") <= 4096 for a in got), (pre, unit, post)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_long_list_cut_at_a_comma() -> None:
    value = ", ".join(f"user{i}@example.com" for i in range(400))
    got = parse_header_addresses(value)
    assert 100 < len(got) < 400
    assert all(a.address == f"user{i}@example.com" for i, a in enumerate(got))
