"""Per-site moderation policy: scores and context in, publish / hold / reject out."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classifier import Scores


class Action(enum.StrEnum):
    """What happens to a submitted comment."""

    PUBLISH = "publish"
    HOLD = "hold"
    REJECT = "reject"


PREMODERATION_MODES = ("none", "new", "all")
SCORED = ("spam", "toxicity")


@dataclass(frozen=True)
class Band:
    """Probabilities at which a score holds a comment and at which it rejects it."""

    hold: float
    reject: float


@dataclass(frozen=True)
class SiteSettings:
    """A site's moderation policy, validated from the JSON stored on the site."""

    thresholds: Mapping[str, Band]
    banned_words: tuple[str, ...] = ()
    suspect_words: tuple[str, ...] = ()
    # "none": publish what the model allows; "new": hold new commenters; "all": hold everything.
    premoderation: str = "none"
    # How many of a new commenter's comments are held when premoderation is "new".
    new_commenter_holds: int = 1
    max_links: int = 3
    # Overrides of the posting limits, e.g. {"post": "5/minute", "site": "100/minute"}.
    limits: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(
        cls,
        raw: Mapping[str, Any] | None,
        default_thresholds: Mapping[str, Mapping[str, float]],
        default_max_links: int = 3,
    ) -> SiteSettings:
        """Build settings from a site's stored JSON, falling back to the given defaults."""
        raw = raw or {}
        thresholds: dict[str, Band] = {}
        stored = raw.get("thresholds") or {}
        for name in SCORED:
            base = dict(default_thresholds.get(name, {"hold": 0.5, "reject": 0.95}))
            base.update(stored.get(name) or {})
            thresholds[name] = Band(float(base["hold"]), float(base["reject"]))
        mode = raw.get("premoderation", "none")
        return cls(
            thresholds=thresholds,
            banned_words=tuple(raw.get("banned_words") or ()),
            suspect_words=tuple(raw.get("suspect_words") or ()),
            premoderation=mode if mode in PREMODERATION_MODES else "none",
            new_commenter_holds=int(raw.get("new_commenter_holds", 1)),
            max_links=int(raw.get("max_links", default_max_links)),
            limits=dict(raw.get("limits") or {}),
        )


