"""Quarantine: held mail, kept durably, reviewed by people, released exactly once.

- ``mailsift.quarantine.service``  ``Quarantine``: hold, list, release, delete, learn, purge
  (each action audited in the store).
- ``mailsift.quarantine.held``     ``HeldMessages``: the held messages' raw bytes as durable files.
- ``mailsift.store.quarantine``    the entries' records, query and SQL (``store.quarantine``).

The names callers use are importable from here.
"""

from __future__ import annotations

from mailsift.quarantine.held import HeldMessages
from mailsift.quarantine.service import (
    ActionResult,
    BulkResult,
    NotFound,
    Quarantine,
    entry_sender,
)
from mailsift.store.quarantine import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    SORT_KEYS,
    STATUSES,
    QuarantineEntry,
    QuarantineError,
    QuarantineQuery,
    QuarantineRepo,
)

__all__ = [
    "DELETED",
    "HELD",
    "RELEASED",
    "RELEASING",
    "SORT_KEYS",
    "STATUSES",
    "ActionResult",
    "BulkResult",
    "HeldMessages",
    "NotFound",
    "Quarantine",
    "QuarantineEntry",
    "QuarantineError",
    "QuarantineQuery",
    "QuarantineRepo",
    "entry_sender",
]
