"""Corpus readers: every format, LABEL:PATH, dedupe counts, reading messages back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mailsift.pipeline import corpus as C
from tests.pipeline import fixtures as F


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _roundtrip(df) -> None:
    """Every indexed row reads back to the exact bytes it was indexed from."""
    for row in df.itertuples(index=False):
        assert _sha(C.read_message(row)) == row.digest
    assert [_sha(r) for r in C.iter_raw(df)] == list(df["digest"])


def test_spamassassin_archives_in_place(tmp_path: Path) -> None:
    spam = [F.message(i, "spam") for i in range(4)]
    ham = [F.message(100 + i, "ham") for i in range(6)]
    F.sa_archive(tmp_path / "20030228_spam.tar.bz2", "spam", spam)
    F.sa_archive(tmp_path / "20030228_easy_ham.tar.bz2", "easy_ham", ham)
    F.sa_archive(tmp_path / "20030228_hard_ham.tar.bz2", "hard_ham", [F.message(200, "ham")])
    assert C.detect_format(tmp_path) == "spamassassin"
    df = C.index_corpus(tmp_path)
    assert len(df) == 11  # the cmds files are skipped
    assert (df["label"] == "spam").sum() == 4
    assert set(df.loc[df["label"] == "ham", "source"]) == {
        "spamassassin:20030228_easy_ham.tar.bz2",
        "spamassassin:20030228_hard_ham.tar.bz2",
    }
    assert not df["member"].str.endswith("cmds").any()
    assert df["date"].notna().all()
    assert list(C.INDEX_COLUMNS) == list(df.columns)
    _roundtrip(df)
    # a single archive is a corpus too; read backwards (forces reopening the stream)
    one = C.index_corpus(tmp_path / "20030228_spam.tar.bz2")
    assert list(one["label"]) == ["spam"] * 4
    for row in list(one.itertuples(index=False))[::-1]:
        assert _sha(C.read_message(row)) == row.digest


def test_labelled_xz_archive_in_place(tmp_path: Path) -> None:
    msgs = [("ham", F.message(i, "ham")) for i in range(5)]
    msgs += [("spam", F.message(100 + i, "spam")) for i in range(3)]
    path = F.labelled_archive(tmp_path / "site-2025.tar.xz", "site-2025", msgs)
    assert C.detect_format(path) == "spamassassin"  # an archive: labels from its folders
    df = C.index_corpus(path)
    assert sorted(df["label"]) == ["ham"] * 5 + ["spam"] * 3
    # named by the archive, not as a part of the SpamAssassin corpus
    assert set(df["source"]) == {"archive:site-2025.tar.xz"}
    _roundtrip(df)
    for row in list(df.itertuples(index=False))[::-1]:  # backwards: reopens the xz stream
        assert _sha(C.read_message(row)) == row.digest


def test_spamassassin_unpacked_folders(tmp_path: Path) -> None:
    F.sa_folders(
        tmp_path,
        {
            "spam_2": [F.message(i, "spam") for i in range(3)],
            "easy_ham": [F.message(50 + i, "ham") for i in range(2)],
            "misc": [F.message(90, "ham")],  # no label in the name: ignored
        },
    )
    df = C.index_corpus(str(tmp_path))
    assert sorted(df["label"]) == ["ham", "ham", "spam", "spam", "spam"]
    _roundtrip(df)


def test_trec_layout_keeps_index_order(tmp_path: Path) -> None:
    msgs = [
        ("spam", F.message(1, "spam")),
        ("ham", F.message(2, "ham")),
        ("spam", F.message(3, "spam")),
    ]
    F.trec(tmp_path / "trec07p", msgs)
    assert C.detect_format(tmp_path / "trec07p") == "trec"
    df = C.index_corpus(tmp_path / "trec07p")
    assert list(df["label"]) == ["spam", "ham", "spam"]
    assert df["path"].iloc[1].endswith("data/inmail.2")
    _roundtrip(df)


def test_trec_bad_index_line_is_a_clear_error(tmp_path: Path) -> None:
    F.trec(tmp_path / "t", [("spam", F.message(1, "spam"))])
    (tmp_path / "t" / "full" / "index").write_text("maybe ../data/inmail.1\n")
    with pytest.raises(C.CorpusError, match=r"expected 'spam\|ham PATH'"):
        C.index_corpus(tmp_path / "t")


def test_labelled_folder(tmp_path: Path) -> None:
    F.labelled(tmp_path / "mine", F.make_messages(3, 4))
    assert C.detect_format(tmp_path / "mine") == "labelled"
    df = C.index_corpus(tmp_path / "mine")
    assert (df["label"] == "spam").sum() == 3 and (df["label"] == "ham").sum() == 4
    _roundtrip(df)


def test_mbox_with_label_and_from_quoting(tmp_path: Path) -> None:
    tricky = F.message(7, "ham", body="Hello\nFrom the desk of Bob\n>From quoted\nbye\n")
    msgs = [F.message(1, "ham"), tricky, F.message(3, "ham")]
    box = F.mbox(tmp_path / "inbox.mbox", msgs)
    with pytest.raises(C.CorpusError, match="ham:"):
        C.parse_spec(box)  # no label: refused with a hint
    df = C.index_corpus(f"ham:{box}")
    assert len(df) == 3 and set(df["label"]) == {"ham"}
    assert list(df["digest"]) == [_sha(m) for m in msgs]  # exact bytes, quoting undone
    _roundtrip(df)


def test_maildir_with_label(tmp_path: Path) -> None:
    md = F.maildir(tmp_path / "Junk", [F.message(i, "spam") for i in range(5)])
    assert C.detect_format(md) == "maildir"
    df = C.index_corpus(f"spam:{md}")
    assert len(df) == 5 and set(df["label"]) == {"spam"}
    _roundtrip(df)


def test_label_prefix_overrides_layout(tmp_path: Path) -> None:
    F.labelled(tmp_path / "x", F.make_messages(2, 2))
    df = C.index_corpus(f"spam:{tmp_path / 'x'}")
    assert set(df["label"]) == {"spam"}


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(C.CorpusError, match="does not exist"):
        C.parse_spec(tmp_path / "nope")


def test_duplicates_dropped_with_counts(tmp_path: Path) -> None:
    a = F.message(1, "spam")
    same_id = F.message(2, "spam", msgid="spam-1@example")  # same Message-ID as a
    same_body = F.message(3, "spam", msgid="other@example", body="identical body text\n")
    same_body2 = F.message(4, "ham", msgid="other2@example", body="identical   body text\n")
    unique = F.message(5, "ham")
    F.labelled(tmp_path / "c", [("spam", a), ("spam", same_id), ("spam", same_body)])
    md = F.maildir(tmp_path / "md", [same_body2, unique])
    df = C.index_corpus([tmp_path / "c", f"ham:{md}"])
    dups = df.attrs["duplicates"]
    assert dups == {"message_id": 1, "body": 1, "label_conflicts": 1}
    assert len(df) == 3
    raw = C.index_corpus([tmp_path / "c", f"ham:{md}"], dedupe=False)
    assert len(raw) == 5


def test_header_facts_prefers_received_date() -> None:
    raw = (
        b"Received: from a by b; Tue, 3 Sep 2002 10:00:00 +0200\n"
        b"Date: Thu, 1 Jan 1970 00:00:00 +0000\nMessage-ID: <X@Y>\n\nbody\n"
    )
    f = C.header_facts(raw)
    assert f.message_id == "x@y"
    assert f.date is not None and f.date.isoformat() == "2002-09-03T08:00:00+00:00"
    assert C.header_facts(b"Date: garbage\n\nx").date is None


def test_index_limit_and_summary(tmp_path: Path) -> None:
    F.labelled(tmp_path / "c", F.make_messages(5, 5))
    df = C.index_corpus(tmp_path / "c", limit=4)
    assert len(df) == 4
    s = C.summarize(C.index_corpus(tmp_path / "c"))
    assert s["messages"] == 10 and s["spam"] == 5 and s["dated"] == 10


def test_fetch_checks_sha256_and_fails_clearly(tmp_path: Path) -> None:
    src = tmp_path / "mirror"
    src.mkdir()
    F.sa_archive(src / "x_spam.tar.bz2", "spam", [F.message(1, "spam")])
    good = _sha((src / "x_spam.tar.bz2").read_bytes())
    got = C.fetch_spamassassin(
        tmp_path / "dl", archives={"x_spam.tar.bz2": good}, base_url=src.as_uri()
    )
    assert [p.name for p in got] == ["x_spam.tar.bz2"]
    with pytest.raises(C.CorpusError, match="does not match"):
        C.fetch_spamassassin(
            tmp_path / "dl2", archives={"x_spam.tar.bz2": "0" * 64}, base_url=src.as_uri()
        )
    assert not (tmp_path / "dl2" / "x_spam.tar.bz2").exists()
    with pytest.raises(C.CorpusError, match="cannot download"):
        C.fetch_spamassassin(
            tmp_path / "dl3", archives={"nope.tar.bz2": good}, base_url=src.as_uri()
        )
