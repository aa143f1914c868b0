"""Tiny handwritten corpora in every reader format (built in tmp dirs, never the real corpus)."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

SPAM_WORDS = ["cheap", "viagra", "winner", "prize", "casino", "loan", "click", "offer", "free"]
HAM_WORDS = ["meeting", "agenda", "patch", "review", "lunch", "report", "kernel", "budget", "draft"]


def message(
    i: int,
    label: str,
    *,
    when: datetime | None = None,
    msgid: str | None = None,
    body: str | None = None,
    sender: str | None = None,
    subject: str | None = None,
) -> bytes:
    """One small RFC 5322 message; spam and ham use different vocabularies."""
    when = when or datetime(2002, 1, 1, tzinfo=UTC) + timedelta(hours=i)
    words = SPAM_WORDS if label == "spam" else HAM_WORDS
    text = body or " ".join(words[(i + k) % len(words)] for k in range(30)) + f"\nref {i}\n"
    sender = sender or ("promo@deals.example" if label == "spam" else "alice@work.example")
    if subject is None:
        subject = "WIN a FREE prize now!!!" if label == "spam" else f"notes on the {words[i % 9]}"
    return (
        f"Received: from mx.example ([192.0.2.{i % 250}]) by mail.example; "
        f"{format_datetime(when)}\n"
        f"From: {sender}\nTo: bob@example.org\nSubject: {subject}\n"
        f"Date: {format_datetime(when)}\n"
        f"Message-ID: <{msgid or f'{label}-{i}@example'}>\n\n{text}"
    ).encode()


def make_messages(n_spam: int, n_ham: int) -> list[tuple[str, bytes]]:
    out = [("spam", message(i, "spam")) for i in range(n_spam)]
    out += [("ham", message(1000 + i, "ham")) for i in range(n_ham)]
    return out


def sa_archive(path: Path, folder: str, msgs: list[bytes], cmds: bool = True) -> Path:
    """A SpamAssassin-style archive: folder/NNNNN.hash members plus a cmds file."""
    with tarfile.open(path, "w:bz2") as tf:
        d = tarfile.TarInfo(folder)
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for i, raw in enumerate(msgs):
            ti = tarfile.TarInfo(f"{folder}/{i:05d}.{i:032x}")
            ti.size = len(raw)
            tf.addfile(ti, io.BytesIO(raw))
        if cmds:
            c = b"mv 00001.abc 00001.def\n"
            ti = tarfile.TarInfo(f"{folder}/cmds")
            ti.size = len(c)
            tf.addfile(ti, io.BytesIO(c))
    return path


def sa_folders(root: Path, folders: dict[str, list[bytes]]) -> Path:
    for name, msgs in folders.items():
        d = root / name
        d.mkdir(parents=True)
        for i, raw in enumerate(msgs):
            (d / f"{i:05d}.{i:032x}").write_bytes(raw)
        (d / "cmds").write_text("mv a b\n")
    return root


def trec(root: Path, msgs: list[tuple[str, bytes]]) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "full").mkdir()
    lines = []
    for i, (label, raw) in enumerate(msgs, 1):
        (root / "data" / f"inmail.{i}").write_bytes(raw)
        lines.append(f"{label} ../data/inmail.{i}")
    (root / "full" / "index").write_text("\n".join(lines) + "\n")
    return root


def labelled(root: Path, msgs: list[tuple[str, bytes]]) -> Path:
    for i, (label, raw) in enumerate(msgs):
        d = root / label / ("sub" if i % 2 else "")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.eml").write_bytes(raw)
    return root


def mbox(path: Path, msgs: list[bytes]) -> Path:
    with path.open("wb") as fh:
        for raw in msgs:
            fh.write(b"From sender@example Mon Jan  1 00:00:00 2002\n")
            body = b"\n".join(
                b">" + ln if ln.startswith((b"From ", b">From ")) else ln for ln in raw.split(b"\n")
            )
            fh.write(body if body.endswith(b"\n") else body + b"\n")
            fh.write(b"\n")
    return path


def maildir(root: Path, msgs: list[bytes]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i, raw in enumerate(msgs):
        sub = "cur" if i % 2 else "new"
        (root / sub / f"{1000 + i}.M{i}P1.host:2,S").write_bytes(raw)
    return root


def labelled_archive(path: Path, name: str, msgs: list[tuple[str, bytes]]) -> Path:
    """An archive laid out as ``../shared/corpora/modern``'s: ``name/<label>/NNNNN.eml``,
    compressed by the suffix of ``path`` (``.tar.xz``, ``.tar.bz2`` ...)."""
    mode = {"xz": "w:xz", "bz2": "w:bz2", "gz": "w:gz"}.get(path.suffix.lstrip("."), "w")
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for i, (label, raw) in enumerate(msgs):
            ti = tarfile.TarInfo(f"{name}/{label}/{i:05d}.eml")
            ti.size = len(raw)
            tf.addfile(ti, io.BytesIO(raw))
    return path