@dataclass(frozen=True)
class Context:
    """What the policy knows about a submission besides its scores."""

    text: str
    author: str = ""
    website: str = ""
    links: int = 0
    # The text as readers see it (markdown rendered: _casino_, ca*sino*, &#99;asino), when it
    # differs from what was written; words are looked for in both.
    shown: str = ""
    # Published comments this author already has on the site.
    prior_published: int = 0
    trusted: bool = False
    # Why the author is banned, if they are.
    banned: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome for one comment, with reasons a moderator can read."""

    action: Action
    reasons: tuple[str, ...]
    model_version: str | None = None
    # Which rejected queue: "spam" for spam, "rejected" for abuse and bans.
    reject_as: str = "rejected"

    @property
    def status(self) -> str:
        """Return the comment status this decision leads to."""
        if self.action is Action.PUBLISH:
            return "published"
        if self.action is Action.HOLD:
            return "pending"
        return self.reject_as


# What fold() drops: every character of category Cf (format controls such as zero-width
# spaces and joiners, the soft hyphen, bidirectional controls, tags) and the other
# Default_Ignorable_Code_Point characters of Unicode's DerivedCoreProperties.txt (the combining
# grapheme joiner U+034F, Hangul fillers, variation selectors, reserved ignorable ranges).
_IGNORABLE_RE = re.compile(
    r"[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5"
    r"\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    r"\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0000-\U000e0fff]+"
)
_WHITESPACE_RE = re.compile(r"\s+")
# Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar),
# and Korean, whose particles attach to the word before them: a listed word's edge in one of
# them needs no boundary, and their letters next to a listed Latin word do not make it part of
# a longer word ("sb" is in "你是sb吧" and in "sb는").
_NO_SPACES = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u2e80-\u2fdf\u3130-\u318f"
    "\uac00-\ud7af\u3005-\u3007\u3021-\u3029"
    "\u3031-\u3035\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0003134f"
)
_NO_SPACES_RE = re.compile(f"[{_NO_SPACES}]")
# A character that continues a word: a letter, digit or underscore (regex \w) of a script
# written with spaces.
_WORD_CHAR = f"[^\\W{_NO_SPACES}]"
_WORD_RUN_RE = re.compile(f"{_WORD_CHAR}+")


def fold(value: str) -> str:
    """Return text folded for matching.

    Invisible characters (category Cf and the other default-ignorable code points, such as
    zero-width joiners, the soft hyphen and variation selectors) are dropped, the rest is
    width-normalised (NFKC) and case-folded, and each run of whitespace becomes one space.
    """
    value = unicodedata.normalize("NFKC", _IGNORABLE_RE.sub("", value)).casefold()
    return _WHITESPACE_RE.sub(" ", value)


def _written_without_spaces(char: str) -> bool:
    return _NO_SPACES_RE.match(char) is not None


@dataclass(frozen=True)
class _Word:
    """A listed word folded for matching."""

    folded: str
    # A whole word of a script written with spaces ("idiot", "casino"): found exactly when it
    # is one of the text's words, a set lookup however long the text or the list.
    token: bool
    # Otherwise (phrases, punctuation, Chinese or Japanese edges): _pattern(), run only on
    # text that holds the word at all.


@lru_cache(maxsize=1024)
def _word(word: str) -> _Word | None:
    """Return a listed word folded for matching, None if folding leaves nothing of it.

    A bounded edge must not touch a letter, digit or underscore ("ass" is not in "class" or
    "ass_hat"), but characters of scripts without spaces do not count ("sb" is in "你是sb吧"),
    and an edge of the word in such a script needs no boundary: Chinese and Japanese words
    match as substrings.
    """
    folded = fold(word).strip()
    if not folded:
        return None
    return _Word(folded, _WORD_RUN_RE.fullmatch(folded) is not None)


@lru_cache(maxsize=1024)
def _pattern(folded: str) -> re.Pattern[str]:
    """Return a pattern finding a folded word with its bounded edges as lookarounds (compiled
    only for words a text holds: each takes about a millisecond)."""
    left = "" if _written_without_spaces(folded[0]) else f"(?<!{_WORD_CHAR})"
    right = "" if _written_without_spaces(folded[-1]) else f"(?!{_WORD_CHAR})"
    return re.compile(left + re.escape(folded) + right)


@lru_cache(maxsize=8)
def _haystack(fields: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """Return the fields folded and joined, and their words: once per comment, though its
    banned and its suspect words are looked for in turn."""
    haystack = "\n".join(fold(f) for f in fields if f)
    return haystack, frozenset(_WORD_RUN_RE.findall(haystack))


def find_words(words: Iterable[str], *fields: str) -> list[str]:
    """Return the listed words found as whole words in any of the fields."""
    words = tuple(words)
    if not words:  # most sites list none: skip folding the text
        return []
    haystack, tokens = _haystack(fields)
    found: list[str] = []
    for word in words:
        listed = _word(word)
        if listed is None:
            continue
        if listed.token:
            hit = listed.folded in tokens
        else:
            hit = (listed.folded in haystack
                   and _pattern(listed.folded).search(haystack) is not None)
        if hit:
            found.append(word)
    return found


def _at_least(name: str, value: float, edge: str, threshold: float) -> str:
    """Say that a score reached a threshold: the threshold as configured (0.50, 0.0375,
    0.995), the score in two decimals or as many more as it takes not to look below or
    equal to it (0.5004 ≥ 0.50, not 0.50 ≥ 0.50)."""
    shown = f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"
    places = 2
    while places < 6 and (round(value, places) < threshold
                          or round(value, places) == threshold < value):
        places += 1
    return f"{name} {value:.{places}f} ≥ {edge} threshold {shown}"


def decide(
    scores: Scores | None,
    context: Context,
    settings: SiteSettings,
    model_version: str | None = None,
) -> Decision:
    """Decide publish, hold or reject, with every reason that applied."""
    reject: list[str] = []
    reject_as = "rejected"
    hold: list[str] = []

    if context.banned:
        reject.append(f"banned: {context.banned}")
    banned = find_words(settings.banned_words, context.author, context.website, context.text,
                        context.shown)
    if banned:
        reject.append("banned words: " + ", ".join(banned))

    if scores is None:
        hold.append("not scored: the classifier is unavailable")
    else:
        values = {"spam": scores.spam, "toxicity": scores.toxicity}
        for name in SCORED:
            band, value = settings.thresholds[name], values[name]
            if value >= band.reject:
                reject.append(_at_least(name, value, "reject", band.reject))
                if name == "spam" and not banned and not context.banned:
                    reject_as = "spam"
            elif value >= band.hold:
                hold.append(_at_least(name, value, "hold", band.hold))
    if reject and reject_as == "spam" and any(r.startswith("toxicity") for r in reject):
        reject_as = "rejected"

    if reject:
        return Decision(Action.REJECT, tuple(reject + hold), model_version, reject_as)

    suspect = find_words(settings.suspect_words, context.author, context.website, context.text,
                        context.shown)
    if suspect:
        hold.append("suspect words: " + ", ".join(suspect))
    if context.links > settings.max_links:
        hold.append(f"{context.links} links > {settings.max_links} allowed")
    if settings.premoderation == "all":
        hold.append("site holds every comment for review")
    elif (
        settings.premoderation == "new"
        and context.prior_published < settings.new_commenter_holds
    ):
        hold.append("new commenter: first comments are reviewed")

    # Trust skips the model's doubt and new-commenter review only. It follows an email or name
    # a reader types, which anyone can type, so it never skips the site's own rules (suspect
    # words, the link limit, holding every comment), nor a missing score.
    firm = (suspect or context.links > settings.max_links or settings.premoderation == "all"
            or scores is None)
    if context.trusted and hold and not firm:
        return Decision(
            Action.PUBLISH, ("trusted author: hold skipped",) + tuple(hold), model_version
        )
    if hold:
        return Decision(Action.HOLD, tuple(hold), model_version)
    return Decision(Action.PUBLISH, (), model_version)
