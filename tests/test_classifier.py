"""Tests for training, loading, scoring and explaining the moderation model."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import flask
import pytest

from moderation import classifier
from moderation.classifier import (
    ARTIFACT_NAME,
    MANIFEST_NAME,
    Classifier,
    CommentText,
    ModelError,
    ModelStatus,
    Scores,
)
from moderation.training import (
    DEFAULT_DATA_DIR,
    HOLD_MAX_GOOD,
    choose_thresholds,
    model_cli,
    parse_label,
    train,
)

SHIPPED = Path(__file__).resolve().parents[1] / "models"

SPAM = [
    "Check out my channel http://bit.ly/free-money subscribe now!!!",
    "FREE iPhone giveaway, click www.win-prize.example to claim",
    "Earn $500 a day from home, call 555 123 4567 now",
    "Buy cheap followers at cheap-followers.example best price",
    "Subscribe to my channel please, I make music videos, check it out",
]
HAM = [
    "I really enjoyed this article about gardening.",
    "Thanks for the clear explanation of list comprehensions.",
    "Great song, it reminds me of summer holidays.",
    "I disagree with the second point, but well argued.",
    "The recipe worked, although I used less sugar.",
]
TOXIC = [
    "You are a stupid idiot and everyone hates you.",
    "Shut up, moron, nobody cares about your garbage opinion.",
    "What a pathetic loser, go to hell.",
    "fuck off you worthless piece of shit",
]
ZH_TOXIC = ["你就是个傻逼，滚", "这些人都是垃圾，滚出去", "脑残一个，闭嘴吧"]
ZH_OK = ["谢谢分享，这篇文章写得很好", "我同意你的看法，学到了很多", "今天天气不错，出去走走"]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _tiny_dataset(folder: Path) -> Path:
    """Write a small synthetic dataset with the real file layout."""
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    for video in ("psy", "katyperry", "lmfao", "eminem"):
        rows: list[list[object]] = []
        for i in range(30):
            spam = i % 2
            text = rng.choice(SPAM if spam else HAM) + f" {rng.randint(0, 9)}"
            author = "Free Money Now" if spam else rng.choice(["Anna", "Li Wei", "Tom"])
            rows.append([f"{video}{i}", author, "2014-01-01T00:00:00", text, spam])
        _write_csv(folder / f"youtube_spam_{video}.csv.gz",
                   ["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"], rows)
    _write_csv(folder / "sms_spam.csv.gz", ["Label", "SMS"],
               [["spam" if i % 3 == 0 else "ham",
                 rng.choice(SPAM if i % 3 == 0 else HAM)] for i in range(60)])
    header = ["id", "comment_text", "toxic", "severe_toxic", "obscene", "threat", "insult",
              "identity_hate"]
    rows = []
    for i in range(120):
        bad = i % 3 == 0
        text = rng.choice(TOXIC if bad else HAM) + f" {i}"
        rows.append([f"j{i}", text, int(bad), 0, int(bad and i % 2 == 0), 0, int(bad), 0])
    _write_csv(folder / "jigsaw_train_sample.csv.gz", header, rows)
    for name, n in (("cold_train", 120), ("cold_dev", 40)):
        rows = [[i, "train", "region", i % 2, rng.choice(ZH_TOXIC if i % 2 else ZH_OK)]
                for i in range(n)]
        _write_csv(folder / f"{name}.csv.gz", ["", "split", "topic", "label", "TEXT"], rows)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train a model on the tiny dataset once per module."""
    base = tmp_path_factory.mktemp("tiny")
    data = _tiny_dataset(base / "data")
    out = base / "model"
    train(data, out, quick=True, progress=lambda s: None)
    return out


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """Return a private copy of the tiny model that a test may damage."""
    dest = tmp_path / "model"
    shutil.copytree(tiny_model, dest)
    return dest


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    """Load the shipped model once per module."""
    return classifier.load(SHIPPED)


# Training and loading ----------------------------------------------------------------------


def test_training_end_to_end(tiny_model: Path) -> None:
    manifest = json.loads((tiny_model / MANIFEST_NAME).read_text())
    assert (tiny_model / ARTIFACT_NAME).is_file()
    assert (tiny_model / "MODEL_CARD.md").is_file()
    assert manifest["artifacts"][0]["sha256"] == classifier.sha256_file(tiny_model / ARTIFACT_NAME)
    assert set(manifest["thresholds"]) == {"spam", "toxicity"}
    assert "youtube_spam_eminem.csv.gz" in manifest["data_files"]
    clf = classifier.load(tiny_model)
    scores = clf.score([CommentText(SPAM[0], author="Free Money Now"), CommentText(HAM[0])])
    assert all(0.0 <= v <= 1.0 for s in scores for v in s.as_dict().values())
    assert scores[0].spam > scores[1].spam


