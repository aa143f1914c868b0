"""Exact scores of every corpus message, written out to compare two trees value for value.

    .venv/bin/python -m bench.score_check --model DIR --out A.jsonl [--corpora ../shared/corpora]
    .venv/bin/python -m bench.score_check --compare A.jsonl B.jsonl

Stricter than :mod:`bench.verdict_check` (whose verdict rounds the probability): for every
message of every archive under ``--corpora``, in corpus order, one line with the verdict's
score, action, rule hits with their weights and token contributions, the model's probability
unrounded (``repr`` of the float, from the same features), a sha256 of the features (every
token and meta feature, in order) and every non-zero value of the rule engine's hit vector
(sub-rules, disabled rules and match counts included). Run it in
each tree (from that tree's directory, with the same model), then ``--compare``: it prints how
many lines are identical and the first differences, and exits 1 on any difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def dump(model: Path, corpora: Path, out: Path) -> int:
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules, parse_with, sample_of
    from mailsift.config import load_settings

    settings = load_settings()
    rules = load_rules(settings)
    spam_model = SpamModel.load(model, serving=True)
    scorer = Scorer(spam_model, rules, settings)
    hit_values = getattr(rules, "hit_values", None)
    from bench.verdict_check import corpus_archives, corpus_messages

    archives = corpus_archives(corpora)
    n = 0
    with out.open("w") as f:
        for archive, i, item in corpus_messages(archives):
            v = scorer.score(item.raw)
            values = hit_values(parse_with(item.raw, settings)) if hit_values else []
            _, sample, _ = sample_of(item.raw, settings, rules)
            features = "\x00".join((*sample.tokens, "\x01", *sample.meta))
            prob = spam_model.predict_explain(sample, top=10)[0]
            doc = {
                "probability": repr(prob),
                "features": hashlib.sha256(features.encode("utf-8", "replace")).hexdigest(),
                "score": repr(v.score),
                "action": str(v.action),
                "rules": [(s.name, repr(s.score), s.source) for s in v.rules],
                "tokens": [(t.token, repr(t.weight)) for t in v.tokens],
                "hits": [(j, x) for j, x in enumerate(values) if x],
                "truncated": v.truncated,
            }
            rel = str(archive.relative_to(corpora))
            f.write(json.dumps([rel, i, doc], sort_keys=True) + "\n")
            n += 1
    print(f"{n} scores of {len(archives)} archives written to {out}")
    return n


if __name__ == "__main__":
    from bench.verdict_check import cli

    cli(__doc__, dump, "scores")
