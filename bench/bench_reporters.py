"""Feedback attacks replayed: one account tries to steer what everyone else receives.

    .venv/bin/python -m bench.bench_reporters [--model models/default] [--json OUT]

The default model with the stock rules, a real SQLite store, the scoring service and the
HTTP app in-process (FastAPI's test client: the same routes, keys and rate caps as
``mailsift serve api``). Messages come from the modern corpora (``../shared/corpora/modern``,
mail the model never saw): a spam it rejects, two hams it passes clearly, and a borderline
message (ham, p between 0.1 and 0.5) for the honest case. Each attack prints the target's
probability for other users before and after, and what the attacker's own mail does:

1. one user sends 1,000 "ham" reports for the rejected spam S and 50 variants;
2. one user sends 1,000 "spam" reports for the ham H and 50 variants (and another ham);
3. a feedback key bound to no user names 1,000 different users in the body (HTTP);
4. one bound key floods past its hourly cap; another user's bound key reports (HTTP);
5. honest: three reporters of three domains report copies of the borderline campaign
   (and, separately, one trusted reporter): the campaign for everyone else, the round trip
   of the deciding report and the learner update it caused (``FeedbackResult.update_ms``).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_results
from mailsift.config import load_settings
from mailsift.verdict import Action, Envelope
from tests.fixtures.model import campaign_copy


def env(user: str) -> Envelope:
    return Envelope(mail_from="news@campaign.test", rcpt_to=(user,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument(
        "--corpora",
        type=Path,
        default=Path(os.environ.get("MAILSIFT_CORPORA", "../shared/corpora")),
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from mailsift.api.app import create_app
    from mailsift.api.keys import ApiKeys
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.pipeline.corpus import archive_order, index_corpus, iter_raw
    from mailsift.service import ScoringService

    var = Path(tempfile.mkdtemp(prefix="bench-reporters-"))
    settings = load_settings(
        paths={"var_dir": var, "models_dir": var / "models"},
        rules={"cache_dir": Path("var/cache/rules").resolve()},
        store={"url": f"sqlite:///{var / 'store.db'}"},
        model={"path": args.model.resolve()},
        api={"key_cache_seconds": 0.0},
    )
    rules = load_rules(settings)
    model = SpamModel.load(args.model, serving=True)
    svc = ScoringService(settings, scorer=Scorer(model, rules, settings))
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "model": str(args.model),
    }

    # the targets, from mail the model never saw
    df = archive_order(
        index_corpus(sorted(str(p) for p in (args.corpora / "modern").glob("*.tar.xz")))
    )
    spam = ham = ham2 = border = None
    for raw, label in zip(iter_raw(df), df["label"], strict=True):
        v = svc.scorer.score(campaign_copy(raw, "probe"))
        p = v.probability
        # a spam rejected (the model's own thresholds), short of certainty
        if label == "spam" and spam is None and v.action is Action.REJECT and p < 0.99999:
            spam = raw
        elif label == "ham" and p < 0.01:
            ham, ham2 = (raw, ham2) if ham is None else (ham, ham2 or raw)
        if border is None and 0.1 < p < 0.5:
            border = raw
        if spam and ham and ham2 and border:
            break
    assert spam and ham and ham2 and border, "targets not found"

    def p_for(raw: bytes, user: str) -> float:
        return float(svc.score(raw, env(user)).probability)

    def flood(label: str, target: bytes, who: str) -> dict[str, int]:
        msgs = [target] + [campaign_copy(target, n) for n in range(50)]
        counts: dict[str, int] = {}
        for n in range(1000):
            st = svc.feedback(label, who, raw=msgs[n % len(msgs)]).status
            counts[st] = counts.get(st, 0) + 1
        return counts

    # 1. false "ham" reports for a spam
    probe, fresh = campaign_copy(spam, "probe"), campaign_copy(spam, "fresh")
    before = (p_for(spam, "bob@other.test"), p_for(probe, "bob@other.test"))
    fresh_before = svc.score(fresh, env("carol@third.test")).action.value
    t = time.perf_counter()
    counts = flood("ham", spam, "mallory@evil.test")
    out["1_false_ham"] = {
        "reports": counts,
        "seconds": round(time.perf_counter() - t, 1),
        "S_for_others": [round(before[0], 6), round(p_for(spam, "bob@other.test"), 6)],
        "variant_for_others": [round(before[1], 6), round(p_for(probe, "bob@other.test"), 6)],
        "fresh_variant_action": [
            fresh_before,
            svc.score(fresh, env("carol@third.test")).action.value,
        ],
        "attackers_own_variant": round(p_for(campaign_copy(spam, "own"), "mallory@evil.test"), 6),
    }
    # 2. false "spam" reports for a ham
    probe_h = campaign_copy(ham, "probe")
    before = (p_for(probe_h, "bob@other.test"), p_for(ham2, "bob@other.test"))
    counts = flood("spam", ham, "mallory2@evil.test")
    out["2_false_spam"] = {
        "reports": counts,
        "H_for_others": [round(before[0], 6), round(p_for(probe_h, "bob@other.test"), 6)],
        "other_ham_for_others": [round(before[1], 6), round(p_for(ham2, "bob@other.test"), 6)],
        "attackers_own_variant": round(p_for(campaign_copy(ham, "own"), "mallory2@evil.test"), 6),
    }
    # 3. and 4. over HTTP
    keys = ApiKeys(svc.store, 0.0)
    unbound = keys.create("unbound", "feedback")[1]
    mallory = keys.create("mallory", "feedback", owner="mallory3@evil.test")[1]
    alice = keys.create("alice", "feedback", owner="alice@good.test")[1]
    app = create_app(settings, svc)
    before_s = p_for(probe, "zed@other.test")
    with TestClient(app) as c:
        codes: dict[int, int] = {}
        body = {"message": base64.b64encode(spam).decode(), "label": "ham"}
        for n in range(1000):
            r = c.post(
                "/v1/feedback",
                json={**body, "user": f"u{n}@d{n}.example"},
                headers={"Authorization": f"Bearer {unbound}"},
            )
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
        out["3_unbound_key_1000_users"] = {
            "http_status": codes,
            "S_for_others": [round(before_s, 6), round(p_for(probe, "zed@other.test"), 6)],
        }
        codes = {}
        for n in range(250):
            raw = campaign_copy(ham2, f"flood{n}")
            r = c.post(
                "/v1/feedback",
                json={"message": base64.b64encode(raw).decode(), "label": "spam"},
                headers={"Authorization": f"Bearer {mallory}"},
            )
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
        r = c.post(
            "/v1/feedback",
            json={
                "message": base64.b64encode(campaign_copy(spam, "alice")).decode(),
                "label": "spam",
            },
            headers={"Authorization": f"Bearer {alice}"},
        )
        out["4_flood_then_another_user"] = {
            "flood_http_status": codes,
            "other_user_http_status": r.status_code,
        }

    # 5. honest corroboration, and one trusted reporter
    probe_b = campaign_copy(border, "probe")
    p0 = p_for(probe_b, "zoe@else.test")
    steps = []
    for n, user in enumerate(("ann@a.example", "ben@b.example", "cat@c.example")):
        t = time.perf_counter()
        res = svc.feedback("spam", user, raw=campaign_copy(border, n))
        rt = (time.perf_counter() - t) * 1000.0
        steps.append(
            {
                "reporter": user,
                "status": res.status,
                "votes": res.votes,
                "round_trip_ms": round(rt, 2),
                "update_ms": res.update_ms,
                "campaign_for_others": round(p_for(probe_b, "zoe@else.test"), 6),
            }
        )
    out["5_three_reporters"] = {"before": round(p0, 6), "steps": steps}
    # the update a corroborated lesson costs, over more of them: three colluding reporters
    # calling a ham spam (their budgets run out on the way: what they moved stays bounded)
    upd = []
    for n in range(30):
        for user in ("dan@d.example", "eve@e.example", "fay@f.example"):
            res = svc.feedback("spam", user, raw=campaign_copy(ham2, f"c{n}{user}"))
            if res.status in ("learned", "budget_capped"):
                upd.append(res.update_ms)
    out["colluders_3"] = {
        "other_ham_for_others": [round(before[1], 6), round(p_for(ham2, "bob@other.test"), 6)],
        "spent": {
            r: round(v, 3) for r, v in svc.learner.layers.spent.items() if r.endswith("example")
        },
    }
    out["corroborated_update_ms"] = {
        "median": float(np.median(upd)),
        "max": float(np.max(upd)),
        "n": len(upd),
    }
    svc2 = ScoringService(
        settings.model_copy(
            update={
                "store": settings.store.model_copy(update={"url": f"sqlite:///{var / 'store2.db'}"})
            }
        ),
        scorer=Scorer(SpamModel.load(args.model, serving=True), rules, settings),
    )
    t = time.perf_counter()
    res = svc2.feedback(
        "spam", "postmaster@good.test", raw=campaign_copy(border, "t"), source="admin"
    )
    out["5_one_trusted"] = {
        "status": res.status,
        "round_trip_ms": round((time.perf_counter() - t) * 1000.0, 2),
        "update_ms": res.update_ms,
        "campaign_for_others": [
            round(p0, 6),
            round(float(svc2.score(probe_b, env("zoe@else.test")).probability), 6),
        ],
    }
    upd = []
    for n in range(30):  # more trusted lessons: the update's spread
        upd.append(
            svc2.feedback(
                "spam", "postmaster@good.test", raw=campaign_copy(spam, f"t{n}"), source="admin"
            ).update_ms
        )
    out["trusted_update_ms"] = {
        "median": float(np.median(upd)),
        "max": float(np.max(upd)),
        "n": len(upd),
    }
    svc2.close()
    svc.close()
    print_results(out, args.json)


if __name__ == "__main__":
    main()
