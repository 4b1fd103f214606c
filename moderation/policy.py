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
# Categories of the characters that continue a word written in a cased script: letters of
# Latin, Greek, Cyrillic... and decimal digits. Chinese and Japanese characters (Lo, Lm) are not.
_WORD_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Nd"})


def fold(value: str) -> str:
    """Return text folded for matching.

    Invisible characters (category Cf and the other default-ignorable code points, such as
    zero-width joiners, the soft hyphen and variation selectors) are dropped, the rest is
    width-normalised (NFKC) and case-folded, and each run of whitespace becomes one space.
    """
    value = unicodedata.normalize("NFKC", _IGNORABLE_RE.sub("", value)).casefold()
    return _WHITESPACE_RE.sub(" ", value)


def _is_cjk(char: str) -> bool:
    return unicodedata.category(char) == "Lo"


def _continues_word(char: str) -> bool:
    """Tell whether char is a cased letter or a digit, so a word cannot end next to it."""
    return unicodedata.category(char) in _WORD_CATEGORIES


@dataclass(frozen=True)
class _Word:
    """A listed word folded for matching, with the edges that must be word boundaries."""

    folded: str
    left: bool
    right: bool

    def found_in(self, text: str) -> bool:
        """Tell whether the word occurs in folded text, bounded where it needs to be.

        A bounded edge must not touch a cased letter or a digit ("ass" is not in "class"), but
        Chinese or Japanese characters next to it do not count ("sb" is in "你是sb吧").
        """
        start = text.find(self.folded)
        while start >= 0:
            end = start + len(self.folded)
            if not (self.left and start and _continues_word(text[start - 1])) and not (
                self.right and end < len(text) and _continues_word(text[end])
            ):
                return True
            start = text.find(self.folded, start + 1)
        return False


@lru_cache(maxsize=1024)
def _word(word: str) -> _Word | None:
    """Return word folded for matching, None if folding leaves nothing of it.

    Scripts without spaces between words (Chinese, Japanese) match as substrings: an edge
    of the word in such a script needs no boundary.
    """
    folded = fold(word).strip()
    if not folded:
        return None
    return _Word(folded, not _is_cjk(folded[0]), not _is_cjk(folded[-1]))


def find_words(words: Iterable[str], *fields: str) -> list[str]:
    """Return the listed words found as whole words in any of the fields."""
    words = tuple(words)
    if not words:  # most sites list none: skip folding the text
        return []
    haystack = "\n".join(fold(f) for f in fields if f)
    found: list[str] = []
    for word in words:
        listed = _word(word)
        if listed is not None and listed.found_in(haystack):
            found.append(word)
    return found


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
                reject.append(f"{name} {value:.2f} ≥ reject threshold {band.reject:.2f}")
                if name == "spam" and not banned and not context.banned:
                    reject_as = "spam"
            elif value >= band.hold:
                hold.append(f"{name} {value:.2f} ≥ hold threshold {band.hold:.2f}")
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

    if context.trusted:
        unscored = [h for h in hold if h.startswith("not scored")]
        if hold and not unscored:
            return Decision(
                Action.PUBLISH, ("trusted author: hold skipped",) + tuple(hold), model_version
            )
        hold = unscored or hold
    if hold:
        return Decision(Action.HOLD, tuple(hold), model_version)
    return Decision(Action.PUBLISH, (), model_version)
