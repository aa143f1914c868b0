"""The verdict's JSON codec (``mailsift.verdict``): ``encode_verdict`` writes byte for byte
what the document's model (``ScoreResponse``) writes, refuses what it refuses, and
``decode_verdict`` reads it back to the same verdict; the SMTP filter's HTTP scorer
decodes what the API answers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mailsift.verdict import (
    Action,
    ScoreResponse,
    Symbol,
    TokenContribution,
    Verdict,
    decode_verdict,
    encode_verdict,
    symbol_fields,
    token_fields,
)
from tests.api.messages import GTUBE_MSG, HAM, SPAM


def test_encode_is_the_models_json(scorer: Any, corpus_messages: Any) -> None:
    _, raws, _ = corpus_messages
    for raw in [HAM, SPAM, GTUBE_MSG, *raws[::97]]:
        v = scorer.score(raw)
        assert encode_verdict(v) == ScoreResponse.from_verdict(v).model_dump_json().encode()


def _verdict(**kw: Any) -> Verdict:
    base = Verdict(
        "0123456789abcdef0123456789abcdef",
        0.25,
        -1.5,
        5.0,
        Action.HAM,
        rules=[Symbol("RULE_A", 2.5, 'déjà vu \u2603 "quoted" \\ </script>', "rule")],
        tokens=[TokenContribution("body:ünï", -0.75), TokenContribution("url:x", 1e-7)],
        model_version="v1",
        elapsed_ms=3.25,
        digest="f" * 64,
    )
    return replace(base, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"action": Action.REJECT, "probability": 1.0, "list_decision": "block", "reason": "r"},
        {"probability": 0.0, "truncated": True, "score": 1e300, "elapsed_ms": 1e-9},
        {"score": 5},  # an int: validation makes it 5.0
        {"probability": np.float64(0.5), "score": np.float32(2.5)},
        {"rules": [Symbol("R", 3, "", "rule")], "tokens": [TokenContribution("t", np.float64(1))]},
        {"elapsed_ms": math.nan},  # NaN: null in the model's JSON
        {"score": math.inf},
        {"action": "spam"},  # a plain str: validated into the Action
        {"rules": [], "tokens": []},
        {"score": 1.7976931348623157e308, "required_score": 1.7976931348623157e308},
    ],
)
def test_encode_edge_values(kw: dict[str, Any]) -> None:
    v = _verdict(**kw)
    assert encode_verdict(v) == ScoreResponse.from_verdict(v).model_dump_json().encode()


@pytest.mark.parametrize("kw", [{"probability": 1.5}, {"probability": math.nan}, {"action": "x"}])
def test_encode_refuses_what_the_model_refuses(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        encode_verdict(_verdict(**kw))
    with pytest.raises(ValidationError):
        ScoreResponse.from_verdict(_verdict(**kw))


def test_json_dump_matches_json_module() -> None:
    """Sanity: the JSON parses to what the json module would have written."""
    v = _verdict()
    assert json.loads(encode_verdict(v)) == json.loads(
        ScoreResponse.from_verdict(v).model_dump_json()
    )


def test_decode_is_the_inverse_of_encode(scorer: Any, corpus_messages: Any) -> None:
    _, raws, _ = corpus_messages
    for raw in [HAM, SPAM, GTUBE_MSG, *raws[::197]]:
        v = scorer.score(raw)
        assert decode_verdict(encode_verdict(v)) == v
        assert decode_verdict(encode_verdict(v).decode()) == v
        assert decode_verdict(json.loads(encode_verdict(v))) == v


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"action": Action.REJECT, "probability": 1.0, "list_decision": "block", "reason": "r"},
        {"probability": 0.0, "truncated": True, "score": 1e300, "elapsed_ms": 1e-9},
        {"rules": [], "tokens": []},
    ],
)
def test_decode_edge_values(kw: dict[str, Any]) -> None:
    v = _verdict(**kw)
    assert decode_verdict(encode_verdict(v)) == v


def test_decode_defaults_what_is_left_out() -> None:
    minimal = {
        "verdict_id": "x",
        "probability": 0.5,
        "score": 7,
        "required_score": 5,
        "action": "spam",
    }
    v = decode_verdict(minimal)
    assert v == Verdict("x", 0.5, 7.0, 5.0, Action.SPAM)
    assert type(v.score) is float and v.action is Action.SPAM


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"verdict_id": "x"}',
        b'{"verdict_id": "x", "probability": 0.5,'
        b' "score": 1, "required_score": 5, "action": "maybe"}',
    ],
)
def test_decode_refuses_what_is_not_a_verdict(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_verdict(data)


def test_the_parts_are_written_as_in_the_document() -> None:
    v = _verdict()
    doc = json.loads(encode_verdict(v))
    assert doc["rules"] == [symbol_fields(s) for s in v.rules]
    assert doc["tokens"] == [token_fields(t) for t in v.tokens]
