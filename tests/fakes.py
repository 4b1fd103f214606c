"""A deterministic stand-in classifier, so API tests control what gets published."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask

from moderation.classifier import CommentText, ModelStatus, Scores


class KeywordClassifier:
    """Scores by marker words: 'viagra' is spam, 'idiot' is toxic, 'borderline' is in between."""

    version = "test-keywords-1"
    thresholds = {"spam": {"hold": 0.5, "reject": 0.9}, "toxicity": {"hold": 0.5, "reject": 0.9}}

    def score(self, items: Sequence[CommentText]) -> list[Scores]:
        return [self.score_one(item) for item in items]

    def score_one(self, item: CommentText) -> Scores:
        blob = f"{item.author} {item.website} {item.text}".lower()
        spam = 0.99 if "viagra" in blob else 0.02
        toxicity = 0.99 if "idiot" in blob else 0.6 if "borderline" in blob else 0.03
        return Scores(spam=spam, toxicity=toxicity, attributes={"insult": toxicity})


def install(app: Flask) -> KeywordClassifier:
    """Make the app score with the keyword classifier."""
    fake = KeywordClassifier()
    app.extensions["classifier"] = ModelStatus(fake, None)  # type: ignore[arg-type]
    return fake
