"""The moderation policy as a table of decisions."""

from __future__ import annotations

import unicodedata

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
    # The threshold as configured, the score with the decimals it takes to look above it.
    ("a fine threshold", scores(spam=0.0401), Context("x"),
     settings(thresholds={"spam": {"hold": 0.0375, "reject": 0.9875}}), Action.HOLD, "pending",
     "spam 0.04 ≥ hold threshold 0.0375"),
    ("just above a threshold", scores(toxicity=0.6004), Context("x"), settings(), Action.HOLD,
     "pending", "toxicity 0.6004 ≥ hold threshold 0.60"),
    ("rounding up past it", scores(spam=0.9951), Context("x"),
     settings(thresholds={"spam": {"hold": 0.5, "reject": 0.995}}), Action.REJECT, "spam",
     "spam 1.00 ≥ reject threshold 0.995"),
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
    ("trusted skips new-commenter review", scores(), Context("x", trusted=True),
     settings(premoderation="new", new_commenter_holds=2), Action.PUBLISH, "published",
     "trusted"),
    # Trust follows an email anyone can type: the site's own rules still hold.
    ("trusted still held for suspect words", scores(spam=0.6), Context("casino", trusted=True),
     settings(suspect_words=["casino"]), Action.HOLD, "pending", "suspect words"),
    ("trusted still held for links", scores(), Context("see", links=5, trusted=True),
     settings(), Action.HOLD, "pending", "5 links"),
    ("trusted still held when the site holds all", scores(), Context("x", trusted=True),
     settings(premoderation="all"), Action.HOLD, "pending", "every comment"),
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


BANNED = ["SB", "傻B", "casino", "idiot"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你是SB吧", ["SB"]),
        ("你是 SB 吧", ["SB"]),
        ("你是ＳＢ吧", ["SB"]),
        ("你是傻B吧", ["傻B"]),
        ("你就是个idiot吧", ["idiot"]),
        ("idiot傻逼", ["idiot"]),
        ("傻逼IDIOT", ["idiot"]),
        ("来玩casino赚钱", ["casino"]),
        ("来玩ｃａｓｉｎｏ赚钱", ["casino"]),
        ("sb는 idiot이다", ["SB", "idiot"]),
    ],
)
def test_latin_word_next_to_chinese_is_found(text: str, expected: list[str]) -> None:
    found = find_words(BANNED, text)
    assert [w.casefold() for w in found] == [w.casefold() for w in expected]


@pytest.mark.parametrize(
    ("words", "text"),
    [
        (["ass"], "classic"),
        (["ass"], "你的classic"),
        (["ass"], "你的assessment吧"),
        (["sex"], "Essex"),
        (["sex"], "住在Essex"),
        (["sb"], "你好asbestos"),
        (["sb"], "asbestos你好"),
        (["sb"], "你好sb2"),
        (["casino"], "casinos很好"),
        (["cunt"], "Scunthorpe"),
        (["cunt"], "我去Scunthorpe"),
        (["free money"], "carefree moneybags"),
        (["sb"], "set sb_config to 1"),  # identifiers and user names on a tech blog
        (["ass"], "snake_ass_case"),
        (["ass"], "assא"),  # scripts written with spaces continue a word
        (["ass"], "اassا"),
    ],
)
def test_latin_word_inside_a_longer_word_is_not_found(words: list[str], text: str) -> None:
    assert find_words(words, text) == []


def test_chinese_and_japanese_words_still_match_as_substrings() -> None:
    assert find_words(["傻逼", "バカー"], "你就是个傻逼吧", "このバカーだ") == ["傻逼", "バカー"]


INVISIBLE = [
    "\u00ad",  # soft hyphen
    "\u034f",  # combining grapheme joiner
    "\u115f",  # Hangul choseong filler
    "\u180e",  # Mongolian vowel separator
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u2063",  # invisible separator
    "\u2064",  # invisible plus
    "\u202e",  # right-to-left override
    "\u3164",  # Hangul filler
    "\ufe0f",  # variation selector 16
    "\ufe00",  # variation selector 1
    "\ufeff",  # zero-width no-break space
    "\U000e0020",  # tag space
    "\U000e0100",  # variation selector 17
    "\u200b\u2063\ufe0f",
]


@pytest.mark.parametrize(
    "char", INVISIBLE, ids=["+".join(f"U+{ord(c):04X}" for c in chars) for chars in INVISIBLE]
)
def test_invisible_characters_inside_a_word_are_ignored(char: str) -> None:
    assert find_words(BANNED, f"come to ca{char}sino") == ["casino"]
    assert find_words(BANNED, f"你是S{char}B吧") == ["SB"]
    assert find_words([f"ca{char}sino"], "casino") == [f"ca{char}sino"]


def test_every_format_character_is_ignored() -> None:
    format_chars = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cf"]
    assert format_chars
    missed = [c for c in format_chars if find_words(["casino"], f"ca{c}sino") != ["casino"]]
    assert missed == []


def test_invisible_characters_keep_accents_composable() -> None:
    assert find_words(["café"], "cafe\u034f\u0301 au lait") == ["café"]


def test_words_made_only_of_invisible_characters_match_nothing() -> None:
    assert find_words(["\u200b", "\u00ad\ufe0f", " \u2063 "], "any text at all") == []


@pytest.mark.parametrize(
    "text",
    ["free  money", "free\nmoney", "free \t\r\n money", "free\u3000money", "FREE\u200b \nMONEY"],
)
def test_whitespace_runs_match_a_phrase(text: str) -> None:
    assert find_words(["free money"], f"get {text} now") == ["free money"]


def test_whitespace_runs_in_a_listed_phrase() -> None:
    assert find_words(["free   money", " free\tmoney\n"], "free money") == [
        "free   money",
        " free\tmoney\n",
    ]


def test_phrase_does_not_span_fields() -> None:
    assert find_words(["free money"], "free", "money") == []


@pytest.mark.parametrize(
    ("context", "site", "action", "reason"),
    [
        (Context("你是SB吧"), settings(banned_words=BANNED), Action.REJECT, "banned words: SB"),
        (Context("来玩casino赚钱"), settings(banned_words=BANNED), Action.REJECT,
         "banned words: casino"),
        (Context("hi", author="idiot傻逼"), settings(banned_words=BANNED), Action.REJECT,
         "banned words: idiot"),
        (Context("come to ca\u2063si\u00adno"), settings(banned_words=BANNED), Action.REJECT,
         "banned words: casino"),
        (Context("get free\n\nmoney"), settings(suspect_words=["free money"]), Action.HOLD,
         "suspect words: free money"),
        (Context("你好asbestos, classic Essex"), settings(banned_words=["sb", "ass", "sex"]),
         Action.PUBLISH, None),
    ],
)
def test_word_lists_in_decisions(
    context: Context, site: SiteSettings, action: Action, reason: str | None
) -> None:
    decision = decide(scores(), context, site)
    assert decision.action is action
    if reason is None:
        assert decision.reasons == ()
    else:
        assert reason in decision.reasons, decision.reasons
