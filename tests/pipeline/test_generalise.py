"""The generalisation protocol: corpora and their groups, weights, splits, a whole run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mailsift.config import Settings
from mailsift.pipeline import generalise as gen
from mailsift.pipeline.sources import (
    SPAMASSASSIN,
    corpus_of,
    discover_corpora,
    source_weights,
    stacker_groups,
)
from mailsift.pipeline.train import refit_inputs
from tests.pipeline import fixtures as F


def _site(tmp: Path, n: int = 24) -> Path:
    """A folder laid out as ../shared/corpora: the SpamAssassin corpus's archives and two
    other corpora, one with both classes and one of ham only."""
    sa = tmp / "spamassassin"
    sa.mkdir(parents=True)
    F.sa_archive(sa / "20030228_spam.tar.bz2", "spam", [F.message(i, "spam") for i in range(n)])
    F.sa_archive(
        sa / "20030228_spam_2.tar.bz2", "spam_2", [F.message(50 + i, "spam") for i in range(n)]
    )
    F.sa_archive(
        sa / "20030228_easy_ham.tar.bz2",
        "easy_ham",
        [F.message(100 + i, "ham") for i in range(2 * n)],
    )
    F.sa_archive(
        sa / "20030228_easy_ham_2.tar.bz2",
        "easy_ham_2",
        [F.message(200 + i, "ham") for i in range(n)],
    )
    F.sa_archive(
        sa / "20030228_hard_ham.tar.bz2", "hard_ham", [F.message(300 + i, "ham") for i in range(6)]
    )
    modern = tmp / "modern"
    modern.mkdir()
    site = [("ham", F.message(400 + i, "ham")) for i in range(n)]
    site += [("spam", F.message(500 + i, "spam")) for i in range(n)]
    F.labelled_archive(modern / "site-2025.tar.xz", "site-2025", site)
    F.labelled_archive(
        modern / "list-2020.tar.xz",
        "list-2020",
        [("ham", F.message(600 + i, "ham")) for i in range(n)],
    )
    return tmp


def test_corpus_names_groups_and_discovery(tmp_path: Path) -> None:
    assert corpus_of("spamassassin:20030228_spam_2.tar.bz2") == SPAMASSASSIN
    assert corpus_of("spamassassin:easy_ham") == SPAMASSASSIN
    assert corpus_of("archive:foff-milter-2025.tar.xz") == "foff-milter-2025"
    assert corpus_of("mbox:inbox.mbox") == "mbox:inbox.mbox"
    root = _site(tmp_path)
    found = discover_corpora(root)
    assert sorted(found) == ["list-2020", "site-2025", SPAMASSASSIN]
    df = gen.load_index(root)
    assert set(df["corpus"]) == set(found)
    groups = stacker_groups(df)
    sa = df["corpus"] == SPAMASSASSIN
    # the SpamAssassin corpus: two collection rounds; hard_ham shared out between them
    assert set(groups[sa]) == {"spamassassin/1", "spamassassin/2"}
    second = df["source"].str.contains("_2.tar")
    assert set(groups[(second & sa).to_numpy()]) == {"spamassassin/2"}
    hard = df["source"].str.contains("hard_ham").to_numpy()
    assert sorted(pd.Series(groups[hard]).value_counts().tolist()) == [3, 3]
    assert set(groups[~sa.to_numpy()]) == {"site-2025", "list-2020"}


def test_source_weights_balance_archives_within_each_class() -> None:
    df = pd.DataFrame({"source": ["big"] * 90 + ["small"] * 10 + ["s"] * 20})
    y = np.array([0] * 100 + [1] * 20)
    w = source_weights(df, y, power=1.0)
    # each class keeps its total weight; with power 1 each ham archive weighs the same
    assert w[y == 0].sum() == pytest.approx(100) and w[y == 1].sum() == pytest.approx(20)
    assert w[:90].sum() == pytest.approx(w[90:100].sum())
    half = source_weights(df, y, power=0.5)
    assert w[95] > half[95] > half[0] > w[0]  # the small archive's messages weigh more


def test_refit_weighs_the_whole_corpus_not_each_part() -> None:
    """The refit of ``train --default`` gets the weights and groups the whole corpus has,
    whatever the held-out split cut out of it (feedback rows between, weight 1)."""
    df = pd.DataFrame(
        {
            "source": ["spamassassin:easy_ham"] * 60 + ["archive:site-2025.tar.xz"] * 40,
            "label": ["ham"] * 60 + ["ham"] * 20 + ["spam"] * 20,
        }
    )
    train_part, test_part = df.iloc[:70], df.iloc[70:]  # the newest part: most of one source
    w, g = refit_inputs(train_part, test_part, n_extra=2)
    y = np.array([0] * 80 + [1] * 20)
    whole_w, whole_g = source_weights(df, y), stacker_groups(df)
    assert np.allclose(np.delete(w, [70, 71]), whole_w)
    assert list(np.delete(g, [70, 71])) == list(whole_g)
    assert list(w[70:72]) == [1.0, 1.0] and list(g[70:72]) == ["feedback", "feedback"]
    # weighed per part instead, the site's ham in the held-out part would weigh as much as
    # all of it does in the whole corpus
    parts = np.concatenate([source_weights(train_part, y[:70]), source_weights(test_part, y[70:])])
    assert not np.allclose(parts, whole_w)


def test_splits_of_the_protocol() -> None:
    got = gen.splits(["spamassassin", "b", "a"])
    names = [(p, s.name, s.train, s.test) for p, s in got]
    assert names == [
        ("sa->other", "spamassassin -> a", ("spamassassin",), ("a",)),
        ("sa->other", "spamassassin -> b", ("spamassassin",), ("b",)),
        ("other->sa", "others -> spamassassin", ("a", "b"), ("spamassassin",)),
        ("leave-one-out", "without a", ("b", "spamassassin"), ("a",)),
        ("leave-one-out", "without b", ("a", "spamassassin"), ("b",)),
        ("leave-one-out", "without spamassassin", ("a", "b"), ("spamassassin",)),
    ]
    # never a test corpus among the training ones
    assert all(not set(s.train) & set(s.test) for _, s in got)


def test_measure_one_class_test_sets_and_thresholds() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.95, 0.7, 0.99])
    row = gen.measure("p", "x", "t", "sys", y, gen.Prediction(s, {"spam": 0.5, "hold": 0.9}))
    assert row.one_minus_roca_pct == pytest.approx(100 * (1 - 7 / 8))  # 7 of 8 pairs in order
    assert row.ham_at == {"spam": 0.5, "hold": 0.25, "reject": None}
    assert row.spam_at["spam"] == 1.0 and row.spam_at["hold"] == 0.5
    ham_only = gen.measure("p", "x", "t", "sys", y[:4], gen.Prediction(s[:4], {"spam": 0.5}))
    assert ham_only.one_minus_roca_pct is None and ham_only.recall_at_fpr["0.001"] is None
    assert ham_only.ham_at["spam"] == 0.5


def test_run_trains_on_other_corpora_and_reports_every_split(
    tmp_path: Path, test_settings: Settings
) -> None:
    df = gen.load_index(_site(tmp_path))
    seen: list[tuple[set[str], set[str]]] = []
    system = gen.mailsift_system(test_settings)

    def spy(train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame) -> gen.Prediction:
        seen.append((set(train["corpus"]), set(test["corpus"])))
        return system(train, y, test)

    rows = gen.run(df, {"mailsift": spy})
    assert all(not tr & te for tr, te in seen)  # never tested on a corpus it trained on
    by = {(r.protocol, r.split): r for r in rows}
    # + a pooled row for each protocol of two or more splits (sa->other, leave-one-out)
    assert len(seen) == 6 and len(rows) == 6 + 2
    ham_only = by[("sa->other", "spamassassin -> list-2020")]
    assert ham_only.n_spam == 0 and ham_only.one_minus_roca_pct is None
    assert ham_only.ham_at["spam"] is not None  # the share of the list's ham tagged
    both = by[("sa->other", "spamassassin -> site-2025")]
    assert both.n_ham == both.n_spam == 24
    # the handwritten classes share no words: any sane model ranks them apart
    assert both.one_minus_roca_pct is not None and both.one_minus_roca_pct < 5
    assert (
        0.5 <= both.thresholds["spam"] <= both.thresholds["hold"] <= both.thresholds["reject"] < 1
    )
    pooled = by[("sa->other", "pooled")]
    assert pooled.n_ham == 48 and pooled.n_spam == 24
    table = gen.markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "| pooled |" in table


def test_default_model_learns_from_every_shared_corpus(tmp_path: Path) -> None:
    from mailsift.commands.train import _default_corpora
    from mailsift.config import load_settings

    root = _site(tmp_path / "corpora")
    inside = load_settings(paths={"corpora": root, "corpus": root / "spamassassin"})
    assert sorted(Path(p).name for p in _default_corpora(inside)) == [
        "list-2020.tar.xz",
        "site-2025.tar.xz",
        "spamassassin",
    ]
    # a corpus set elsewhere is the user's choice: the default model learns from it alone
    own = tmp_path / "own"
    own.mkdir()
    elsewhere = load_settings(paths={"corpora": root, "corpus": own})
    assert _default_corpora(elsewhere) == [str(own)]


def test_refit_saves_the_model_of_all_mail(tmp_path: Path, test_settings: Settings) -> None:
    from mailsift.classifier.model import SpamModel
    from mailsift.pipeline.train import train

    root = _site(tmp_path / "corpora")
    paths = [str(p) for p in discover_corpora(root).values()]
    res = train(paths, "blend", tmp_path / "m", test_settings, register=False, refit=True)
    manifest = SpamModel.load(res.model_dir).manifest
    assert manifest["refit_on_all"] is True
    # the figures are the held-out split's; the saved model's out-of-source figures come
    # from its own fit on all the mail (every corpus held out in turn)
    assert res.split["test_messages"] > 0
    assert manifest["out_of_fold"]["out_of_source"] is True


def test_stock_rules_are_the_ones_the_stock_files_define(tmp_path: Path) -> None:
    from mailsift.config import load_settings
    from mailsift.pipeline.train import rule_priors, stock_rules

    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "20_words.cf").write_text(
        "body STOCK_WORD /\\bviagra\\b/i\nscore STOCK_WORD 2.5\n"
        "body STOCK_NO_SCORE /\\bcasino\\b/i\n"
    )
    rules = {"stock_paths": [stock], "cache_dir": tmp_path / "cache"}
    settings = load_settings(paths={"var_dir": tmp_path / "var"}, rules=rules)
    names = stock_rules(settings)
    assert {"STOCK_WORD", "STOCK_NO_SCORE"} <= names
    assert not any(n.startswith("MS_") for n in names)  # ours are hand-set
    priors = rule_priors(settings)
    assert priors is not None and priors["STOCK_WORD"] == 2.5
    assert any(n.startswith("MS_") for n in priors)
    off = load_settings(paths={"var_dir": tmp_path / "var"}, rules={**rules, "use_stock": False})
    assert stock_rules(off) == frozenset()
