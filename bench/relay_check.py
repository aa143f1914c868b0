"""The relay parse (``mailsift.classifier.rules.relays``) against SpamAssassin's own.

    .venv/bin/python -m bench.relay_check [-n 300] [--corpora ../shared/corpora] [--jobs 2]
        [--cache var/relay_check_sa.jsonl] [--show 10] [--cost 3000]

Takes ``-n`` messages spread over every corpus (the same share of each, a fixed seed), runs
``spamassassin -L -D received-header,metadata -t`` on each (no network; about 1.5 s a
message, ``--jobs`` at a time; answers are kept in ``--cache`` by message digest, so a
second run only runs our side) and compares its X-Spam-Relays-Untrusted and -Trusted strings
with ours. Prints how many messages agree exactly, how many relays (SpamAssassin's
"parsed as" lines) agree, the Received headers seen, and the first differences.

``--cost N``: the CPU time of our parse (``message_relays`` on the parsed message's
headers) over the first N messages of every corpus in turn, per message.

``--hostile``: the CPU time of the parse on hostile Received headers (shapes that make
backtracking regexes slow), 50 of each (the most parsed), each at the length cut.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_DBG = re.compile(r"dbg: (received-header: parsed as |metadata: X-Spam-Relays-(\w+): ?)(.*)$")


def sa_relays(raw: bytes) -> dict[str, object]:
    """SpamAssassin's relay strings and its per-relay parses for one message."""
    proc = subprocess.run(
        ["spamassassin", "-L", "-D", "received-header,metadata", "-t"],
        input=raw,
        capture_output=True,
        timeout=300,
        check=False,
    )
    out: dict[str, object] = {"parsed": []}
    parsed: list[str] = []
    for line in proc.stderr.decode("latin-1").splitlines():
        m = _DBG.search(line)
        if not m:
            continue
        if m[2]:
            out[m[2].lower()] = m[3]
        else:
            parsed.append(m[3])
    out["parsed"] = parsed
    return out


def sample(corpora: Path, n: int, seed: int) -> list[tuple[str, bytes]]:
    from mailsift.pipeline.corpus import iter_raw
    from mailsift.pipeline.generalise import load_index

    df = load_index(corpora)
    rng = random.Random(seed)
    names = sorted(df["corpus"].unique())
    per = max(1, n // len(names))
    rows = []
    for name in names:
        idx = list(df.index[df["corpus"] == name])
        rows.extend(sorted(rng.sample(idx, min(per, len(idx)))))
    sub = df.loc[rows]
    return list(zip(list(sub["corpus"]), iter_raw(sub), strict=True))


def ours(raw: bytes) -> tuple[str, str, list[str], int]:
    from mailsift.classifier.rules.relays import message_relays
    from mailsift.message import parse

    pm = parse(raw)
    r = message_relays(pm.raw_headers)
    received = sum(1 for k, _ in pm.raw_headers if k.lower() == "received")
    return r.untrusted_str, r.trusted_str, [x.as_string for x in r.trusted + r.untrusted], received


def _relay_list(s: str) -> list[str]:
    return re.findall(r"\[ ip=.*? msa=\d \]", s)


def check(args: argparse.Namespace) -> int:
    import hashlib

    msgs = sample(Path(args.corpora), args.n, args.seed)
    cache_path = Path(args.cache)
    cache: dict[str, dict[str, object]] = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            d = json.loads(line)
            cache[d["digest"]] = d["sa"]
    todo = {hashlib.sha256(raw).hexdigest(): raw for _, raw in msgs}
    missing = [d for d in todo if d not in cache]
    if missing:
        print(f"running spamassassin on {len(missing)} messages ...", flush=True)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool,
            cache_path.open("a") as f,
        ):
            for d, res in zip(
                missing, pool.map(lambda d: sa_relays(todo[d]), missing), strict=True
            ):
                cache[d] = res
                f.write(json.dumps({"digest": d, "sa": res}) + "\n")
    same = 0
    relays_sa = relays_same = headers = 0
    per_corpus: dict[str, list[int]] = {}
    shown = 0
    for corpus, raw in msgs:
        sa = cache[hashlib.sha256(raw).hexdigest()]
        unt, tru, mine, received = ours(raw)
        headers += received
        sa_unt = str(sa.get("untrusted", ""))
        sa_tru = str(sa.get("trusted", ""))
        ok = unt == sa_unt and tru == sa_tru
        same += ok
        pc = per_corpus.setdefault(corpus, [0, 0])
        pc[0] += 1
        pc[1] += ok
        sa_list = _relay_list(sa_tru) + _relay_list(sa_unt)
        relays_sa += len(sa_list)
        relays_same += sum(1 for a, b in zip(sa_list, mine, strict=False) if a == b)
        if not ok and shown < args.show:
            shown += 1
            print(f"--- {corpus} {hashlib.sha256(raw).hexdigest()[:12]}")
            print(f"  SA  untrusted: {sa_unt}\n  us  untrusted: {unt}")
            if tru != sa_tru:
                print(f"  SA  trusted: {sa_tru}\n  us  trusted: {tru}")
    n = len(msgs)
    print(f"messages: {n}, Received headers: {headers}")
    print(f"exact agreement (untrusted and trusted strings): {same}/{n} = {100 * same / n:.1f}%")
    print(f"relays: {relays_same}/{relays_sa} of SpamAssassin's relays identical (in order)")
    for c, (k, ok) in sorted(per_corpus.items()):
        print(f"  {c}: {ok}/{k}")
    return 0


