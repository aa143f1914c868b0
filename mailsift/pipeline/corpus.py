"""Corpus readers: real mail collections -> one streaming index (pandas DataFrame).

Formats (a corpus argument is a path, format detected, or ``LABEL:PATH`` with LABEL
``spam`` or ``ham`` forcing the label):

- ``spamassassin``: the SpamAssassin public corpus, its ``.tar.bz2`` archives read in place
  (one archive, or a folder of them) or the unpacked folders. The label comes from the top
  folder name: ``*ham*`` is ham, ``spam*`` is spam; the ``cmds`` files are skipped. The
  same reader takes ``.tar.gz`` / ``.tar.xz`` archives laid out ``<name>/<label>/NNNNN.eml``
  (the label folder is the first that names one).
- ``trec``: the TREC spam-track layout, ``data/inmail.N`` plus ``full/index`` lines
  ``spam ../data/inmail.N`` (corpus order is the index order).
- ``labelled``: a folder with ``spam/`` and ``ham/`` subfolders (recursive).
- ``mbox``: one mbox file (``From `` separated; the label must be given).
- ``maildir``: a Maildir folder (``cur/`` and ``new/``; the label must be given).
- ``files``: any other folder of message files, with a given label.

Streaming: :func:`iter_corpus` yields one :class:`CorpusItem` at a time (archives are
decompressed once, sequentially); :func:`index_corpus` keeps only a small row per message
(id, label, source, date, size, locator, digests), never the messages. :func:`read_message`
and :func:`iter_raw` read messages back from the locator (archive members by data offset).

Duplicates (same Message-ID, or same normalised body digest) are dropped, keeping the first;
the counts are in ``df.attrs["duplicates"]``.

:func:`fetch_spamassassin` downloads the public corpus archives and checks their sha256.
"""

from __future__ import annotations

import bz2
import email.parser
import email.policy
import email.utils
import gzip
import hashlib
import lzma
import re
import tarfile
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import pandas as pd

SPAM = "spam"
HAM = "ham"
LABELS = (SPAM, HAM)

FORMATS = ("spamassassin", "trec", "labelled", "mbox", "maildir", "files")

INDEX_COLUMNS = [
    "id",
    "label",
    "source",
    "date",
    "size",
    "path",
    "member",
    "offset",
    "digest",
    "body_digest",
    "message_id",
]

# The SpamAssassin public corpus (https://spamassassin.apache.org/old/publiccorpus/).
SPAMASSASSIN_URL = "https://spamassassin.apache.org/old/publiccorpus/"
SPAMASSASSIN_ARCHIVES: dict[str, str] = {
    "20030228_easy_ham.tar.bz2": "0bff898e21bf36c9b52f4121b157dbbf0cafe463904e64a74c6b714b55f5553f",
    "20030228_easy_ham_2.tar.bz2": "1dd6795531b17914a91f1ab5afd42ecfef224e5f13789909d9c114d82fd668e7",
    "20030228_hard_ham.tar.bz2": "85b715e974609a7bccd3d2a0f69f6feefae6e1c18480f58f21ea1d01574fddb4",
    "20030228_spam.tar.bz2": "91b46c5a24efdc4a53bd276da5333176a92f3f83b14d897978ff73cee219166a",
    "20030228_spam_2.tar.bz2": "f4dc41443a1ca44af29fb5db2d9682fb3a03106dc42ff4554f70a0b7ad3b030b",
}

