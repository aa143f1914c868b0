"""BodyEval's ``check_body_length`` against what SpamAssassin 4.0.1 answered for the same
hand-written messages (``bodylength_cases``): the body's length in bytes as received, the
carriage returns of CRLF line endings included, compared with ``<=``."""

from __future__ import annotations

import json

import pytest

from mailsift.classifier.rules import RuleSet
from mailsift.message import parse

from .bodylength_cases import DATA, LIMITS, RULES, cases
from .conftest import hits

SA = json.loads(DATA.read_text())["hits"]
CASES = cases()
# the stock stanzas (72_active.cf): each sub-rule behind BodyEval's has_check_body_length,
# and the __LCL__ alias the metas read, 0 without it
STANZAS = "\n".join(
    f"""
ifplugin Mail::SpamAssassin::Plugin::BodyEval
  if can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)
    body __KAM_BODY_LENGTH_LT_{n} eval:check_body_length('{n}')
  endif
endif
ifplugin Mail::SpamAssassin::Plugin::BodyEval
if !(can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length))
  meta __LCL__KAM_BODY_LENGTH_LT_{n} 0
endif
endif
ifplugin Mail::SpamAssassin::Plugin::BodyEval
  if can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)
    meta __LCL__KAM_BODY_LENGTH_LT_{n} __KAM_BODY_LENGTH_LT_{n}
  endif
endif
meta T_LEN_{n} __LCL__KAM_BODY_LENGTH_LT_{n}
"""
    for n in LIMITS
)


def test_every_case_has_a_recorded_answer() -> None:
    assert sorted(SA) == sorted(CASES)
    # the boundaries are in the cases: at the limit hits, one byte over does not
    assert (
        "__KAM_BODY_LENGTH_LT_128" in SA["lf_128"]
        and "__KAM_BODY_LENGTH_LT_128" not in SA["lf_129"]
    )
    assert SA["lf_1025"] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_hits_equal_spamassassins(name: str) -> None:
    rs = RuleSet.from_text(STANZAS)
    got = hits(rs, parse(CASES[name]))
    assert sorted(got & set(RULES)) == SA[name]
    # the metas read the eval through the __LCL__ aliases, not the constant 0
    assert {f"T_LEN_{r.rsplit('_', 1)[1]}" for r in SA[name]} == {
        h for h in got if h.startswith("T_LEN_")
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_stock_rules_hit_as_spamassassin(stock_rules: RuleSet, name: str) -> None:
    # serving prunes the sub-rules no scoring rule reads; those it keeps answer the same
    kept = [r for r in RULES if r in stock_rules.names]
    assert "__KAM_BODY_LENGTH_LT_512" in kept  # FROM_NTLD_LINKBAIT and GOOG_REDIR_SHORT read it
    values = stock_rules.hit_values(parse(CASES[name]))
    assert sorted(r for r in kept if values[stock_rules.names.index(r)]) == sorted(
        r for r in SA[name] if r in kept
    )
