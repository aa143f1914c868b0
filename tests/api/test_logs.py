"""The JSON log formatter: one object per line, the same text as ``json.dumps`` of the
record's fields (its encoder and timestamp are cached, not its output)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from mailsift.api.logs import JsonFormatter


def reference(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        out.update(fields)
    if record.exc_info:
        out["exc"] = formatter.formatException(record.exc_info)
    return json.dumps(out, default=str, separators=(",", ":"))


def test_json_lines_as_json_dumps_writes_them() -> None:
    fmt = JsonFormatter()
    log = logging.getLogger("mailsift.api.access")
    try:
        raise ValueError("boom ☃")
    except ValueError:
        exc_info = sys.exc_info()
    fields = [
        {"method": "POST", "route": "/v1/score", "status": 200, "ms": 3.21, "key_id": None},
        {"verdict_ids": ["a" * 32], "client": "127.0.0.1", "ü": "ü\n\"'", "odd": object()},
        {},
        None,
    ]
    for created in (time.time(), 1_800_000_000.999, 1_800_000_001.0, 1_800_000_000.5):
        for f in fields:
            for exc in (None, exc_info):
                extra = {"fields": f} if f is not None else None
                record = log.makeRecord(
                    log.name, logging.INFO, "f", 1, "m %s", ("x",), exc, extra=extra
                )
                record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
                assert fmt.format(record) == reference(record, fmt)
                json.loads(fmt.format(record))
