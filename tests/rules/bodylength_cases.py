"""Hand-written messages for BodyEval's ``check_body_length``, whose SpamAssassin 4.0.1
answers are recorded in ``data/bodylength_sa.json``. The four stock sub-rules
(``__KAM_BODY_LENGTH_LT_128`` .. ``_1024``) are not reported by ``spamc``; recording
(``python -m tests.rules.bodylength_cases --record``) runs ``spamassassin -L -t`` with a
reported meta rule over each of them and rewrites the file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).parent / "data" / "bodylength_sa.json"
LIMITS = (128, 256, 512, 1024)
RULES = tuple(f"__KAM_BODY_LENGTH_LT_{n}" for n in LIMITS)

HEAD = (
    "From: Ann <ann@example.org>\nTo: bob@example.net\nSubject: Lengths\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\nMessage-ID: <len@example.org>\n"
)


def _lf(body_len: int) -> bytes:
    """A message whose body is ``body_len`` bytes (lines of 60 characters)."""
    line = "x" * 59 + "\n"
    body = (line * (body_len // len(line) + 1))[:body_len]
    return (HEAD + "\n" + body).encode()


def _crlf(body_len: int) -> bytes:
    """The same with CRLF line endings: the carriage returns count."""
    line = "y" * 58 + "\r\n"
    body = (line * (body_len // len(line) + 1))[:body_len]
    return (HEAD.replace("\n", "\r\n") + "\r\n" + body).encode()


def cases() -> dict[str, bytes]:
    out = {f"lf_{n}": _lf(n) for n in (0, 100, 128, 129, 256, 257, 512, 513, 1024, 1025, 4000)}
    out.update({f"crlf_{n}": _crlf(n) for n in (128, 129, 1024, 1025)})
    out["no_blank_line"] = HEAD.encode()
    return out


def record() -> None:
    cf: list[str] = []
    for n in LIMITS:
        cf += [
            "--cf",
            f"meta T_MS_BL_{n} __KAM_BODY_LENGTH_LT_{n}",
            "--cf",
            f"score T_MS_BL_{n} 0.01",
        ]
    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as home:
        for name, raw in cases().items():
            res = subprocess.run(
                ["spamassassin", "-L", "-t", *cf],
                input=raw,
                capture_output=True,
                check=True,
                env={**os.environ, "HOME": home},
            )
            status = re.search(rb"X-Spam-Status:.*?tests=(.*?)\s+autolearn=", res.stdout, re.S)
            tests = re.sub(rb"\s", b"", status.group(1)).decode().split(",") if status else []
            out[name] = sorted(
                f"__KAM_BODY_LENGTH_LT_{t[len('T_MS_BL_') :]}"
                for t in tests
                if t.startswith("T_MS_BL_")
            )
    DATA.write_text(json.dumps({"spamassassin": "4.0.1", "hits": out}, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    else:
        sys.exit(__doc__)
