"""The moderation policy as a table of decisions."""

from __future__ import annotations

import pytest

from moderation.classifier import Scores
from moderation.policy import Action, Context, SiteSettings, decide, find_words

DEFAULTS = {"spam": {"hold": 0.5, "reject": 0.9}, "toxicity": {"hold": 0.6, "reject": 0.95}}


def settings(**raw: object) -> SiteSettings:
    return SiteSettings.from_json(raw, DEFAULTS)


def scores(spam: float = 0.01, toxicity: float = 0.01) -> Scores:
    return Scores(spam=spam, toxicity=toxicity, attributes={})


CASES = [
    # (name, scores, context, settings, action, status, reason fragment)
    ("clean", scores(), Context("nice post"), settings(), Action.PUBLISH, "published", None),
    ("unscored", None, Context("nice post"), settings(), Action.HOLD, "pending", "not scored"),
    ("spam band", scores(spam=0.6), Context("x"), settings(), Action.HOLD, "pending", "spam 0.60"),
    ("spam reject", scores(spam=0.97), Context("x"), settings(), Action.REJECT, "spam",
     "reject threshold"),
    ("toxic band", scores(toxicity=0.7), Context("x"), settings(), Action.HOLD, "pending",
     "toxicity"),
    ("toxic reject", scores(toxicity=0.99), Context("x"), settings(), Action.REJECT, "rejected",
     "toxicity"),
    ("spam and toxic", scores(spam=0.99, toxicity=0.99), Context("x"), settings(), Action.REJECT,
     "rejected", "spam"),
    ("site threshold", scores(spam=0.3), Context("x"),
     settings(thresholds={"spam": {"hold": 0.2, "reject": 0.8}}), Action.HOLD, "pending", "0.20"),
    ("banned word in text", scores(), Context("you are a Moron"),
     settings(banned_words=["moron"]), Action.REJECT, "rejected", "banned words: moron"),
    ("banned word in name", scores(), Context("hi", author="CasinoKing"),
     settings(banned_words=["casinoking"]), Action.REJECT, "rejected", "banned words"),
    ("banned domain word in website", scores(), Context("hi", website="https://pills.example"),
     settings(banned_words=["pills"]), Action.REJECT, "rejected", "banned words"),
    ("whole words only", scores(), Context("classic assessment"),
     settings(banned_words=["ass"]), Action.PUBLISH, "published", None),
    ("full-width letters", scores(), Context("ＭＯＲＯＮ!"), settings(banned_words=["moron"]),
     Action.REJECT, "rejected", "banned"),
    ("chinese banned word", scores(), Context("你就是个傻逼吧"), settings(banned_words=["傻逼"]),
     Action.REJECT, "rejected", "傻逼"),
    ("chinese suspect word", scores(), Context("这个政府真是废物"),
     settings(suspect_words=["废物"]), Action.HOLD, "pending", "suspect words: 废物"),
    ("too many links", scores(), Context("see", links=4), settings(), Action.HOLD, "pending",
     "4 links"),
    ("links within limit", scores(), Context("see", links=3), settings(), Action.PUBLISH,
     "published", None),
    ("premoderate all", scores(), Context("x"), settings(premoderation="all"), Action.HOLD,
     "pending", "every comment"),
    ("new commenter", scores(), Context("x", prior_published=0),
     settings(premoderation="new", new_commenter_holds=2), Action.HOLD, "pending", "new"),
    ("known commenter", scores(), Context("x", prior_published=2),
     settings(premoderation="new", new_commenter_holds=2), Action.PUBLISH, "published", None),
    ("trusted skips hold", scores(spam=0.6), Context("x", trusted=True), settings(),
     Action.PUBLISH, "published", "trusted"),
    ("trusted still rejected", scores(spam=0.99), Context("x", trusted=True), settings(),
     Action.REJECT, "spam", "spam"),
    ("trusted but unscored", None, Context("x", trusted=True), settings(), Action.HOLD,
     "pending", "not scored"),
    ("banned author", scores(), Context("x", banned="email a@b.example"), settings(),
     Action.REJECT, "rejected", "banned: email"),
    ("unknown mode ignored", scores(), Context("x"), settings(premoderation="weird"),
     Action.PUBLISH, "published", None),
]


@pytest.mark.parametrize(
    ("scores_", "context", "site", "action", "status", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decisions(
    scores_: Scores | None, context: Context, site: SiteSettings, action: Action, status: str,
    reason: str | None,
) -> None:
    decision = decide(scores_, context, site, model_version="m-1")
    assert decision.action is action
    assert decision.status == status
    assert decision.model_version == "m-1"
    if reason is None:
        assert decision.reasons == ()
    else:
        assert any(reason in r for r in decision.reasons), decision.reasons


def test_find_words_matches_case_and_width_insensitively() -> None:
    found = find_words(["Idiot", "蠢货", "unused"], "what an IDIOT", "真是个蠢货")
    assert found == ["Idiot", "蠢货"]
    assert find_words(["  ", ""], "anything") == []
