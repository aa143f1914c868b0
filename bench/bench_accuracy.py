"""Accuracy of mailsift's default model against peers, on the same folds, in one run.

    .venv/bin/python -m bench.bench_accuracy [--folds 5] [--sa-folds 1] [--sa-test 600]

Data: the SpamAssassin public corpus (``settings.paths.corpus``), read and deduplicated by
``mailsift.pipeline.corpus``. Two protocols, every system on the same splits:

- **cv**: 5-fold stratified cross-validation (fixed seed); figures are means over folds.
- **time**: the time-ordered split of ``mailsift.pipeline.split`` (train on the oldest
  80 %, test on the newest 20 %).

Systems:

- **mailsift**: the default model kind (``settings.model.kind``) over the scorer's own
  samples (parse, rules incl. the stock SpamAssassin rules when installed, features).
- **baseline**: TF-IDF (sublinear tf, unigrams) + LogisticRegression on the raw message text.
- **bogofilter**: trained with ``bogofilter -s`` / ``-n`` (bulk ``-B``) on the fold's training
  messages in a temp ``-d`` dir, scored with ``-T`` (spamicity).
- **spamassassin**: ``spamd -L`` (no network tests) on a loopback port with the stock rules
  (``sa-update`` is never run), its Bayes trained with ``sa-learn`` on the fold's training
  messages in a temp dir; each test message scored with ``spamc -c`` (the score is the
  ranking). SpamAssassin scores ~10-20 messages/s here, so it runs on ``--sa-folds`` folds
  and at most ``--sa-test`` (stratified) test messages per split; its rows say so.

Also measured: mailsift's training time on the whole corpus (features on all cores + fit;
target < 60 s) and in-process scoring speed on one core (``Scorer.score``: parse, rules,
model, explanation; target >= 500 messages/s). Output: the exact command and a Markdown
table. Figures are noisy when other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bench.bench_api import free_port, spamd_command, stop_group, wait_port
from mailsift.config import Settings, load_settings
from mailsift.pipeline.corpus import index_corpus, iter_raw, subsample
from mailsift.pipeline.extract import extract
from mailsift.pipeline.metrics import compute_metrics
from mailsift.pipeline.split import split_index
from mailsift.pipeline.train import fit_on_sources

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# (train indices, test indices) -> spam scores for the test indices
Fitter = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Row:
    system: str
    protocol: str
    one_minus_roca: list[float] = field(default_factory=list)
    recall_001: list[float] = field(default_factory=list)
    recall_01: list[float] = field(default_factory=list)
    n_test: int = 0
    note: str = ""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- systems ------------------------------------------------------------------------------


class Mailsift:
    def __init__(
        self, samples: list, y: np.ndarray, df: pd.DataFrame, settings: Settings, kind: str
    ) -> None:
        self.samples, self.y, self.df, self.settings, self.kind = samples, y, df, settings, kind

    def __call__(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        model = fit_on_sources(
            [self.samples[i] for i in tr], self.y[tr], self.df.iloc[tr], self.kind, self.settings
        )
        return np.asarray(model.predict_proba([self.samples[i] for i in te]))


class Baseline:
    def __init__(self, texts: list[str], y: np.ndarray) -> None:
        self.texts, self.y = texts, y

    def __call__(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_df=0.95)
        x_tr = vec.fit_transform([self.texts[i] for i in tr])
        clf = LogisticRegression(C=10.0, solver="liblinear", max_iter=1000)
        clf.fit(x_tr, self.y[tr])
        return clf.predict_proba(vec.transform([self.texts[i] for i in te]))[:, 1]


class Bogofilter:
    def __init__(self, files: list[Path], y: np.ndarray, tmp: Path) -> None:
        self.files, self.y, self.tmp = files, y, tmp
        self.exe = shutil.which("bogofilter") or "/usr/bin/bogofilter"

    def _bulk(self, db: Path, flag: str, idx: np.ndarray) -> str:
        out = []
        for i in range(0, len(idx), 500):
            names = [str(self.files[j]) for j in idx[i : i + 500]]
            p = subprocess.run(
                [self.exe, "-d", str(db), flag, "-B", *names], capture_output=True, text=True
            )
            if p.returncode not in (0, 1, 2) or (flag != "-T" and p.returncode != 0):
                raise RuntimeError(f"bogofilter {flag} failed: {p.stderr[-500:]}")
            out.append(p.stdout)
        return "".join(out)

    def __call__(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        db = Path(tempfile.mkdtemp(dir=self.tmp, prefix="bogo-"))
        self._bulk(db, "-s", tr[self.y[tr] == 1])
        self._bulk(db, "-n", tr[self.y[tr] == 0])
        scores: dict[str, float] = {}
        for line in self._bulk(db, "-T", te).splitlines():
            parts = line.rsplit(None, 2)
            if len(parts) == 3:
                scores[parts[0]] = float(parts[2])
        shutil.rmtree(db, ignore_errors=True)
        return np.array([scores[str(self.files[j])] for j in te])


class SpamAssassin:
    """spamd -L with a Bayes database trained by sa-learn on the fold's training messages."""

    def __init__(self, files: list[Path], y: np.ndarray, tmp: Path, clients: int = 2) -> None:
        self.files, self.y, self.tmp, self.clients = files, y, tmp, clients
        self.spamd = shutil.which("spamd") or "/usr/sbin/spamd"
        self.spamc = shutil.which("spamc") or "/usr/bin/spamc"
        self.sa_learn = shutil.which("sa-learn") or "/usr/bin/sa-learn"
        self.commands: list[str] = []

    def _site(self, root: Path) -> Path:
        site = root / "site"
        site.mkdir(parents=True)
        for pre in Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, site)
        bayes = root / "bayes"
        bayes.mkdir()
        (site / "local.cf").write_text(
            "use_bayes 1\nbayes_auto_learn 0\nbayes_file_mode 0777\n"
            f"bayes_path {bayes}/bayes\nbayes_learn_to_journal 0\n"
        )
        return site

    def _learn(self, site: Path, flag: str, idx: np.ndarray) -> None:
        for i in range(0, len(idx), 1000):
            names = [str(self.files[j]) for j in idx[i : i + 1000]]
            cmd = [
                self.sa_learn,
                f"--siteconfigpath={site}",
                "--configpath=/usr/share/spamassassin",
                "-L",
                "--no-sync",
                flag,
                *names,
            ]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"sa-learn {flag} failed: {p.stderr[-800:]}")
        self.commands.append(f"sa-learn --siteconfigpath=SITE -L {flag} FILES...")

    def __call__(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        root = Path(tempfile.mkdtemp(dir=self.tmp, prefix="sa-"))
        root.chmod(0o777)
        site = self._site(root)
        t0 = time.perf_counter()
        self._learn(site, "--spam", tr[self.y[tr] == 1])
        self._learn(site, "--ham", tr[self.y[tr] == 0])
        subprocess.run([self.sa_learn, f"--siteconfigpath={site}", "--sync"], capture_output=True)
        log(f"  sa-learn on {len(tr)} messages: {time.perf_counter() - t0:.0f}s")
        subprocess.run(["chmod", "-R", "a+rwX", str(root)], check=True)
        home = root / "home"
        home.mkdir(mode=0o777)
        port = free_port()
        cmd = spamd_command(
            self.spamd,
            site,
            port,
            self.clients,
            home,
            root / "spamd.pid",
            configpath="/usr/share/spamassassin",
        )
        self.commands.append(shlex.join(cmd).replace(str(root), "TMP"))
        with open(root / "spamd.log", "wb") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_port(port, proc, 180, "spamd")
            t1 = time.perf_counter()

            def score(j: int) -> float:
                for _ in range(30):
                    with open(self.files[j], "rb") as fh:
                        p = subprocess.run(
                            [self.spamc, "-d", "127.0.0.1", "-p", str(port), "-c", "-x"],
                            stdin=fh,
                            capture_output=True,
                        )
                    out = p.stdout.decode().strip()
                    if p.returncode in (0, 1) and "/" in out and not out.endswith("/0.0"):
                        return float(out.split("/")[0])
                    time.sleep(1)  # spamd children not ready yet
                raise RuntimeError(f"spamc failed on {self.files[j]}: {p.stderr[-300:]!r}")

            with ThreadPoolExecutor(self.clients) as pool:
                scores = np.array(list(pool.map(score, te)))
            log(
                f"  spamd scored {len(te)} messages at {len(te) / (time.perf_counter() - t1):.1f} msg/s"
            )
            return scores
        finally:
            stop_group(proc)
            shutil.rmtree(root, ignore_errors=True)


# ---- protocol -----------------------------------------------------------------------------


def run_split(row: Row, fit: Fitter, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> None:
    scores = fit(tr, te)
    m = compute_metrics(y[te], scores)
    row.one_minus_roca.append(m.one_minus_roca_pct)
    row.recall_001.append(m.recall_at_fpr[0.001])
    row.recall_01.append(m.recall_at_fpr[0.01])
    row.n_test += len(te)


def limit_test(te: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(te) <= n:
        return te
    df = pd.DataFrame({"i": te, "label": np.where(y[te] == 1, "spam", "ham")})
    return np.sort(subsample(df, n, seed)["i"].to_numpy())


def mailsift_speed(
    df: pd.DataFrame, settings: Settings, kind: str, n: int
) -> tuple[list, float, float, float, float]:
    """(samples, features s, fit s on all, scoring msg/s on one core, n scored)."""
    from mailsift.classifier.scorer import Scorer, load_rules

    t0 = time.perf_counter()
    samples = extract(df, settings)
    t1 = time.perf_counter()
    y = (df["label"] == "spam").to_numpy().astype(int)
    model = fit_on_sources(samples, y, df, kind, settings)
    t2 = time.perf_counter()
    rules = load_rules(settings)
    scorer = Scorer(model, rules, settings)
    raws = list(iter_raw(subsample(df, n, 1)))
    scorer.score(raws[0])
    t3 = time.perf_counter()
    for raw in raws:
        scorer.score(raw)
    rate = len(raws) / (time.perf_counter() - t3)
    return samples, t1 - t0, t2 - t1, rate, len(raws)


def markdown(rows: list[Row], folds: int) -> str:
    out = [
        "| system | protocol | 1-ROCA% | recall @0.1% FPR | recall @1% FPR | test msgs | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        sd = f" ± {np.std(r.one_minus_roca):.3f}" if len(r.one_minus_roca) > 1 else ""
        out.append(
            f"| {r.system} | {r.protocol} | {np.mean(r.one_minus_roca):.3f}{sd} | "
            f"{100 * np.mean(r.recall_001):.1f}% | {100 * np.mean(r.recall_01):.1f}% | "
            f"{r.n_test} | {r.note} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_accuracy")
    ap.add_argument("--corpus", default=None, help="default: settings.paths.corpus")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--kind", default=None, help="mailsift model kind (default: settings)")
    ap.add_argument("--systems", default="mailsift,baseline,bogofilter,spamassassin")
    ap.add_argument("--sa-folds", type=int, default=1, help="CV folds SpamAssassin runs on")
    ap.add_argument("--sa-test", type=int, default=600, help="max SA test messages per split")
    ap.add_argument("--speed-messages", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    settings = load_settings()
    kind = args.kind or settings.model.kind
    corpus = args.corpus or settings.paths.corpus
    systems = args.systems.split(",")
    command = ".venv/bin/python -m bench.bench_accuracy " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    log(f"indexing {corpus}")
    df = index_corpus(corpus)
    y = (df["label"] == "spam").to_numpy().astype(int)
    log(f"{len(df)} messages ({y.sum()} spam), duplicates dropped {df.attrs['duplicates']}")

    tmp = Path(tempfile.mkdtemp(prefix="mailsift-bench-"))
    tmp.chmod(0o755)
    try:
        msgdir = tmp / "msgs"
        msgdir.mkdir()
        files = []
        texts = []
        for i, raw in enumerate(iter_raw(df)):
            p = msgdir / f"{i:05d}.eml"
            p.write_bytes(raw)
            p.chmod(0o644)
            files.append(p)
            texts.append(raw.decode("latin-1"))
        fitters: dict[str, Fitter] = {}
        timings: dict[str, float] = {}
        if "mailsift" in systems:
            samples, feat_s, fit_s, rate, n_rate = mailsift_speed(
                df, settings, kind, args.speed_messages
            )
            timings = {"features_s": feat_s, "fit_s": fit_s, "score_rate": rate, "n_rate": n_rate}
            log(
                f"mailsift: features {feat_s:.1f}s + fit {fit_s:.1f}s on {len(df)}; {rate:.0f} msg/s"
            )
            fitters["mailsift"] = Mailsift(samples, y, df.reset_index(drop=True), settings, kind)
        if "baseline" in systems:
            fitters["baseline"] = Baseline(texts, y)
        if "bogofilter" in systems:
            fitters["bogofilter"] = Bogofilter(files, y, tmp)
        sa = SpamAssassin(files, y, tmp) if "spamassassin" in systems else None

        folds = list(
            StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(
                np.zeros(len(y)), y
            )
        )
        ts = split_index(
            df.assign(_i=np.arange(len(df))), test_fraction=0.2, seed=args.seed, method="time"
        )
        time_tr, time_te = ts.train["_i"].to_numpy(), ts.test["_i"].to_numpy()
        rows: list[Row] = []
        for name, fit in fitters.items():
            cv = Row(name, f"cv{args.folds}")
            for k, (tr, te) in enumerate(folds):
                t = time.perf_counter()
                run_split(cv, fit, y, tr, te)
                log(
                    f"{name} fold {k + 1}: 1-ROCA% {cv.one_minus_roca[-1]:.4f} ({time.perf_counter() - t:.1f}s)"
                )
            tr_row = Row(name, "time")
            run_split(tr_row, fit, y, time_tr, time_te)
            rows += [cv, tr_row]
        if sa is not None:
            cv = Row(
                "spamassassin",
                f"cv{args.folds}",
                note=f"{args.sa_folds} fold(s), <= {args.sa_test} test msgs each",
            )
            for k, (tr, te) in enumerate(folds[: args.sa_folds]):
                log(f"spamassassin fold {k + 1}")
                run_split(cv, sa, y, tr, limit_test(te, y, args.sa_test, args.seed))
            tr_row = Row("spamassassin", "time", note=f"<= {args.sa_test} test msgs")
            log("spamassassin time split")
            run_split(tr_row, sa, y, time_tr, limit_test(time_te, y, args.sa_test, args.seed))
            rows += [cv, tr_row]
        order = {"mailsift": 0, "baseline": 1, "bogofilter": 2, "spamassassin": 3}
        rows.sort(key=lambda r: (r.protocol != f"cv{args.folds}", order.get(r.system, 9)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nCommand: `{command}`\n")
    print(
        f"SpamAssassin public corpus: {len(df)} messages after dropping duplicates "
        f"({int(y.sum())} spam); mailsift model `{kind}`; time split: train {len(time_tr)} "
        f"(up to {ts.cutoff}), test {len(time_te)} ({int(y[time_te].sum())} spam).\n"
    )
    print(markdown(rows, args.folds))
    if timings:
        print(
            f"\nmailsift training on the whole corpus: {timings['features_s'] + timings['fit_s']:.1f} s "
            f"(features on {settings.train.n_jobs} cores {timings['features_s']:.1f} s + fit "
            f"{timings['fit_s']:.1f} s; target < 60 s). In-process scoring on one core "
            f"(parse, rules, model, explanation): {timings['score_rate']:.0f} messages/s over "
            f"{int(timings['n_rate'])} messages (target >= 500)."
        )
    if sa is not None:
        print("\nSpamAssassin commands:\n")
        for c in dict.fromkeys(sa.commands):
            print(f"    {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
