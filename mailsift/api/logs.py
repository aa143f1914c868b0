"""Structured (JSON lines) logging for the HTTP API.

One JSON object per line on stderr: ``ts``, ``level``, ``logger``, ``msg`` and any fields
passed as ``extra={"fields": {...}}``. The access log records method, route, status, time
taken and the verdict id of a scoring request; message bodies are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

ACCESS_LOGGER = "mailsift.api.access"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (fields from ``extra={"fields": {...}}``)."""

    # one encoder for every record (``json.dumps`` with options builds one per call), and
    # the timestamp's seconds formatted once per second (a line per request adds up)
    _encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        out: dict[str, Any] = {
            "ts": f"{self._second[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._encode(out)


def lean_logging() -> None:
    """Skip what ``JsonFormatter`` never writes: the caller's file, line and function
    (a stack walk per record), thread, process and process names (the logging HOWTO's
    "Optimization" settings). For the API worker processes, whose only formatter is it."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (also given to uvicorn as ``log_config``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "mailsift.api.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "mailsift": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # our own access log replaces uvicorn's (it knows the route and the verdict id)
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def log_event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
