"""The compiled-database cache: the scan targets' Hyperscan databases, saved once compiled.

Compiling the stock SpamAssassin rules costs a minute or two of CPU, so the serialized
databases are cached in a directory, keyed by a sha256 of every translated pattern, its
flags, the engine version and the Hyperscan version (:func:`cache_key`). The cache file is
our own format, never a pickle: ``MSRULES1``, the JSON header's length (8 bytes, big
endian), the JSON header (the key; per target its key, each entry's mode, the Hyperscan
ids, the blob's length and sha256), then the database blobs. A file whose key, targets or
checksums do not match is not used (the rules are compiled again). The most recently used
:data:`CACHE_KEEP` files are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailsift.classifier.rules.targets import HS_VERSION, MODE_RE, Target, hs

ENGINE_VERSION = "6"
CACHE_KEEP = 4  # cache files kept per cache directory
MAGIC = b"MSRULES1"


def cache_key(targets: Sequence[Target]) -> str:
    """What the databases of ``targets`` are compiled from, hashed."""
    h = hashlib.sha256()
    h.update(f"mailsift-rules {ENGINE_VERSION} hyperscan {HS_VERSION}\n".encode())
    for t in targets:
        h.update(json.dumps([t.key, t.spec()]).encode("utf-8"))
    return h.hexdigest()


def cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"rules-{key[:32]}.hsdb"


def save(cache_dir: Path, key: str, targets: Sequence[Target]) -> None:
    """Write the targets' databases and modes under ``key`` (atomically), then prune."""
    blobs: list[bytes] = []
    meta: list[dict[str, Any]] = []
    for t in targets:
        blob = hs.dumpb(t.db) if t.db is not None else b""
        meta.append(
            {
                "key": t.key,
                "modes": [e.mode for e in t.entries],
                "hs_ids": t.hs_ids,
                "len": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(),
            }
        )
        blobs.append(blob)
    header = json.dumps({"key": key, "targets": meta}).encode("utf-8")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".rules-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(len(header).to_bytes(8, "big"))
            f.write(header)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, cache_file(cache_dir, key))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    prune(cache_dir)


def prune(cache_dir: Path) -> None:
    """Keep the most recently used cache files only (each can weigh ~50 MB)."""
    files = sorted(cache_dir.glob("rules-*.hsdb"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[CACHE_KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()


def load(cache_dir: Path, key: str, targets: Sequence[Target], warnings: list[str]) -> bool:
    """Set the targets' databases and modes from the cache file of ``key``; False (with a
    warning appended when the file exists but cannot be used) when they must be compiled."""
    path = cache_file(cache_dir, key)
    try:
        data = path.read_bytes()
        os.utime(path)  # most recently used: kept by prune
    except OSError:
        return False
    try:
        if data[:8] != MAGIC:
            raise ValueError("bad magic")
        hlen = int.from_bytes(data[8:16], "big")
        header = json.loads(data[16 : 16 + hlen])
        if header.get("key") != key or len(header["targets"]) != len(targets):
            raise ValueError("key mismatch")
        pos = 16 + hlen
        loaded: list[tuple[Any, list[str], list[int]]] = []
        for t, m in zip(targets, header["targets"], strict=True):
            blob = data[pos : pos + m["len"]]
            pos += m["len"]
            if m["key"] != t.key or len(m["modes"]) != len(t.entries):
                raise ValueError("target mismatch")
            if hashlib.sha256(blob).hexdigest() != m["sha256"]:
                raise ValueError("checksum mismatch")
            db = hs.loadb(blob, hs.HS_MODE_BLOCK) if blob else None
            loaded.append((db, m["modes"], m["hs_ids"]))
    except Exception as exc:
        warnings.append(f"rules cache {path.name} unusable ({exc}); recompiling")
        return False
    for t, (db, modes, hs_ids) in zip(targets, loaded, strict=True):
        t.db = db
        t.hs_ids = list(hs_ids)
        for e, mode in zip(t.entries, modes, strict=True):
            e.mode = mode
        t.re_only = [i for i, e in enumerate(t.entries) if e.mode == MODE_RE]
    return True
