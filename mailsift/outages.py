"""Dependency outages and temporary failures, made visible: log lines and Prometheus counters.

Every process (the HTTP API workers, the SMTP filter) reports here when a dependency fails
or answers again, and when it answers a client with a temporary failure (SMTP 4xx, HTTP
503):

- ``dependency_failed(dep, error)``: counts ``mailsift_dependency_errors_total{dependency}``;
  the first failure after the dependency was up logs a WARNING ``dependency <dep> is down:
  <error>`` and counts ``mailsift_dependency_outages_total{dependency}``. While it stays down,
  a WARNING ``dependency <dep> still down`` with the failures since is logged at most every
  ``REPEAT_SECONDS``.
- ``dependency_ok(dep)``: after an outage, a WARNING ``dependency <dep> is back after N s``
  (cheap when nothing was down: one dictionary look-up).
- ``tempfail(service, reason, detail)`` (``counted(service, reply, ...)`` for an SMTP reply
  that may be a 4xx): counts ``mailsift_tempfails_total{service,reason}``
  and logs a WARNING naming the reason at most every ``REPEAT_SECONDS`` per (service,
  reason), with how many were answered since the last line, so an outage under load writes
  a few lines, not one per request.

Dependencies are named ``postgresql``, ``sqlite``, ``redis``, ``clamd``, ``dns``,
``next_hop`` and ``scorer_api``. With several API workers (``PROMETHEUS_MULTIPROC_DIR``)
the counters are summed over the workers by ``/metrics``; the SMTP filter serves its own on
``smtp.metrics_port``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger("mailsift.outages")

REPEAT_SECONDS = 10.0

DEPENDENCY_ERRORS = Counter(
    "mailsift_dependency_errors_total",
    "Calls to a dependency that failed (refused, timed out, broken connection), by dependency.",
    ["dependency"],
)
DEPENDENCY_OUTAGES = Counter(
    "mailsift_dependency_outages_total",
    "Times a dependency went from answering to failing, by dependency.",
    ["dependency"],
)
TEMPFAILS = Counter(
    "mailsift_tempfails_total",
    "Temporary failures answered to clients (SMTP 4xx, HTTP 503), by service and reason.",
    ["service", "reason"],
)


@dataclass(slots=True)
class _Down:
    since: float
    failures: int = 1
    logged: float = 0.0
    unlogged: int = 0


@dataclass(slots=True)
class _Seen:
    count: int = 0
    logged: float = 0.0


_lock = threading.Lock()
_down: dict[str, _Down] = {}
_tempfails: dict[tuple[str, str], _Seen] = {}


def dependency_failed(dependency: str, error: object) -> None:
    """A call to ``dependency`` failed (see the module docstring)."""
    DEPENDENCY_ERRORS.labels(dependency=dependency).inc()
    now = time.monotonic()
    with _lock:
        state = _down.get(dependency)
        if state is None:
            _down[dependency] = _Down(since=now, logged=now)
            first, repeat = True, False
        else:
            state.failures += 1
            state.unlogged += 1
            first = False
            repeat = now - state.logged >= REPEAT_SECONDS
            if repeat:
                state.logged, failures = now, state.failures
                state.unlogged = 0
    if first:
        DEPENDENCY_OUTAGES.labels(dependency=dependency).inc()
        log.warning("dependency %s is down: %s", dependency, _short(error))
    elif repeat:
        log.warning(
            "dependency %s still down for %.0f s (%d failures): %s",
            dependency,
            now - _down_since(dependency, now),
            failures,
            _short(error),
        )


def _down_since(dependency: str, default: float) -> float:
    state = _down.get(dependency)
    return state.since if state is not None else default


def dependency_ok(dependency: str) -> None:
    """A call to ``dependency`` succeeded: ends an outage (and logs it) if there was one."""
    if dependency not in _down:  # the common case: no lock, no work
        return
    with _lock:
        state = _down.pop(dependency, None)
    if state is not None:
        log.warning(
            "dependency %s is back after %.1f s (%d failures)",
            dependency,
            time.monotonic() - state.since,
            state.failures,
        )


def is_down(dependency: str) -> bool:
    return dependency in _down


def down() -> list[str]:
    """The dependencies this process currently sees as down."""
    return sorted(_down)


def counted(service: str, reply: str, reason: str, detail: object = "", outage: bool = True) -> str:
    """``reply`` (an SMTP reply line) as it is, counted and logged by :func:`tempfail` when
    it is a 4xx: how the SMTP filter and the milter answer a refusal."""
    if reply[:1] == "4":
        tempfail(service, reason, detail or reply, outage=outage)
    return reply


def tempfail(service: str, reason: str, detail: object = "", outage: bool = True) -> None:
    """A temporary failure was answered to a client (see the module docstring); one that
    comes from a policy rather than a failure (``outage=False``: greylisting, too many
    recipients) is counted the same but logged at INFO."""
    TEMPFAILS.labels(service=service, reason=reason).inc()
    now = time.monotonic()
    with _lock:
        seen = _tempfails.get((service, reason))
        if seen is None:
            seen = _tempfails[(service, reason)] = _Seen(logged=now - REPEAT_SECONDS)
        seen.count += 1
        if now - seen.logged < REPEAT_SECONDS:
            return
        count, seen.count, seen.logged = seen.count, 0, now
    log.log(
        logging.WARNING if outage else logging.INFO,
        "%s answered a temporary failure (%s)%s%s",
        service,
        reason,
        f": {_short(detail)}" if detail else "",
        f" [{count} since the last such line]" if count > 1 else "",
    )


def reset() -> None:
    """Forget every outage and tempfail state (tests)."""
    with _lock:
        _down.clear()
        _tempfails.clear()


def _short(error: object, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:limit]
