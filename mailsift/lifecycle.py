"""Child processes that die with their parent.

A helper process (the Hyperscan compiler the rule engine forks, the child that asks the
MLflow registry for the champion, the API's rules warm-up) must not outlive the server that
started it: stopped with SIGTERM during a cold start, the server would otherwise leave it
running, holding memory, possibly blocked for good on a pipe nobody reads.

:func:`die_with_parent`, called first thing in the child, asks Linux to SIGKILL it when
its parent goes (``prctl(PR_SET_PDEATHSIG)``: more exactly, when the parent's thread that
started it exits, so a helper is started and waited for by one thread), exits at once when
the parent is already gone, and gives SIGTERM back its default action (a Python handler
inherited through ``fork`` only runs between bytecodes, so a child blocked in C would
ignore SIGTERM). Elsewhere than on Linux it only does the latter two.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _prctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return getattr(libc, "prctl", None)


def die_with_parent(parent_pid: int) -> None:
    """Make this (child) process die with ``parent_pid``, its parent (see module doc)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent went before the request took effect
        os._exit(1)