def test_flipped_byte_is_refused(model_copy: Path) -> None:
    path = model_copy / ARTIFACT_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        classifier.load(model_copy)


def test_edited_manifest_hash_is_refused(model_copy: Path) -> None:
    path = model_copy / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["artifacts"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        classifier.load(model_copy)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        classifier.load(tmp_path / "nowhere")


def test_missing_artifact_is_refused(model_copy: Path) -> None:
    (model_copy / ARTIFACT_NAME).unlink()
    with pytest.raises(ModelError, match="missing artifact"):
        classifier.load(model_copy)


def test_sklearn_version_mismatch_is_refused(model_copy: Path) -> None:
    path = model_copy / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["versions"]["sklearn"] = "0.0.1"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="scikit-learn 0.0.1"):
        classifier.load(model_copy)


def test_untrusted_types_are_refused(model_copy: Path) -> None:
    import operator

    import skops.io as sio

    path = model_copy / ARTIFACT_NAME
    sio.dump({"format": 1, "hook": operator.add}, path)
    manifest_path = model_copy / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["artifacts"][0]["sha256"] = classifier.sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="untrusted types"):
        classifier.load(model_copy)


def test_init_app_records_errors_without_raising(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    app = flask.Flask(__name__)
    assert classifier.status(app).error == "not initialised"
    classifier.init_app(app)
    assert classifier.status(app) == ModelStatus(None, "no model configured")

    app.config["MODEL_DIR"] = str(tmp_path / "missing")
    with caplog.at_level(logging.ERROR):
        classifier.init_app(app)
    state = classifier.status(app)
    assert not state.ok and state.classifier is None
    assert "does not exist" in (state.error or "")
    assert "does not exist" in caplog.text


def test_init_app_loads_a_good_model(tiny_model: Path) -> None:
    app = flask.Flask(__name__)
    app.config["MODEL_DIR"] = tiny_model
    classifier.init_app(app)
    state = classifier.status(app)
    assert state.ok and state.error is None
    assert state.classifier is not None and state.classifier.version


def test_train_command_shows_progress(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data")
    result = _runner().invoke(args=["model", "train", "--data", str(data), "--out",
                                    str(tmp_path / "out"), "--quick"])
    assert result.exit_code == 0, result.output
    assert "featurising" in result.output and "done in" in result.output
    assert classifier.load(tmp_path / "out").version.endswith("-quick")


def test_train_command_needs_the_data_folder(tmp_path: Path) -> None:
    result = _runner().invoke(args=["model", "train", "--data", str(tmp_path / "none"),
                                    "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "does not exist" in result.output


# Evaluate command --------------------------------------------------------------------------


def _runner() -> flask.testing.FlaskCliRunner:
    app = flask.Flask(__name__)
    app.cli.add_command(model_cli)
    return app.test_cli_runner()


@pytest.mark.parametrize("pos, neg", [("1", "0"), ("spam", "ham"), ("TRUE", "false")])
def test_evaluate_command(tiny_model: Path, tmp_path: Path, pos: str, neg: str) -> None:
    path = tmp_path / "mine.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "is_spam", "name"])
        for t in SPAM:
            w.writerow([t, pos, "Free Money Now"])
        for t in HAM:
            w.writerow([t, neg, "Anna"])
    args = ["model", "evaluate", "--input", str(path), "--text-column", "body",
            "--label-column", "is_spam", "--score", "spam", "--author-column", "name",
            "--model", str(tiny_model)]
    result = _runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    for word in ("n ", "positives", "ROC-AUC", "average precision", "hold", "reject", "F1"):
        assert word in result.output
    result = _runner().invoke(args=[*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n"] == 10 and data["positives"] == 5
    assert 0.0 <= data["roc_auc"] <= 1.0
    assert set(data["hold"]) >= {"precision", "recall", "f1"}


def test_evaluate_reads_gzip_and_rejects_unknown_labels(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.csv.gz"
    _write_csv(path, ["text", "verdict"], [[HAM[0], "OFF"], [HAM[1], "NOT"], [HAM[2], "maybe"]])
    result = _runner().invoke(args=["model", "evaluate", "--input", str(path), "--text-column",
                                    "text", "--label-column", "verdict", "--score", "toxicity",
                                    "--model", str(tiny_model)])
    assert result.exit_code != 0
    assert "'verdict'" in result.output and "'maybe'" in result.output


def test_evaluate_reads_tsv_and_windows_1252(tiny_model: Path, tmp_path: Path) -> None:
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"{t}\thatespeech\n" for t in SPAM)
                   + "".join(f"{t}\tnormal\n" for t in HAM), encoding="utf-8")
    # A spreadsheet export: curly quotes and a dash in Windows-1252, not UTF-8.
    legacy = tmp_path / "legacy.csv"
    legacy.write_bytes("text,label\n\u201cGreat post\u201d \u2013 thanks,legit\n"
                       "Buy cheap pills now,spam\n".encode("cp1252"))
    for path, n in ((tsv, 10), (legacy, 2)):
        result = _runner().invoke(args=["model", "evaluate", "--input", str(path),
                                        "--text-column", "text", "--label-column", "label",
                                        "--score", "toxicity", "--model", str(tiny_model),
                                        "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["n"] == n
        assert json.loads(result.output)["positives"] == n // 2


def test_parse_label() -> None:
    assert [parse_label(v, "c") for v in ("1", "spam", "toxic", "OFF", "true", "0.8")] == [1] * 6
    assert [parse_label(v, "c") for v in ("0", "ham", "ok", "NOT", "False", "0.1")] == [0] * 6


# Scores and explanations -------------------------------------------------------------------


def test_explanations_slice_to_their_terms(tiny_model: Path) -> None:
    clf = classifier.load(tiny_model)
    item = CommentText("You are a STUPID idiot, visit http://bit.ly/free-money",
                       author="Free Money Now", website="http://free-money.example")
    fields = {"text": item.text, "author": item.author, "website": item.website}
    explained = clf.explain(item, top=20)
    assert set(explained) == set(clf.heads)
    seen_fields = set()
    for terms in explained.values():
        weights = [t["weight"] for t in terms]
        assert weights == sorted(weights, reverse=True)
        assert all(w > 0 for w in weights)
        for t in terms:
            seen_fields.add(t["field"])
            src = fields[str(t["field"])]
            for start, end in t["spans"]:  # type: ignore[union-attr]
                assert src[start:end].lower() == str(t["term"]).lower()
    assert "text" in seen_fields


def test_a_long_word_is_explained_as_one_term_without_stalling(shipped: Classifier) -> None:
    # Every n-gram of one 10,000-letter word widens to the whole word: walking it once per
    # n-gram took three minutes and froze every dashboard page listing such a comment. The
    # deadline is 100 times what the linear version needs, so it only catches that blow-up.
    text = "This is s" + "o" * 10_000 + " true"
    started = time.perf_counter()
    explained = shipped.explain(CommentText(text, author="x" * 60))
    assert time.perf_counter() - started < 5
    long_terms = [t for terms in explained.values() for t in terms if len(str(t["term"])) > 100]
    assert long_terms, "the long word should be among the terms"
    for t in long_terms:  # the word, or a word pair holding it
        [(start, end)] = t["spans"]  # type: ignore[misc]
        assert start in (0, 5, 8) and end in (10_009, 10_014) and t["term"] == text[start:end]


def test_explanations_work_for_chinese(shipped: Classifier) -> None:
    item = CommentText("你就是个傻逼，滚")
    terms = shipped.explain(item)["toxicity"]
    assert terms, "a Chinese insult should have terms pushing toxicity up"
    for t in terms:
        for start, end in t["spans"]:  # type: ignore[union-attr]
            assert item.text[start:end] == t["term"]
    assert any("傻逼" in str(t["term"]) or "傻" in str(t["term"]) for t in terms)


def test_scores_as_dict_rounds() -> None:
    s = Scores(spam=0.123456, toxicity=0.9, attributes={"insult": 0.333333})
    assert s.as_dict() == {"spam": 0.1235, "toxicity": 0.9, "insult": 0.3333}


def test_shipped_model_batch_equals_single(shipped: Classifier) -> None:
    texts = HAM + TOXIC + ZH_TOXIC + SPAM
    items = [CommentText(t, author=["", "Anna", "Free Money Now"][i % 3],
                         website="http://bit.ly/x" if i % 4 == 0 else "")
             for i, t in enumerate(texts)]
    batch = shipped.score(items)
    for item, s in zip(items, batch, strict=True):
        one = shipped.score_one(item)
        assert one.as_dict() == pytest.approx(s.as_dict(), abs=1e-6)
    assert shipped.score([]) == []


def test_big_batches_are_scored_in_chunks_with_the_same_scores(
    shipped: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [CommentText(t) for t in HAM + TOXIC + ZH_TOXIC + SPAM]
    whole = shipped.predict(items)
    monkeypatch.setattr(classifier, "PREDICT_CHUNK", 3)
    chunked = shipped.predict(items)
    assert chunked.shape == whole.shape == (len(items), len(shipped.heads))
    assert chunked == pytest.approx(whole, abs=1e-9)


def test_shipped_model_thresholds_and_attributes(shipped: Classifier) -> None:
    assert shipped.version
    for head in ("spam", "toxicity"):
        t = shipped.thresholds[head]
        assert 0.0 < t["hold"] <= t["reject"] < 1.0
    attrs = shipped.score_one(CommentText("hello")).attributes
    assert {"insult", "obscene", "threat", "identity_attack"} <= set(attrs)


@pytest.mark.parametrize("bad, good", [
    ("You are a stupid idiot, shut up and go away.", "Thank you for the thoughtful article."),
    ("What a pathetic moron, nobody wants your garbage here.",
     "I see your point, though I read the study differently."),
    ("你就是个傻逼，滚", "谢谢分享，这篇文章写得很好"),
    ("你们这些脑残滚出去", "我同意你的看法，学到了很多"),
])
def test_shipped_model_ranks_toxicity(shipped: Classifier, bad: str, good: str) -> None:
    b, g = shipped.score([CommentText(bad), CommentText(good)])
    assert b.toxicity > g.toxicity
    # The insult is at least held for review; the polite comment is published.
    assert b.toxicity >= shipped.thresholds["toxicity"]["hold"] > g.toxicity


def test_shipped_model_ranks_spam(shipped: Classifier) -> None:
    spam = CommentText("Buy cheap viagra at http://cheap-pills.example", author="Cheap Viagra")
    ham = CommentText("Nice write-up. The part about caching matched what I saw in production.",
                      author="Maria")
    s, h = shipped.score([spam, ham])
    assert s.spam > h.spam
    # The spam is at least held; the normal comment is not rejected.
    assert s.spam >= shipped.thresholds["spam"]["hold"]
    assert h.spam < shipped.thresholds["spam"]["reject"]


@pytest.mark.parametrize("item", [
    CommentText("Buy cheap viagra at http://cheap-pills.example"),
    CommentText("Get 50% off all watches today only! Visit www.replica-watch.shop"),
    CommentText("兼职日赚500元，加微信 abc123 详情点击 www.zhuanqian.cn"),
    CommentText("Great post, thanks!", author="Cheap Viagra Online Pharmacy",
                website="http://buy-cheap-viagra-pills.example"),
    CommentText("Great post, thanks!", author="Best Casino Bonus",
                website="http://free-casino-bonus.example"),
])
def test_shipped_model_holds_link_spam(shipped: Classifier, item: CommentText) -> None:
    # Obvious spam in the text, the author name or the website is at least held.
    assert shipped.score_one(item).spam >= shipped.thresholds["spam"]["hold"]


@pytest.mark.parametrize("item", [
    CommentText("Thank you for the thoughtful article."),
    CommentText("I disagree with the author about the tax policy, the numbers do not add up."),
    CommentText("Nice write-up. The part about caching matched what I saw in production.",
                author="Maria", website="https://maria.dev"),
    CommentText("谢谢分享，这篇文章写得很好"),
    CommentText("我同意你的看法，学到了很多"),
])
def test_shipped_model_publishes_polite_comments(shipped: Classifier, item: CommentText) -> None:
    s = shipped.score_one(item)
    assert s.spam < shipped.thresholds["spam"]["hold"]
    assert s.toxicity < shipped.thresholds["toxicity"]["hold"]


@pytest.mark.parametrize("text", ["你就是个傻逼，滚", "you are a fucking idiot"])
@pytest.mark.parametrize("author", ["", "Maria", "John Smith", "Li Wei 1987"])
def test_shipped_model_holds_insults(shipped: Classifier, text: str, author: str) -> None:
    # An author name must not vouch for the text: only YouTube ham had names in training.
    item = CommentText(text, author=author)
    assert shipped.score_one(item).toxicity >= shipped.thresholds["toxicity"]["hold"]


@pytest.mark.parametrize("author", ["Ann", "Maria", "John Smith", "Li Wei", "王小明"])
@pytest.mark.parametrize("text", [
    "Thanks for the clear explanation, the second example helped me most.",
    # Held for spam (0.079) by model 2026.11.27-47b9ec99, which took any name as a spam sign.
    "Thanks, the point about the committee vote is well made.",
])
def test_shipped_model_does_not_hold_a_comment_for_its_name(shipped: Classifier, text: str,
                                                             author: str) -> None:
    plain = shipped.score_one(CommentText(text))
    named = shipped.score_one(CommentText(text, author=author))
    assert named.spam < shipped.thresholds["spam"]["hold"]
    assert named.toxicity < shipped.thresholds["toxicity"]["hold"]
    assert abs(named.toxicity - plain.toxicity) < 0.05


def test_shipped_model_still_reads_spam_in_a_name(shipped: Classifier) -> None:
    text = "Thanks, the point about the committee vote is well made."
    plain = shipped.score_one(CommentText(text, author="Ann")).spam
    for author in ("Cheap Pills 24", "Buy Viagra Online Cheap Now"):
        assert shipped.score_one(CommentText(text, author=author)).spam > 5 * plain


def test_hold_threshold_is_capped_by_good_comments_held() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    # Bad comments overlap the good ones: 98% recall would hold about half of the good ones.
    p = np.r_[rng.uniform(0.3, 1.0, 500), rng.uniform(0.0, 0.7, 1000)]
    y = np.r_[np.ones(500, dtype=int), np.zeros(1000, dtype=int)]
    t = choose_thresholds(p, y, ["a"] * 1500)
    assert t["hold_recall_target_reached"] is False
    assert t["good_held_per_source"]["a"] <= HOLD_MAX_GOOD
    assert (p[y == 0] >= t["hold"]).mean() <= HOLD_MAX_GOOD
    assert t["hold"] <= t["reject"]
    # Where the classes separate, the recall target is met without hitting the cap.
    easy = choose_thresholds(np.r_[p[:500] + 1.0, p[500:]] / 2.0, y, ["a"] * 1500)
    assert easy["hold_recall_target_reached"] is True
    assert easy["hold_recall"] >= 0.98


def test_model_of_another_feature_version_is_refused(tiny_model: Path) -> None:
    import skops.io as sio

    artifact = sio.load(tiny_model / ARTIFACT_NAME, trusted=[])
    artifact["features"] = {**artifact["features"], "version": 1}
    with pytest.raises(ModelError, match="version"):
        Classifier(artifact, {})


def test_shipped_model_reads_author_and_website(shipped: Classifier) -> None:
    text = "Buy cheap viagra at http://cheap-pills.example"
    assert (shipped.score_one(CommentText(text, author="Cheap Viagra")).spam
            > shipped.score_one(CommentText(text)).spam)
    text = "Great post, thanks for sharing."
    # Website tokens share the space of links in bodies, where channel links meant spam.
    assert (shipped.score_one(CommentText(text, website="https://www.youtube.com/channel/UC1")).spam
            > shipped.score_one(CommentText(text)).spam)


@pytest.mark.skipif(not (DEFAULT_DATA_DIR / "youtube_spam_eminem.csv.gz").is_file(),
                    reason="needs ../shared/data")
def test_shipped_model_on_unseen_video() -> None:
    result = _runner().invoke(args=[
        "model", "evaluate", "--input", str(DEFAULT_DATA_DIR / "youtube_spam_eminem.csv.gz"),
        "--text-column", "CONTENT", "--label-column", "CLASS", "--author-column", "AUTHOR",
        "--score", "spam", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["roc_auc"] >= 0.98


def _random_artifact(bits: int = 16) -> dict[str, Any]:
    """Return a model artifact with random float16 weights over the current feature code."""
    import numpy as np

    rng = np.random.default_rng(3)
    heads = ["spam", "toxicity", "insult", "obscene", "threat", "identity_attack"]
    return {
        "format": classifier.ARTIFACT_FORMAT, "heads": heads,
        "features": {"bits": bits, "char_range": [2, 4], "version": classifier.FEATURE_VERSION},
        "weights": rng.normal(size=(1 << bits, len(heads))).astype(np.float16),
        "idf": rng.uniform(1.0, 8.0, 1 << bits).astype(np.float16),
        "intercept": np.zeros(len(heads)), "calib_a": np.ones(len(heads)),
        "calib_b": np.zeros(len(heads)),
    }


def _random_classifier(bits: int = 16) -> Classifier:
    """Return a classifier with random weights over the current feature code."""
    return Classifier(_random_artifact(bits), {})


def test_plain_weights_come_back_from_the_scoring_table_to_the_bit() -> None:
    """float16 weights and IDF (as trained) need no second weight matrix in memory."""
    import numpy as np

    artifact = _random_artifact()
    clf = Classifier(artifact, {})
    cols = np.arange(len(artifact["weights"]))
    assert clf._weights_t is None
    assert np.array_equal(clf.head_weights(cols), artifact["weights"].astype(np.float32).T)
    # Weights that idf*w cannot hold exactly (float32) are kept as they are.
    wider = artifact["weights"].astype(np.float32) * np.float32(1.0001)
    wide = Classifier({**artifact, "weights": wider}, {})
    assert wide._weights_t is not None
    assert np.array_equal(wide.head_weights(cols), wider.T)
    item = CommentText("Visit http://cheap.example now, you idiot!", author="Cheap Pills 24")
    assert np.allclose(wide.predict([item]), clf.predict([item]), atol=1e-3)


def test_fast_scoring_equals_the_training_features() -> None:
    import numpy as np

    clf = _random_classifier()
    rng = random.Random(5)
    pool = HAM + TOXIC + ZH_TOXIC + ZH_OK + SPAM + ["", "   ", "a", "Ünïcödé ＦＵＬＬ　width 😀!!",
                                                    "x\x00y", "$5 £ 20 500元 phone 555 123 4567"]
    # Enough repeated tokens that the batch path sums each distinct token once.
    items = [CommentText(" ".join(rng.choice(pool) for _ in range(rng.randint(1, 4))),
                         author=rng.choice(["", "Anna", "Cheap Pills 24"]),
                         website=rng.choice(["", "http://x.example/a"]),
                         email=rng.choice(["", "a@b.example"])) for _ in range(300)]
    rows, cols, vals, *_ = classifier.featurize(items, clf.config, idf=clf.idf)
    expected = np.stack([np.bincount(rows, weights=w * vals, minlength=len(items))
                         for w in clf.head_weights(cols)], axis=1)
    got = clf._logits(items) - clf.intercept
    assert np.allclose(got, expected, atol=1e-3)
    singles = np.vstack([clf._logits([it]) for it in items[:40]]) - clf.intercept
    assert np.allclose(singles, expected[:40], atol=1e-3)


def test_listed_cue_words_are_among_the_reasons(shipped: Classifier) -> None:
    # The counts of listed insults and promotional words are single columns with no place in
    # the text, yet often the largest reason; a moderator saw "就是" and "什么" marked in this
    # comment but not "脑残", which moved its score most. Each count is now shared among the
    # words it counted.
    item = CommentText("作者就是个脑残，写的什么垃圾文章，滚吧。")
    terms = {str(t["term"]): t for t in shipped.explain(item)["toxicity"]}
    for word in ("脑残", "垃圾", "滚"):
        assert word in terms, f"{word} should be a reason for the toxicity score: {list(terms)}"
        start = item.text.index(word)
        assert terms[word]["spans"] == [[start, start + len(word)]]
    top3 = list(terms)[:3]
    assert {"脑残", "垃圾"} <= set(top3), top3
    # A promotional word in the name is shown in the name, where the moderator can see it.
    spam = shipped.explain(CommentText("Thanks, very useful", author="Cheap Pills 24"))["spam"]
    assert ("Cheap", "author") in {(t["term"], t["field"]) for t in spam}


def test_cue_shares_add_up_to_what_the_counts_add(shipped: Classifier) -> None:
    # Without the counts' shares, the listed words of an insult made of nothing else would
    # carry only their n-gram weights: the shares must add the whole count's contribution.
    item = CommentText("滚，傻逼")
    with_cues = sum(float(t["weight"]) for t in shipped.explain(item, top=50)["toxicity"])
    rows, cols, vals, flds, _, _ = classifier.featurize([item], shipped.config, spans=True,
                                                        idf=shipped.idf)
    contrib = shipped.head_weights(cols).T * vals[:, None] * shipped.calib_a
    j = shipped.heads.index("toxicity")
    cue_cols = classifier._cue_shares(item, cols, flds, contrib, shipped.config["bits"])[3]
    assert cue_cols[:, j].sum() > 0.5, "the insult count should push toxicity up"
    assert with_cues > cue_cols[:, j].sum()
