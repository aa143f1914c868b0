"""Durable file writes: what a 250 reply or an "ok" promises must survive a crash.

``write_durably`` writes to a temporary file, fsyncs it, renames it into place and fsyncs
the directories involved, so after it returns the file is complete on disk or (on a crash
before the rename) absent: never half-written. Used by the SMTP spool and the quarantine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, an unlink) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Atomically replace `path` with `data` (mode 0600), durable when this returns."""
    tmp_dir = tmp_dir or path.parent
    tmp = tmp_dir / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if tmp_dir != path.parent:
        fsync_dir(tmp_dir)
