"""Golden answers of the scoring routes: the exact bytes the API sends.

``CASES`` is a fixed list of requests to ``POST /v1/score`` and ``POST /v1/score/batch``
(scored messages, every error status the routes give: 400, 401, 403, 405, 413, 415, 422) plus
``GET /openapi.json``. ``answers(app, keys)`` sends them to an in-process app and returns
each answer as status, raw headers (name and value, in order) and body. Two things differ
from run to run and are replaced before the comparison: a verdict's random id
(``"verdict_id":"<32 hex>"``) and the measured ``"elapsed_ms"`` (so the ``content-length``
of a scored answer, checked against its body first, is left out too); and the served
model's version, which names the time the session's test model was trained, is replaced by
``MODEL``.

``tests/api/golden/answers.json`` holds the answers recorded with the session's small test
model (``tests.fixtures.model``) and ``api_test_settings``; ``tests/api/test_golden.py``
compares the app with them. To record them again (only when a change of the answers is
intended), run::

    .venv/bin/python -m tests.api.golden

which runs that test with ``MAILSIFT_RECORD_GOLDEN=1``: it writes the file instead of
comparing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.api.messages import GTUBE_MSG, HAM, SPAM, message

GOLDEN = Path(__file__).with_name("golden") / "answers.json"
RECORD_ENV = "MAILSIFT_RECORD_GOLDEN"
# the body limit the answers were recorded with (api_test_settings(max_body_bytes=...))
LIMIT = 64 * 1024
MAX_BATCH = 50
BOUNDARY = "golden-boundary-7d1f"

_VERDICT_ID = re.compile(rb'"verdict_id":"[0-9a-f]{32}"')
_ELAPSED = re.compile(rb'"elapsed_ms":-?[0-9][0-9.eE+-]*')


@dataclass(frozen=True)
class Case:
    name: str
    method: str = "POST"
    path: str = "/v1/score"
    key: str | None = "score"  # the scope of the bearer key sent, None: no Authorization
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "message/rfc822"),)
    params: tuple[tuple[str, str], ...] = ()
    body: bytes = HAM
    chunked: bool = False  # send the body without Content-Length, in pieces
    extra: dict[str, Any] = field(default_factory=dict)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _batch(*messages: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"messages": list(messages), **top}).encode()


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body with a fixed boundary: (field name, file name, content)."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: message/rfc822\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


_JSON = (("Content-Type", "application/json"),)
_FORM = (("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),)
_BATCH = "/v1/score/batch"

CASES: tuple[Case, ...] = (
    # ---- POST /v1/score: scored
    Case("score-ham"),
    Case("score-spam", body=SPAM),
    Case("score-gtube", body=GTUBE_MSG),
    Case("score-no-headers", body=b"no headers at all"),
    Case("score-garbage", body=b"\x00\xff\xfe garbage"),
    Case("score-admin-key", key="admin"),
    Case("score-octet-stream", headers=(("Content-Type", "Application/Octet-Stream; x=1"),)),
    Case(
        "score-envelope-query",
        params=(
            ("ip", "192.0.2.7"),
            ("helo", "mx.example.org"),
            ("from", "carol@example.org"),
            ("rcpt", "alice@mailsift.test"),
            ("rcpt", "bob@mailsift.test"),
            ("user", "carol"),
            ("hostname", "mx.example.org"),
        ),
        body=SPAM,
    ),
    Case(
        "score-envelope-headers",
        headers=(
            ("Content-Type", "message/rfc822"),
            ("IP", "2001:db8::1"),
            ("Helo", "mx.example"),
            ("From", "s@example.org"),
            ("Rcpt", "a@x.test, b@x.test"),
            ("Rcpt", "c@x.test"),
            ("User", "u"),
            ("Hostname", "h.example"),
        ),
    ),
    Case("score-chunked", body=message(body="z" * (LIMIT - 1000)), chunked=True),
    # ---- POST /v1/score: refused
    Case("score-400-empty", body=b""),
    Case("score-400-blank", body=b"  \r\n\t "),
    Case("score-401-no-key", key=None),
    Case("score-401-bad-token", key=None, headers=(("Authorization", "Bearer nonsense"),)),
    Case("score-401-basic", key=None, headers=(("Authorization", "Basic dXNlcjpwYXNz"),)),
    Case("score-401-before-415", key=None, headers=(("Content-Type", "text/plain"),)),
    Case("score-403-feedback-key", key="feedback"),
    Case("score-403-before-415", key="feedback", headers=(("Content-Type", "text/plain"),)),
    Case("score-405-get", method="GET", body=b""),
    Case("score-413-declared", body=b"x" * (LIMIT + 1)),
    Case("score-413-chunked", body=b"Subject: big\r\n\r\n" + b"y" * (2 * LIMIT), chunked=True),
    Case("score-415-text", headers=(("Content-Type", "text/plain"),)),
    Case("score-415-none", headers=()),
    Case("score-422-query-ip", params=(("ip", "999.1.1.1"),)),
    Case("score-422-header-ip", headers=(("Content-Type", "message/rfc822"), ("IP", "bad"))),
    Case("score-422-helo", params=(("helo", "x" * 600),)),
    Case("score-422-rcpt", params=(("rcpt", "a@b.c"), ("rcpt", ""))),
    # ---- POST /v1/score/batch: scored
    Case(
        "batch-json",
        path=_BATCH,
        headers=_JSON,
        body=_batch(
            {"id": "m1", "message": _b64(HAM)},
            {"id": "m2", "message": _b64(SPAM), "envelope": {"ip": "192.0.2.1", "rcpt": ["a@x.t"]}},
            {"message": _b64(GTUBE_MSG)},
        ),
    ),
    Case(
        "batch-multipart",
        path=_BATCH,
        headers=_FORM,
        body=_multipart(("message", "ham.eml", HAM), ("message", "spam.eml", SPAM)),
    ),
    # ---- POST /v1/score/batch: refused
    Case("batch-401", path=_BATCH, key=None, headers=_JSON, body=_batch({"message": _b64(HAM)})),
    Case("batch-403", path=_BATCH, key="feedback", headers=_JSON, body=_batch({"message": "SA=="})),
    Case("batch-405-get", method="GET", path=_BATCH, body=b""),
    Case("batch-413", path=_BATCH, headers=_JSON, body=b"x" * (LIMIT + 1)),
    Case("batch-415", path=_BATCH, headers=(("Content-Type", "text/plain"),)),
    Case("batch-422-not-json", path=_BATCH, headers=_JSON, body=b"{not json"),
    Case("batch-422-empty", path=_BATCH, headers=_JSON, body=_batch()),
    Case("batch-422-base64", path=_BATCH, headers=_JSON, body=_batch({"message": "not base64!"})),
    Case(
        "batch-422-extra-field",
        path=_BATCH,
        headers=_JSON,
        body=_batch({"message": _b64(HAM)}, surprise=1),
    ),
    Case(
        "batch-422-envelope",
        path=_BATCH,
        headers=_JSON,
        body=_batch({"message": _b64(HAM), "envelope": {"ip": "999.1.1.1"}}),
    ),
    Case(
        "batch-422-too-many",
        path=_BATCH,
        headers=_JSON,
        body=_batch(*[{"message": _b64(b"Subject: x\r\n\r\ny")} for _ in range(MAX_BATCH + 1)]),
    ),
    Case("batch-400-multipart", path=_BATCH, headers=_FORM, body=b"--nonsense"),
    Case(
        "batch-422-form-field",
        path=_BATCH,
        headers=_FORM,
        body=_multipart(("note", None, b"just text")),
    ),
    Case("batch-422-no-parts", path=_BATCH, headers=_FORM, body=f"--{BOUNDARY}--\r\n".encode()),
    # ---- the documentation of both routes
    Case("openapi", method="GET", path="/openapi.json", key=None, headers=(), body=b""),
)


def _normalised(body: bytes, model_version: str) -> bytes:
    version = json.dumps(model_version).encode()
    body = body.replace(b'"model_version":' + version, b'"model_version":"MODEL"')
    body = _VERDICT_ID.sub(b'"verdict_id":"' + b"0" * 32 + b'"', body)
    return _ELAPSED.sub(b'"elapsed_ms":0.0', body)


async def answer(
    client: httpx.AsyncClient, case: Case, keys: dict[str, str], model_version: str
) -> dict[str, Any]:
    """The app's answer to ``case`` as recorded: status, headers and body (normalised)."""
    headers = list(case.headers)
    if case.key is not None:
        headers.append(("Authorization", f"Bearer {keys[case.key]}"))
    content: Any = case.body
    if case.chunked:
        raw = case.body

        async def pieces() -> Any:
            for i in range(0, len(raw), 5000):
                yield raw[i : i + 5000]

        content = pieces()
    r = await client.request(
        case.method, case.path, headers=headers, params=list(case.params), content=content
    )
    body = await r.aread()
    raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.headers.raw]
    normalised = _normalised(body, model_version)
    if normalised != body:  # a verdict: its length varies with the timing's digits
        lengths = [v for k, v in raw_headers if k == "content-length"]
        assert lengths == [str(len(body))], (case.name, lengths, len(body))
        raw_headers = [(k, v) for k, v in raw_headers if k != "content-length"]
    return {
        "status": r.status_code,
        "headers": [list(h) for h in raw_headers],
        "body": normalised.decode("utf-8"),
    }


async def answers(
    client: httpx.AsyncClient, keys: dict[str, str], model_version: str
) -> dict[str, Any]:
    return {case.name: await answer(client, case, keys, model_version) for case in CASES}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return data


def save(recorded: dict[str, Any]) -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(recorded, indent=1, ensure_ascii=False, sort_keys=False)
    GOLDEN.write_text(text + "\n", encoding="utf-8")


def main() -> int:
    import pytest

    os.environ[RECORD_ENV] = "1"
    test = str(Path(__file__).with_name("test_golden.py"))
    return int(pytest.main(["-q", "-p", "no:cacheprovider", test]))


if __name__ == "__main__":
    sys.exit(main())