_ARCHIVE_SUFFIXES = (".tar.bz2", ".tbz2", ".tbz", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar")
_SKIP_NAMES = {"cmds", "index", ".ds_store", "readme", "readme.txt"}
_MBOX_FROM = re.compile(rb"^From \S+")
_RECEIVED_DATE = re.compile(r";\s*([^;]+?)\s*$", re.S)
_WS = re.compile(rb"\s+")
MIN_PLAUSIBLE_YEAR = 1990


class CorpusError(ValueError):
    """A corpus argument that cannot be read (clear message for the command line)."""


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    path: Path
    fmt: str
    label: str | None = None  # forced label (LABEL:PATH), else from the layout

    def __str__(self) -> str:
        return f"{self.label}:{self.path}" if self.label else str(self.path)


@dataclass(slots=True)
class CorpusItem:
    """One message read from a corpus, with where it came from."""

    label: str
    source: str  # e.g. "spamassassin:20030228_spam.tar.bz2", "mbox:inbox.mbox"
    path: str  # the file holding the message (the archive, the mbox, the message file)
    raw: bytes
    member: str = ""  # archive member name, or "" for plain files
    offset: int = -1  # data offset in the (decompressed) archive or the mbox, -1 for files

    @property
    def id(self) -> str:
        loc = f"{self.path}\0{self.member}\0{self.offset}"
        return hashlib.sha1(loc.encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(slots=True)
class HeaderFacts:
    message_id: str = ""
    date: datetime | None = None
    body_digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---- corpus arguments ------------------------------------------------------------------


def parse_spec(arg: str | Path | CorpusSpec) -> CorpusSpec:
    """``PATH`` or ``LABEL:PATH`` -> CorpusSpec (format detected). Raises CorpusError."""
    if isinstance(arg, CorpusSpec):
        return arg
    text = str(arg)
    label: str | None = None
    head, sep, rest = text.partition(":")
    if sep and head.lower() in LABELS:
        label, text = head.lower(), rest
    path = Path(text).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus {arg!s}: {path} does not exist")
    fmt = detect_format(path)
    if label is None and fmt in ("mbox", "maildir", "files"):
        raise CorpusError(
            f"corpus {arg!s}: a {fmt} corpus has no labels; give one as spam:{path} or ham:{path}"
        )
    return CorpusSpec(path=path, fmt=fmt, label=label)


def detect_format(path: Path) -> str:
    if path.is_file():
        if _is_archive(path):
            return "spamassassin"
        return "mbox"
    if (path / "full" / "index").is_file():
        return "trec"
    if (path / "cur").is_dir() or (path / "new").is_dir():
        return "maildir"
    subdirs = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    if {"spam", "ham"} <= subdirs:
        return "labelled"
    if any(_is_archive(p) for p in path.iterdir() if p.is_file()):
        return "spamassassin"
    if any(_folder_label(name) for name in subdirs):
        return "spamassassin"
    return "files"


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _folder_label(name: str) -> str | None:
    """SpamAssassin corpus convention: ``*ham*`` is ham, ``spam*`` is spam."""
    n = name.lower()
    if "ham" in n:
        return HAM
    if n.startswith("spam"):
        return SPAM
    return None


def _skip_file(name: str) -> bool:
    n = name.lower()
    return n in _SKIP_NAMES or n.startswith(".")


# ---- readers -----------------------------------------------------------------------------


def iter_corpus(spec: str | Path | CorpusSpec) -> Iterator[CorpusItem]:
    """Yield every message of one corpus, one at a time, in corpus order."""
    s = parse_spec(spec)
    readers = {
        "spamassassin": _iter_spamassassin,
        "trec": _iter_trec,
        "labelled": _iter_labelled,
        "mbox": _iter_mbox_file,
        "maildir": _iter_maildir,
        "files": _iter_files_spec,
    }
    yield from readers[s.fmt](s)


def _iter_spamassassin(s: CorpusSpec) -> Iterator[CorpusItem]:
    if s.path.is_file():
        yield from _iter_archive(s.path, s.label)
        return
    for p in sorted(s.path.iterdir()):
        if p.is_file() and _is_archive(p):
            yield from _iter_archive(p, s.label)
        elif p.is_dir():
            label = s.label or _folder_label(p.name)
            if label is not None:
                yield from _iter_folder(p, label, f"spamassassin:{p.name}")


def _archive_opener(path: Path) -> IO[bytes]:
    name = path.name.lower()
    if name.endswith((".tar.bz2", ".tbz2", ".tbz")):
        return bz2.open(path, "rb")
    if name.endswith((".tar.gz", ".tgz")):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith((".tar.xz", ".txz")):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _iter_archive(path: Path, forced: str | None) -> Iterator[CorpusItem]:
    # The SpamAssassin public corpus's archives hold the label folder at the top
    # (``spam/NNNNN.md5``); other archives, such as ``name/ham/NNNNN.eml``, are named by
    # their file name alone.
    source = f"archive:{path.name}"
    try:
        with _archive_opener(path) as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
            for ti in tf:
                if not ti.isfile():
                    continue
                parts = Path(ti.name).parts
                if _skip_file(parts[-1]):
                    continue
                label = forced
                if label is None:
                    for folder in parts[:-1]:
                        label = _folder_label(folder)
                        if label:
                            break
                if label is None:
                    continue
                if len(parts) == 2 and _folder_label(parts[0]):
                    source = f"spamassassin:{path.name}"
                ef = tf.extractfile(ti)
                if ef is None:
                    continue
                raw = ef.read()
                yield CorpusItem(label, source, str(path), raw, ti.name, ti.offset_data)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorpusError(f"cannot read archive {path}: {e}") from e


def _iter_folder(folder: Path, label: str, source: str) -> Iterator[CorpusItem]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not _skip_file(p.name):
            yield CorpusItem(label, source, str(p), p.read_bytes())


def _iter_trec(s: CorpusSpec) -> Iterator[CorpusItem]:
    index = s.path / "full" / "index"
    source = f"trec:{s.path.name}"
    with index.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2 or fields[0].lower() not in LABELS:
                raise CorpusError(f"{index}:{lineno}: expected 'spam|ham PATH', got {line!r}")
            p = (index.parent / fields[1]).resolve()
            if not p.is_file():
                raise CorpusError(f"{index}:{lineno}: {p} does not exist")
            label = s.label or fields[0].lower()
            yield CorpusItem(label, source, str(p), p.read_bytes())


def _iter_labelled(s: CorpusSpec) -> Iterator[CorpusItem]:
    for sub in sorted(s.path.iterdir()):
        if sub.is_dir() and sub.name.lower() in LABELS:
            label = s.label or sub.name.lower()
            yield from _iter_folder(sub, label, f"labelled:{s.path.name}/{sub.name}")


def _iter_maildir(s: CorpusSpec) -> Iterator[CorpusItem]:
    assert s.label is not None
    for sub in ("cur", "new"):
        folder = s.path / sub
        if folder.is_dir():
            yield from _iter_folder(folder, s.label, f"maildir:{s.path.name}")


def _iter_files_spec(s: CorpusSpec) -> Iterator[CorpusItem]:
    assert s.label is not None
    yield from _iter_folder(s.path, s.label, f"files:{s.path.name}")


def _iter_mbox_file(s: CorpusSpec) -> Iterator[CorpusItem]:
    assert s.label is not None
    source = f"mbox:{s.path.name}"
    for offset, raw in iter_mbox(s.path):
        yield CorpusItem(s.label, source, str(s.path), raw, "", offset)


def iter_mbox(path: Path) -> Iterator[tuple[int, bytes]]:
    """Split an mbox file (mboxo/mboxrd) into messages, streaming: (offset, raw).

    ``offset`` is where the message starts (after its ``From `` line); the ``From `` line is
    not part of the message; ``>From `` quoting is undone (mboxrd).
    """
    with path.open("rb") as fh:
        start = -1
        buf: list[bytes] = []
        prev_blank = True
        pos = 0
        for line in fh:
            if prev_blank and _MBOX_FROM.match(line):
                if start >= 0:
                    yield start, _mbox_message(buf)
                buf = []
                start = pos + len(line)
            elif start >= 0:
                buf.append(line)
            pos += len(line)
            prev_blank = line.strip() == b""
        if start >= 0:
            yield start, _mbox_message(buf)


_MBOXRD_QUOTE = re.compile(rb"^>(>*From )")


def _mbox_message(lines: list[bytes]) -> bytes:
    if lines and lines[-1].strip() == b"":
        lines = lines[:-1]  # the separator blank line belongs to the mbox, not the message
    return b"".join(_MBOXRD_QUOTE.sub(rb"\1", ln) for ln in lines)


# ---- header facts and the index ----------------------------------------------------------

_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def split_header_body(raw: bytes) -> tuple[bytes, bytes]:
    m = re.search(rb"\r?\n\r?\n", raw)
    if m is None:
        return raw, b""
    return raw[: m.start()], raw[m.end() :]


def body_digest(body: bytes) -> str:
    """sha256 of the body with whitespace collapsed ("" for an empty body)."""
    norm = _WS.sub(b" ", body).strip()
    if not norm:
        return ""
    return hashlib.sha256(norm).hexdigest()


def header_facts(raw: bytes) -> HeaderFacts:
    """Message-ID, the receipt date and the body digest, from the headers only (fast)."""
    head, body = split_header_body(raw)
    facts = HeaderFacts(body_digest=body_digest(body))
    try:
        msg = _HEADER_PARSER.parsebytes(head + b"\n\n")
    except Exception:  # the header parser is lenient; be sure anyway
        return facts
    mid = msg.get("Message-ID") or msg.get("Message-Id") or ""
    facts.message_id = str(mid).strip().strip("<>").strip().lower()
    facts.date = message_date(msg.get_all("Received") or [], str(msg.get("Date") or ""))
    return facts


def message_date(received: Sequence[Any], date_header: str) -> datetime | None:
    """When the message arrived: the topmost ``Received`` timestamp, else ``Date`` (UTC)."""
    candidates: list[str] = []
    if received:
        m = _RECEIVED_DATE.search(str(received[0]))
        if m:
            candidates.append(m.group(1))
    candidates.append(date_header)
    for value in candidates:
        dt = _parse_date(value)
        if dt is not None:
            return dt
    return None


def _parse_date(value: str) -> datetime | None:
    value = " ".join(value.split())
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if dt.year < MIN_PLAUSIBLE_YEAR or dt.year > 2200:
        return None
    return dt


def index_row(item: CorpusItem) -> dict[str, Any]:
    facts = header_facts(item.raw)
    return {
        "id": item.id,
        "label": item.label,
        "source": item.source,
        "date": facts.date,
        "size": len(item.raw),
        "path": item.path,
        "member": item.member,
        "offset": item.offset,
        "digest": hashlib.sha256(item.raw).hexdigest(),
        "body_digest": facts.body_digest,
        "message_id": facts.message_id,
    }


def index_corpus(
    specs: Iterable[str | Path | CorpusSpec] | str | Path | CorpusSpec,
    *,
    dedupe: bool = True,
    limit: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Index one or several corpora into a DataFrame (columns ``INDEX_COLUMNS``).

    Messages are read once, in corpus order, and dropped after their row is built.
    ``df.attrs["duplicates"]`` holds ``{"message_id": n, "body": n, "label_conflicts": n}``.
    """
    if isinstance(specs, str | Path | CorpusSpec):
        specs = [specs]
    parsed = [parse_spec(s) for s in specs]
    rows: list[dict[str, Any]] = []
    bar = _progress(progress, "indexing")
    try:
        for spec in parsed:
            for item in iter_corpus(spec):
                rows.append(index_row(item))
                if bar is not None:
                    bar.update(1)
                if limit is not None and len(rows) >= limit:
                    break
            if limit is not None and len(rows) >= limit:
                break
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    df["date"] = pd.to_datetime(df["date"], utc=True)
    df["size"] = df["size"].astype("int64")
    df["offset"] = df["offset"].astype("int64")
    dups = {"message_id": 0, "body": 0, "label_conflicts": 0}
    if dedupe and len(df):
        df, dups = drop_duplicates(df)
    df.attrs["duplicates"] = dups
    df.attrs["corpora"] = [str(s) for s in parsed]
    return df


def drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop repeated messages (same Message-ID, or same non-empty body), keeping the first."""
    has_mid = df["message_id"] != ""
    dup_mid = has_mid & df.duplicated("message_id", keep="first")
    has_body = df["body_digest"] != ""
    dup_body = ~dup_mid & has_body & df.duplicated("body_digest", keep="first")
    dropped = dup_mid | dup_body
    conflicts = 0
    for key, mask in (("message_id", has_mid), ("body_digest", has_body)):
        labels = df.loc[mask].groupby(key)["label"].nunique()
        conflicts += int((labels > 1).sum())
    out = df.loc[~dropped].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out, {
        "message_id": int(dup_mid.sum()),
        "body": int(dup_body.sum()),
        "label_conflicts": conflicts,
    }


def _progress(enabled: bool, desc: str, total: int | None = None) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="msg", leave=False)


def subsample(df: pd.DataFrame, n: int | None, seed: int = 42) -> pd.DataFrame:
    """At most ``n`` rows, stratified by label, corpus order kept (for quick experiments)."""
    if n is None or n <= 0 or len(df) <= n:
        return df
    frac = n / len(df)
    parts = [
        g.sample(n=max(1, round(len(g) * frac)), random_state=seed) for _, g in df.groupby("label")
    ]
    out = pd.concat(parts).sort_index().reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


# ---- reading messages back ---------------------------------------------------------------


class _ArchiveHandles:
    """A few open decompressed archive streams, reused for forward reads (thread-safe)."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._open: OrderedDict[str, IO[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: str, offset: int, size: int) -> bytes:
        with self._lock:
            fh = self._open.pop(path, None)
            if fh is None or fh.tell() > offset:
                if fh is not None:
                    fh.close()
                fh = _archive_opener(Path(path))
            self._open[path] = fh
            while len(self._open) > self._size:
                _, old = self._open.popitem(last=False)
                old.close()
            fh.seek(offset)
            data = fh.read(size)
        if len(data) != size:
            raise CorpusError(f"{path}: short read at offset {offset}")
        return data

    def close(self) -> None:
        with self._lock:
            for fh in self._open.values():
                fh.close()
            self._open.clear()


_HANDLES = _ArchiveHandles()


def read_message(row: Any) -> bytes:
    """The raw bytes of one indexed message (a DataFrame row, a dict or a namedtuple)."""
    get: Callable[[str], Any] = row.__getitem__ if isinstance(row, dict) else row.__getattribute__
    path, member = str(get("path")), str(get("member") or "")
    offset, size = int(get("offset")), int(get("size"))
    if member:  # archive member: seek to its data in the decompressed stream
        return _HANDLES.read(path, offset, size)
    if offset >= 0:  # mbox: the message starts at offset; re-split to undo quoting
        return _read_mbox_message(Path(path), offset)
    return Path(path).read_bytes()


def _read_mbox_message(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        lines: list[bytes] = []
        prev_blank = False
        for line in fh:
            if prev_blank and _MBOX_FROM.match(line):
                break
            lines.append(line)
            prev_blank = line.strip() == b""
    return _mbox_message(lines)


def sample_messages(corpus: Path, per_archive: int, archives: Sequence[str] = ()) -> list[bytes]:
    """The first ``per_archive`` messages of each corpus archive in ``corpus`` (name order),
    only of archives whose names contain one of ``archives`` when given. Reads each archive
    only as far as needed (for tests and benches)."""
    out: list[bytes] = []
    for path in sorted(p for p in Path(corpus).iterdir() if _is_archive(p)):
        if archives and not any(a in path.name for a in archives):
            continue
        out.extend(item.raw for item in islice(iter_corpus(path), per_archive))
    return out


def load_messages(spec: str | Path | CorpusSpec) -> tuple[list[str], list[bytes], Any]:
    """Every message of a (small) corpus in memory: (ids, raws, labels 1=spam/0=ham),
    in corpus order, exact duplicates dropped. For tests, notebooks and benches; training
    streams through :func:`index_corpus` and :mod:`mailsift.pipeline.extract` instead."""
    import numpy as np

    ids: list[str] = []
    raws: list[bytes] = []
    labels: list[int] = []
    seen: set[str] = set()
    for item in iter_corpus(spec):
        digest = hashlib.sha256(item.raw).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        ids.append(item.id)
        raws.append(item.raw)
        labels.append(1 if item.label == "spam" else 0)
    return ids, raws, np.asarray(labels, dtype=np.int64)


def iter_raw(df: pd.DataFrame, *, progress: bool = False) -> Iterator[bytes]:
    """Raw bytes of every indexed message, in the DataFrame's order.

    Messages of one archive are read in one forward pass when the order allows it.
    """
    bar = _progress(progress, "reading", total=len(df))
    try:
        for row in df.itertuples(index=False):
            yield read_message(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def iter_chunks(df: pd.DataFrame, chunk_size: int = 256) -> Iterator[list[bytes]]:
    """Raw messages in chunks of ``chunk_size`` (bounded memory for parallel work)."""
    chunk: list[bytes] = []
    for raw in iter_raw(df):
        chunk.append(raw)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def archive_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` sorted so archive members are read forward (fast); other rows keep order."""
    key = df["path"].astype(str) + "\0"
    return df.assign(_k=key).sort_values(["_k", "offset"], kind="stable").drop(columns="_k")


# ---- download ----------------------------------------------------------------------------


def fetch_spamassassin(
    dest: Path,
    *,
    archives: dict[str, str] | None = None,
    base_url: str = SPAMASSASSIN_URL,
    timeout: float = 30.0,
) -> list[Path]:
    """Download the SpamAssassin public corpus archives into ``dest``, checking sha256.

    Archives already present with the right checksum are kept. Raises CorpusError when a
    download fails (e.g. offline) or a checksum does not match (the bad file is removed).
    """
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for name, sha in (archives or SPAMASSASSIN_ARCHIVES).items():
        target = dest / name
        if target.is_file() and _sha256_file(target) == sha:
            out.append(target)
            continue
        url = base_url.rstrip("/") + "/" + name
        if not url.startswith(("https://", "http://", "file://")):
            raise CorpusError(f"refusing to fetch {url}: not an http(s) or file URL")
        tmp = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as fh:  # noqa: S310
                while chunk := resp.read(1 << 16):
                    fh.write(chunk)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CorpusError(f"cannot download {url}: {e} (offline?)") from e
        got = _sha256_file(tmp)
        if got != sha:
            tmp.unlink(missing_ok=True)
            raise CorpusError(f"{url}: sha256 {got} does not match the expected {sha}")
        tmp.replace(target)
        out.append(target)
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def summarize(df: pd.DataFrame) -> dict[str, Any]:
    """Counts per label and source, date range, duplicates: for `mailsift corpus index`."""
    dates = df["date"].dropna()
    return {
        "messages": len(df),
        "spam": int((df["label"] == SPAM).sum()),
        "ham": int((df["label"] == HAM).sum()),
        "sources": {str(k): int(v) for k, v in df["source"].value_counts(sort=False).items()},
        "dated": len(dates),
        "first_date": dates.min().isoformat() if len(dates) else None,
        "last_date": dates.max().isoformat() if len(dates) else None,
        "bytes": int(df["size"].sum()),
        "duplicates": df.attrs.get("duplicates", {}),
    }


__all__ = [
    "CorpusError",
    "CorpusItem",
    "CorpusSpec",
    "archive_order",
    "detect_format",
    "drop_duplicates",
    "fetch_spamassassin",
    "header_facts",
    "index_corpus",
    "iter_chunks",
    "iter_corpus",
    "iter_mbox",
    "iter_raw",
    "parse_spec",
    "read_message",
    "subsample",
    "summarize",
]