def cost(args: argparse.Namespace) -> int:
    from mailsift.classifier.rules.relays import message_relays
    from mailsift.message import parse
    from mailsift.pipeline.corpus import iter_raw
    from mailsift.pipeline.generalise import load_index

    df = load_index(Path(args.corpora))
    parts = [g.head(args.cost // df["corpus"].nunique()) for _, g in df.groupby("corpus")]
    import pandas as pd

    sub = pd.concat(parts)
    headers = [parse(raw).raw_headers for raw in iter_raw(sub)]
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for h in headers:
            message_relays(h)
        best = min(best, time.process_time() - t0)
    n = len(headers)
    rec = sum(1 for h in headers for k, _ in h if k.lower() == "received")
    print(
        f"relay parse: {n} messages, {rec} Received headers, best of 3: {best:.3f} s CPU, "
        f"{1e3 * best / n:.3f} ms a message, {1e6 * best / rec:.1f} us a header"
    )
    return 0


HOSTILE = {
    "qmail_parens": "from x (HELO y) (1.2.3.4) by z" + " (a)" * 4000 + " with",
    "qmail_with": "from x (1.2.3.4) by z (a) with " + "a " * 4000,
    "sendmail_auth": "from x ]) " + "(authenticated " * 4000,
    "sendmail_auth2": "from " + "]) (" * 4000,
    "critical_path": ") by " + "x (12.3.456) (authenticated as y) " * 400,
    "semicolons": "from x" + " ;" * 4000,
    "brackets": "from " + "[1.2.3.4" * 4000,
    "ip_runs": "from " + "1.2.3.4." * 4000,
    "ipv6_runs": "from [" + "a:" * 4000,
    "spaces_by": "from x" + " by" * 4000,
    "exim": "from x Exim ([1.2.3.4]" + " (" * 4000 + ") by",
    "parens": "from " + "(" * 4000 + "[1.2.3.4]" + ")" * 4000 + " by x",
    "helo": "from x " + "helo=" * 4000,
    "ids": "from x" + " id <" * 4000,
    "long_token": "from " + "a" * 8000 + " by " + "b" * 8000,
    "squirrel": "from 1.2.3.4 (SquirrelMail authenticated user x) " + "1.2.3.4 " * 4000,
    "at_signs": "from " + "a@" * 4000 + " by x",
    "date": "from x by y;" + " 1 Jan 2020 10:10" * 4000,
}


def hostile() -> int:
    from mailsift.classifier.rules.relays import MAX_RECEIVED, parse_relays

    worst = 0.0
    for name, line in HOSTILE.items():
        t0 = time.process_time()
        parse_relays([line] * MAX_RECEIVED)
        dt = time.process_time() - t0
        worst = max(worst, dt)
        print(f"{name:16s} {MAX_RECEIVED} headers: {1e3 * dt:7.1f} ms CPU")
    print(f"worst: {1e3 * worst:.1f} ms for one message")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", default="var/relay_check_sa.jsonl")
    ap.add_argument("--show", type=int, default=10)
    ap.add_argument("--cost", type=int, default=0)
    ap.add_argument("--hostile", action="store_true")
    args = ap.parse_args()
    if args.hostile:
        return hostile()
    if args.cost:
        return cost(args)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
