"""The quarantine's files: each held message's raw bytes as a file ``<id>.eml``.

Writes are atomic and durable (temporary file under ``tmp/``, fsync, rename, fsync of the
directory): a message is on disk the moment ``write`` returns, or absent, never half
written. Removals fsync the directory too, so a deleted message stays deleted after a crash.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

from mailsift.durable import fsync_dir, write_durably
from mailsift.store.quarantine import QuarantineError

ID_RE = re.compile(r"^[0-9a-f]{32}$")  # a quarantine id: 128 random bits in hex
_DAY = 86400.0


class HeldMessages:
    """Raw messages as files ``<id>.eml``; writes are atomic and durable."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, qid: str) -> Path:
        if not ID_RE.match(qid):
            raise QuarantineError(f"malformed quarantine id {qid!r}")
        return self.root / f"{qid}.eml"

    def write(self, qid: str, raw: bytes) -> Path:
        final = self.path(qid)
        write_durably(final, raw, self.tmp)
        return final

    def read(self, qid: str) -> bytes:
        try:
            return self.path(qid).read_bytes()
        except FileNotFoundError:
            raise QuarantineError(f"message {qid} is no longer in the spool", 410) from None

    def exists(self, qid: str) -> bool:
        return self.path(qid).exists()

    def remove(self, qid: str) -> bool:
        try:
            self.path(qid).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.root)
        return True

    def ids(self) -> Iterator[str]:
        for p in self.root.glob("*.eml"):
            if ID_RE.match(p.stem):
                yield p.stem

    def clean_tmp(self, older_than: float = _DAY) -> int:
        cutoff = time.time() - older_than
        n = 0
        for p in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
        return n
