"""Prometheus metrics of the HTTP API (``GET /metrics``).

Metrics: ``mailsift_http_requests_total{method,route,status}``,
``mailsift_http_request_duration_seconds{method,route}`` (histogram),
``mailsift_http_requests_in_flight``, ``mailsift_verdicts_total{action}``,
``mailsift_score_duration_seconds`` (histogram of scoring alone, without HTTP) and
``mailsift_model_info{version}`` (1 for the version a worker serves).

With one worker the default registry is used. With several uvicorn workers set
``PROMETHEUS_MULTIPROC_DIR`` (``mailsift serve api`` does) before the workers start: every
worker then writes its values to files there and ``/metrics`` aggregates them all.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "mailsift_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "mailsift_http_request_duration_seconds",
    "Time from the request's first byte to the end of the response, by route.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "mailsift_http_requests_in_flight",
    "Requests being served right now.",
    multiprocess_mode="livesum",
)
VERDICTS = Counter(
    "mailsift_verdicts_total",
    "Messages scored over HTTP, by resulting action.",
    ["action"],
)
SCORE_SECONDS = Histogram(
    "mailsift_score_duration_seconds",
    "Time to score one message (parse, rules, model, lists, record), without HTTP.",
    buckets=_LATENCY_BUCKETS,
)
MODEL_INFO = Gauge(
    "mailsift_model_info",
    "1 for the model version a worker serves (0 for versions it served before).",
    ["version"],
    multiprocess_mode="liveall",
)

_current_version: str | None = None

# Labelled children, looked up once per label values (``labels()`` validates and locks on
# every call); a handful of label combinations per route, so the caches stay small.
_verdicts: dict[str, Any] = {}
_requests: dict[tuple[str, str, int], Any] = {}
_latency: dict[tuple[str, str], Any] = {}


def verdict_counter(action: str) -> Any:
    """``VERDICTS.labels(action=action)``, cached."""
    child = _verdicts.get(action)
    if child is None:
        child = _verdicts[action] = VERDICTS.labels(action=action)
    return child


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count a request and its latency (``REQUESTS`` and ``LATENCY``, children cached)."""
    key = (method, route, status)
    counter = _requests.get(key)
    if counter is None:
        if len(_requests) > 4096:  # arbitrary methods x statuses: keep the cache bounded
            _requests.clear()
        counter = _requests[key] = REQUESTS.labels(method=method, route=route, status=str(status))
    counter.inc()
    hist = _latency.get(key[:2])
    if hist is None:
        if len(_latency) > 4096:
            _latency.clear()
        hist = _latency[key[:2]] = LATENCY.labels(method=method, route=route)
    hist.observe(seconds)


def set_model_version(version: str) -> None:
    """Record that this worker now serves ``version``."""
    global _current_version
    if _current_version == version:
        return
    if _current_version is not None:
        MODEL_INFO.labels(version=_current_version).set(0)
    MODEL_INFO.labels(version=version or "none").set(1)
    _current_version = version


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (all workers in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
