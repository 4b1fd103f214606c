"""Load the trained spam and toxicity model, score comments with it and explain the scores."""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask

log = logging.getLogger(__name__)

#: Name of the model file inside a model directory.
ARTIFACT_NAME = "classifier.skops"
#: Name of the manifest that pins hashes and versions of the artifact.
MANIFEST_NAME = "manifest.json"
#: Layout version of the artifact dictionary; bumped when the feature code changes meaning.
ARTIFACT_FORMAT = 1
#: The artifact holds only builtins and numpy arrays, which skops trusts already; any other
#: type found in a file is refused rather than trusted.
TRUSTED_TYPES: list[str] = []

# Fields a feature entry can come from; explanations report them to the dashboard.
FIELDS = ("text", "author", "website", "email", "meta")
_F_TEXT, _F_AUTHOR, _F_WEBSITE, _F_EMAIL, _F_META = range(5)

_MASK64 = (1 << 64) - 1
# Odd multiplier of the polynomial string hash; odd so that it is invertible modulo 2**64.
_POLY = 0x100000001B3
# Link finders are split into patterns with literal prefixes because Python's re scans those
# quickly; a single pattern that may start at any letter was ten times slower.
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'\x00]+", re.IGNORECASE)
# Matched only at candidate dots found with numpy, so IGNORECASE costs nothing.
_TLDS = ("com|net|org|info|ru|cn|biz|xyz|top|io|co|me|ly|tk|us|uk|de|online|site|club|shop|"
         "store|click|link|pw|cc|ws")
_TLD_RE = re.compile(rf"\.(?:{_TLDS})\b", re.IGNORECASE)
_PATH_RE = re.compile(r"/[^\s<>\"'\x00]*")
_EMAIL_RE = re.compile(r"@[\w-]+\.[A-Za-z]{2,}")
_PHONE_RE = re.compile(r"\d[\d \t().-]{7,}\d")
_URL_TOKEN_RE = re.compile(r"[a-z0-9]+")
# Promotional cue words, English and Chinese. The training spam (YouTube, SMS) teaches what
# such words are worth as a group, so the weight carries to cues it never saw (casino, 微信).
# English cues are matched as whole words through the word hashes (a regex with IGNORECASE
# cost more than all n-grams together); Chinese cues with a plain regex.
_PROMO_EN = (
    "buy cheap discount sale offer free win winner prize cash money earn income loan credit "
    "casino poker bet betting viagra cialis pill pills pharmacy crypto bitcoin forex invest "
    "investment profit seo backlink backlinks followers subscribe click visit promo coupon deal "
    "deals shop price bonus guaranteed dating singles sexy xxx porn replica diet essay download "
    "channel txt claim urgent",
    "weight loss|check out|limited time|call now")
_PROMO_ZH = re.compile(
    "微信|加微|薇信|加v|加V|QQ群|qq群|兼职|日赚|赚钱|免费|领取|优惠|福利|点击|网址|彩票|博彩|"
    "娱乐城|代开|发票|贷款|代理|招聘|私聊|推广|刷单|返利|低价|促销|特价|进群|加群|扫码|二维码")
# Insults and profanity, English and Chinese, counted as one feature for the same reason: the
# weight learned from English and from COLD's topics carries to insults a corpus lacks.
_ABUSE_EN = (
    "idiot idiots stupid moron morons fuck fucking fucked fucker fuckers fuckin fucks shit shits "
    "shitty bullshit bitch bitches asshole assholes dumb dumbass loser losers retard retarded "
    "retards cunt cunts dick dicks bastard bastards scum garbage pathetic kys whore whores slut "
    "sluts nigga niggas nigger niggers fag fags faggot faggots imbecile imbeciles jerk jerks "
    "trash idiotic moronic stupidest dumbest stupidity ignorant clown clowns hypocrite "
    "hypocrites liar liars coward cowards fool fools scumbag scumbags worthless useless crap "
    "crappy suck sucks piss pissed douche douchebag wanker prick pricks twat jackass arse "
    "asshat disgusting",
    "shut up|kill yourself|go die|screw you")
# Second-person words: an insult word within four words after one of them is addressed to a
# person ("you are a complete idiot"), which is what insult labels (Kaggle, Jigsaw) mark.
_YOU_EN = "you your you're youre u ur yourself ya"
_ABUSE_ZH = re.compile(
    "傻逼|傻b|傻B|煞笔|沙比|傻叉|脑残|滚|垃圾|废物|贱|婊|妈的|他妈|操你|草泥马|尼玛|去死|狗东西|"
    "畜生|蠢|白痴|智障|弱智|人渣|死全家|恶心|黑鬼|娘炮|屌丝|卧槽|闭嘴|狗日|杂种|舔狗|下贱")
# Currency signs before a number and 元 after one; found with numpy, not a regex.
_CURRENCY = (36, 163, 8364, 165, 65509)
_YUAN = 0x5143
#: Largest batch featurised at once; bigger ones are scored in chunks of this size.
PREDICT_CHUNK = 4096
#: Version of the feature code; an artifact built by another version is refused.
FEATURE_VERSION = 4
# Author and website go through the text n-gram weights at this scale, so spam words learned
# from comment bodies also count in names and URLs (no training set fills in a website).
_NAME_SCALE = 0.5


@dataclass(frozen=True)
class CommentText:
    """A comment as the classifier sees it."""

    text: str  # plain text of the comment (already normalised)
    author: str = ""
    website: str = ""
    email: str = ""


@dataclass(frozen=True)
class Scores:
    """Calibrated probabilities for one comment."""

    spam: float
    toxicity: float
    attributes: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Return every score in one flat dictionary rounded to four decimals."""
        out = {"spam": round(self.spam, 4), "toxicity": round(self.toxicity, 4)}
        out.update({k: round(v, 4) for k, v in self.attributes.items()})
        return out


class ModelError(Exception):
    """The model directory cannot be used; the message says why."""


# --------------------------------------------------------------------------------------------
# Features
#
# Features are hashed n-grams computed with numpy over the whole batch at once, because the
# pure-Python analyzers of scikit-learn manage only ~6,000 comments/s with character n-grams.
# Every entry is (row, column, value, field, start, end) so that the same code serves training
# (a sparse matrix), scoring (a weighted sum) and explanations (character spans).
# --------------------------------------------------------------------------------------------


def _mix(h: np.ndarray, salt: int, bits: int) -> np.ndarray:
    """Scramble 64-bit hashes with a block salt and keep the top ``bits`` bits as columns."""
    import numpy as np

    # Multiplicative hashing: the top bits of the product depend on every bit of the hash.
    x = h ^ np.uint64(salt & _MASK64)
    x *= np.uint64(0x9E3779B97F4A7C15)
    x >>= np.uint64(64 - bits)
    return x.view(np.int64)


def _str_hash(token: str, salt: int, bits: int) -> int:
    """Hash a short string token (URL parts, meta features) to a column, in plain Python."""
    x = (zlib.crc32(token.encode("utf-8", "replace")) | (len(token) << 32)) ^ (salt & _MASK64)
    x = (x * 0x9E3779B97F4A7C15) & _MASK64
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 32
    return x >> (64 - bits)


@dataclass
class _Entries:
    """Sparse feature entries of a batch, one per n-gram occurrence."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    fields: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    ends: list[np.ndarray] = field(default_factory=list)
    spans: bool = False

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float, fld: Any,
            starts: np.ndarray | None = None, ends: np.ndarray | None = None) -> None:
        import numpy as np

        self.rows.append(rows)
        self.cols.append(cols)
        if isinstance(vals, np.ndarray):
            self.vals.append(vals.astype(np.float32, copy=False))
        else:
            self.vals.append(np.full(len(rows), vals, dtype=np.float32))
        if self.spans:
            self.fields.append(np.full(len(rows), fld, dtype=np.int8)
                               if isinstance(fld, int) else fld)
            empty = np.full(len(rows), -1, dtype=np.int64)
            self.starts.append(empty if starts is None else starts)
            self.ends.append(empty if ends is None else ends)

    def concat(self) -> tuple[np.ndarray, ...]:
        import numpy as np

        e = np.zeros(0, dtype=np.int64)
        parts = [self.rows, self.cols, self.vals]
        if self.spans:
            parts += [self.fields, self.starts, self.ends]
        out = tuple(np.concatenate(x) if x else e for x in parts)
        if not self.spans:
            out += (e, e, e)
        return out


_POWERS: dict[int, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return cached powers of _POLY and of its inverse modulo 2**64, at least ``n`` long."""
    import numpy as np

    have = _POWERS.get(0)
    if have is None or len(have) < n:
        size = max(n, 1 << 16, 0 if have is None else 2 * len(have))
        inv = pow(_POLY, -1, 1 << 64)
        fwd = np.cumprod(np.full(size, _POLY, dtype=np.uint64))
        bwd = np.cumprod(np.full(size, inv, dtype=np.uint64))
        _POWERS[0] = np.concatenate(([np.uint64(1)], fwd[:-1]))
        _POWERS[1] = np.concatenate(([np.uint64(1)], bwd[:-1]))
    return _POWERS[0][:n], _POWERS[1][:n]


# Classes of the raw (unfolded) characters, counted per comment for the shape features.
# Lower-case letters are "other": the capital ratio is taken over word characters instead.
_C_OTHER, _C_UPPER, _C_DIGIT, _C_EXCL, _C_CJK, _C_CUR, _C_YUAN = range(7)
_N_CLASSES = 8
_TABLES: list[np.ndarray] = []
# Odd multiplier of the 32-bit rolling hash of character n-grams.
_POLY32 = 0x01000193


_WORD_BIT = 1 << 21
_CODE_MASK = _WORD_BIT - 1
_CLASS_SHIFT = 22
# Bit 25: the folded character is "h", "w" or ".", where a link can start ("http", "www.") or
# a bare domain's top-level domain begins.
_LINK_BIT = 1 << 25


def _table() -> np.ndarray:
    """Return the lookup table from a code point to its folded code point (bits 0-20), whether
    that is a word character (bit 21), the class of the raw character (bits 22-24) and whether
    a link may start there (bit 25).

    One gather through this 4.4 MB table replaces a chain of comparisons over the batch."""
    import numpy as np

    if not _TABLES:
        # Fold case, full-width forms and digits so that "FREE", "ｆｒｅｅ" and "free" share
        # features and phone numbers generalise; every kind of space becomes 32, and so does
        # the document separator 0, so that no n-gram crosses two comments.
        fold = np.arange(0x110000, dtype=np.uint32)
        fold[65:91] += 32
        fold[48:58] = 48
        fold[9:14] = 32
        fold[[0, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF]] = 32
        fold[0x2000:0x200C] = 32
        wide = np.arange(0xFF01, 0xFF5F)
        fold[wide] = fold[wide - 0xFEE0]
        # Word characters: letters, digits and the apostrophe; outside ASCII everything but
        # punctuation and CJK. Chinese has no spaces, so a "word" would be a whole clause seen
        # once; character n-grams cover it.
        word = np.zeros(0x110000, dtype=bool)
        word[97:123] = True
        word[[39, 48]] = True
        word[0xC0:0x10000] = True  # emoji and other astral characters are not words
        word[[0xD7, 0xF7]] = False
        for lo, hi in ((0x2000, 0x206F), (0x3000, 0x303F), (0x3400, 0x9FFF), (0xF900, 0xFAFF),
                       (0xFF00, 0xFF0F), (0xFF1A, 0xFF20)):
            word[lo:hi + 1] = False
        cls = np.zeros(0x110000, dtype=np.uint8)
        cls[65:91] = _C_UPPER
        cls[48:58] = _C_DIGIT
        cls[33] = _C_EXCL
        cls[0x3400:0xA000] = _C_CJK
        cls[0xF900:0xFB00] = _C_CJK
        cls[list(_CURRENCY)] = _C_CUR
        cls[_YUAN] = _C_YUAN
        packed = fold | (word[fold].astype(np.uint32) << 21)
        packed |= cls.astype(np.uint32) << _CLASS_SHIFT
        packed[np.isin(fold, (46, 104, 119))] |= np.uint32(_LINK_BIT)
        _TABLES.append(packed)
    return _TABLES[0]


@dataclass
class _Enc:
    """A batch of texts joined into one code-point array."""

    joined: str  # "\x00 \x00 " + " \x00 ".join(texts) + " \x00 \x00"
    raw: np.ndarray  # code points of joined (uint32); offsets are string indices
    packed: np.ndarray  # _table() entries of raw
    codes: np.ndarray  # folded code points (uint32); spaces and separators are all 32
    starts: np.ndarray  # index in joined of each text's first character
    lengths: np.ndarray
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def bounds(self) -> np.ndarray:
        """Return the first window start of every document, then the end of the batch.

        A document owns the n-grams that start from the space before it up to the space before
        the next one; windows that cross a separator are never generated.
        """
        import numpy as np

        b = self.cache.get("bounds")
        if b is None:
            b = self.cache["bounds"] = np.append(self.starts - 1, len(self.codes))
        return b


def _encode(texts: Sequence[str]) -> _Enc:
    """Join texts into one normalised code-point array."""
    import numpy as np

    # One join (concatenating to its result would copy it again).
    joined = " \x00 ".join(["\x00", *texts, "\x00"])
    if joined.count("\x00") != len(texts) + 3:
        joined = " \x00 ".join(["\x00", *(t.replace("\x00", " ") for t in texts), "\x00"])
    # UTF-32 keeps one array element per Python character, so offsets are string indices.
    raw = np.frombuffer(joined.encode("utf-32-le", "replace"), dtype=np.uint32)
    packed = np.take(_table(), raw)
    codes = packed & np.uint32(_CODE_MASK)
    lengths = np.array(list(map(len, texts)), dtype=np.int64)
    # Text i starts after "\x00 \x00 " and the texts before it, each followed by " \x00 ".
    starts = np.cumsum(lengths + 3) - lengths + 1
    return _Enc(joined, raw, packed, codes, starts, lengths)


def _prefix_hashes(enc: _Enc) -> np.ndarray:
    """Return polynomial prefix hashes of the folded codes (cached per batch)."""
    import numpy as np

    g = enc.cache.get("prefix")
    if g is None:
        fwd, _ = _powers(len(enc.codes))
        g = np.empty(len(enc.codes) + 1, dtype=np.uint64)
        g[0] = 0
        np.cumsum(enc.codes * fwd, out=g[1:])
        enc.cache["prefix"] = g
    return g


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return starts and ends of the runs of True (the mask is False at both ends)."""
    import numpy as np

    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    return edges[0::2], edges[1::2]


def _run_hashes(enc: _Enc, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Hash the folded characters s..e of every run, independent of its position."""
    _, bwd = _powers(len(enc.codes))
    g = _prefix_hashes(enc)
    return (g[e] - g[s]) * bwd[s]


def _tokens(enc: _Enc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return starts, ends and hashes of the whitespace-separated tokens."""
    if "tokens" not in enc.cache:
        ts, te = _runs(enc.codes != 32)
        enc.cache["tokens"] = ts, te, _run_hashes(enc, ts, te)
    return enc.cache["tokens"]


def _words(enc: _Enc) -> tuple[np.ndarray, ...]:
    """Return word starts, ends, hashes and documents, and the same-document bigram hashes."""
    import numpy as np

    if "words" not in enc.cache:
        ws, we = _runs((enc.packed & np.uint32(_WORD_BIT)) != 0)
        wh = _run_hashes(enc, ws, we)
        wdoc = np.searchsorted(enc.bounds, ws, side="right") - 1
        same = np.flatnonzero(wdoc[:-1] == wdoc[1:])
        bh = wh[same] * np.uint64(0x9E3779B1) + wh[same + 1]
        enc.cache["words"] = (ws, we, wh, wdoc, same, bh)
    return enc.cache["words"]


def _char_windows(codes: np.ndarray, cfg: dict[str, Any], salt: int,
                  bits: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, bool]]:
    """Yield (n, window starts, columns, all windows kept) of the character n-grams inside
    space-padded tokens.

    A window counts when no space lies strictly inside it and it is not all spaces: these are
    exactly the n-grams of " token " for every whitespace-separated token (like scikit-learn's
    char_wb analyzer), so the n-grams of a token do not depend on its neighbours and can be
    computed once per distinct token. Orders below ``char_range`` down to ``cjk_char_min`` are
    kept only where they touch a CJK character: Chinese words are one or two characters long,
    while Latin character pairs say little that longer n-grams do not.
    """
    import numpy as np

    lo, hi = cfg["char_range"]
    cjk_min = int(cfg.get("cjk_char_min", lo))
    nonsp = codes != 32
    cjk = None
    total = len(codes)
    h = codes.copy()
    ok = nonsp
    for n in range(2, hi + 1):
        m = total - n + 1
        if m <= 0:
            return
        h = h[:-1] * np.uint32(_POLY32) + codes[n - 1:]
        if n == 2:
            ok = nonsp[:m] | nonsp[1:]
        elif n == 3:
            ok = nonsp[1:m + 1]
        else:
            ok = ok[:m] & nonsp[n - 2:n - 2 + m]
        if n < cjk_min:
            continue
        if n < lo:
            if cjk is None:
                cjk = ((codes >= 0x3400) & (codes < 0xA000)) | ((codes >= 0xF900)
                                                               & (codes < 0xFB00))
            keep = cjk[:m].copy()
            for k in range(1, n):
                keep |= cjk[k:k + m]
            pos = np.flatnonzero(ok & keep)
        else:
            pos = np.flatnonzero(ok)
        x = h[pos] ^ np.uint32((salt + n) & 0xFFFFFFFF)
        x *= np.uint32(0x9E3779B1)
        x >>= np.uint32(32 - bits)
        yield n, pos, x.view(np.int32), n >= lo


def _word_hash(word: str) -> int:
    """Hash one folded word exactly as _words() does."""
    return sum(ord(ch) * pow(_POLY, i, 1 << 64) for i, ch in enumerate(word)) & _MASK64


_LEXICON: list[tuple[np.ndarray, ...]] = []
_LUT_BITS = 16


def _lexicon() -> tuple[np.ndarray, ...]:
    """Return (lookup table, hashes, cue kinds) of the cue words and of the cue bigrams."""
    import numpy as np

    if not _LEXICON:
        for part in (0, 1):
            kinds: dict[int, int] = {}
            for kind, (words, pairs) in enumerate((_PROMO_EN, _ABUSE_EN, (_YOU_EN, ""))):
                if part == 0:
                    kinds.update((_word_hash(w), kind) for w in words.split())
                elif pairs:
                    kinds.update(((_word_hash(a) * 0x9E3779B1 + _word_hash(b)) & _MASK64, kind)
                                 for a, b in (p.split() for p in pairs.split("|")))
            arr = np.array(sorted(kinds), dtype=np.uint64)
            # A direct-mapped table: bucket -> 1 + index of the cue hash stored there.
            slots = _mix(arr, 0, _LUT_BITS)
            if len(set(slots.tolist())) != len(arr):
                raise ValueError("cue words collide in the lookup table; raise _LUT_BITS")
            lut = np.zeros(1 << _LUT_BITS, dtype=np.int32)
            lut[slots] = np.arange(1, len(arr) + 1)
            _LEXICON.append((lut, np.r_[np.uint64(0), arr],
                             np.array([0] + [kinds[int(h)] for h in arr], dtype=np.int64)))
    return tuple(_LEXICON)


def _cue_hits(enc: _Enc) -> tuple[np.ndarray, ...]:
    """Find the cues of every document: promotional (kind 0), abusive (1), and abusive words
    addressed to a person (2, a second count of those words).

    English whole words and bigrams come from the word hashes, Chinese cue strings from a
    regex. Returns (kinds, documents, starts, ends), the spans as indices into enc.joined.
    """
    import numpy as np

    if "cues" in enc.cache:
        return enc.cache["cues"]
    ws, we, wh, wdoc, same, bh = _words(enc)
    found: list[tuple[np.ndarray, ...]] = []

    def add(kind: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
        """Record cues spanning the words first..last (arrays of word indices)."""
        found.append((kind, wdoc[first], ws[first], we[last]))

    for part, (hashes, (lut, table, kinds)) in enumerate(zip((wh, bh), _lexicon(), strict=True)):
        if not len(hashes):
            continue
        k = lut[_mix(hashes, 0, _LUT_BITS)]
        hit = np.flatnonzero(table[k] == hashes)
        k = k[hit]
        hit, kind = hit[k > 0], kinds[k[k > 0]]
        if part == 1:  # bigram i joins words same[i] and same[i] + 1
            add(kind, same[hit], same[hit] + 1)
            continue
        you = hit[kind == 2]
        abuse = hit[kind == 1]
        if len(you) and len(abuse):
            is_you = np.zeros(len(wh) + 4, dtype=bool)
            is_you[you + 4] = True  # shifted by 4 so that i - 4 never wraps
            near = np.zeros(len(abuse), dtype=bool)
            for d in (1, 2, 3, 4):
                prev = np.maximum(abuse - d, 0)
                near |= is_you[abuse + 4 - d] & (wdoc[prev] == wdoc[abuse])
            addressed = abuse[near]
            add(np.full(len(addressed), 2), addressed, addressed)
        keep = kind < 2
        add(kind[keep], hit[keep], hit[keep])
    cjk_docs = np.flatnonzero(_class_counts(enc)[:, _C_CJK])
    if len(cjk_docs):
        # One regex pass per cue list over the comments that hold Chinese characters, joined
        # by a separator that no cue contains.
        sub = [enc.joined[s:s + n] for s, n in zip(enc.starts[cjk_docs].tolist(),
                                                   enc.lengths[cjk_docs].tolist(), strict=True)]
        offsets = np.array(list(accumulate((len(t) + 1 for t in sub[:-1]), initial=0)))
        text = "\x00".join(sub)
        for kind, pattern in enumerate((_PROMO_ZH, _ABUSE_ZH)):
            spans = np.array([m.span() for m in pattern.finditer(text)], dtype=np.int64)
            if len(spans):
                k = np.searchsorted(offsets, spans[:, 0], side="right") - 1
                moved = (enc.starts[cjk_docs[k]] - offsets[k])[:, None]
                found.append((np.full(len(k), kind), cjk_docs[k], *(spans + moved).T))
    cues = enc.cache["cues"] = tuple(
        np.concatenate([f[i] for f in found]).astype(np.int64) if found
        else np.zeros(0, dtype=np.int64) for i in range(4))
    return cues


def _cue_counts(enc: _Enc) -> np.ndarray:
    """Count the cues of each kind per document (see _cue_hits): (documents, 3)."""
    import numpy as np

    kinds, docs, _, _ = _cue_hits(enc)
    n_docs = len(enc.starts)
    # One row more, as the word arrays may end with the batch's closing separator.
    counts = np.bincount(docs * 3 + kinds, minlength=(n_docs + 1) * 3)
    return counts.reshape(-1, 3)[:n_docs]


def _class_counts(enc: _Enc) -> np.ndarray:
    """Return per document the number of characters of every class (documents x classes)."""
    import numpy as np

    counts = enc.cache.get("classes")
    if counts is None:
        n = len(enc.starts)
        # One pass finds the few characters that have a class or may start a link.
        sel = enc.packed >> np.uint32(_CLASS_SHIFT)
        pos = np.flatnonzero(sel)
        sel = sel[pos]
        cls = sel & np.uint32(7)
        enc.cache["link_at"] = pos[sel >= 8]
        has = cls > 0
        pos, cls = pos[has], cls[has]
        enc.cache["class_at"] = pos, cls
        key = (np.searchsorted(enc.starts, pos, side="right") - 1) * _N_CLASSES + cls
        counts = np.bincount(key, minlength=n * _N_CLASSES).reshape(n, _N_CLASSES)
        counts[:, _C_CJK] += counts[:, _C_YUAN]
        enc.cache["classes"] = counts
    return counts


def _add_ngrams(entries: _Entries, enc: _Enc, fld: int, bits: int, cfg: dict[str, Any],
                salt: int, idf: np.ndarray | None, scale: float = 1.0) -> None:
    """Add character n-grams and word uni/bigrams of one field, each set scaled to unit length."""
    import numpy as np

    n_docs = len(enc.starts)
    bounds = enc.bounds
    rows_l, cols_l, s_l, e_l = [], [], [], []
    for n, pos, cols, _ in _char_windows(enc.codes, cfg, salt, bits):
        rows_l.append(np.searchsorted(bounds, pos, side="right") - 1)
        cols_l.append(cols.astype(np.int64))
        if entries.spans:
            s_l.append(pos)
            e_l.append(pos + n)
    _add_block(entries, n_docs, fld, enc.starts, idf, rows_l, cols_l, s_l, e_l, scale)
    ws, we, wh, wdoc, same, bh = _words(enc)
    if len(ws):
        _add_block(entries, n_docs, fld, enc.starts, idf, [wdoc, wdoc[same]],
                   [_mix(wh, salt + 101, bits), _mix(bh, salt + 102, bits)],
                   [ws, ws[same]], [we, we[same + 1]], scale)


def _add_block(entries: _Entries, n_docs: int, fld: int, starts: np.ndarray,
               idf: np.ndarray | None, rows_l: list[np.ndarray], cols_l: list[np.ndarray],
               s_l: list[np.ndarray], e_l: list[np.ndarray], scale: float = 1.0) -> None:
    """Add one block of n-gram entries with TF-IDF values scaled to unit length per doc."""
    import numpy as np

    if not rows_l:
        return
    rows = np.concatenate(rows_l)
    if not len(rows):
        return
    cols = np.concatenate(cols_l)
    # Each occurrence counts once, so the length is taken over occurrences; that equals the
    # usual L2 norm when no n-gram repeats and stays cheap (no per-document grouping).
    w = idf[cols] if idf is not None else np.ones(len(cols), dtype=np.float32)
    norm = np.sqrt(np.bincount(rows, weights=w * w, minlength=n_docs))
    vals = w * (scale / np.maximum(norm, 1e-6))[rows]
    if entries.spans:
        base = starts[rows]
        entries.add(rows, cols, vals, fld, np.concatenate(s_l) - base, np.concatenate(e_l) - base)
    else:
        entries.add(rows, cols, vals, fld)


@lru_cache(maxsize=4096)
def _url_columns(url: str, bits: int) -> tuple[int, ...]:
    """Return the columns of a URL's tokens (remembered: links and websites recur)."""
    return tuple(_str_hash(t, 3000, bits) for t in _url_tokens(url))


def _url_tokens(url: str) -> list[str]:
    """Split a URL or domain into host, top-level domain and word tokens."""
    low = url.lower()
    host = re.sub(r"^[a-z]+://", "", low).split("/", 1)[0].split("@")[-1].split(":")[0]
    host = host.removeprefix("www.")
    toks = [f"host:{host}"]
    if "." in host:
        toks.append(f"tld:{host.rsplit('.', 1)[-1]}")
    toks.extend(f"tok:{t}" for t in _URL_TOKEN_RE.findall(low) if t not in ("http", "https", "www"))
    return toks


# Meta features: name -> bucket edges applied to a per-comment number.
_META_EDGES: dict[str, tuple[float, ...]] = {
    "links": (1, 2, 3),
    "len": (20, 60, 150, 400, 1000),
    "digits": (0.01, 0.05, 0.15),
    "caps": (0.1, 0.3, 0.6),
    "excl": (1, 2, 3),
    "phone": (1,),
    "email": (1,),
    "author_len": (1, 4, 10, 20, 40),
    "author_digits": (1,),
    "author_url": (1,),
    "website": (1,),
    "promo": (1, 2, 3, 5),
    "abuse": (1, 2, 3),
    "addressed": (1, 2),
    "money": (1,),
}
# The least value at which an author feature says something about the name.
_AUTHOR_SIGNALS = {"author_len": 20, "author_digits": 1, "author_url": 1}
# Scale of the meta block relative to a text block (which has unit length).
_META_VALUE = 0.35
_PROMO_VALUE = 1.0
# Scale of each URL/domain token.
_URL_VALUE = 0.5
_META_NAMES = tuple(_META_EDGES)
_CUE_FEATURES = ("promo", "abuse", "addressed")
# Feature k is bucketed as value + k * _META_SHIFT against all edges at once.
_META_SHIFT = 1e9
_META_TABLES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _meta_table(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the shifted bucket edges, the bucket columns and the bucket values of all meta
    features, feature after feature."""
    import numpy as np

    table = _META_TABLES.get(bits)
    if table is None:
        edges, cols, vals = [], [], []
        for k, (name, e) in enumerate(_META_EDGES.items()):
            edges += [x + k * _META_SHIFT for x in e]
            cols += [_str_hash(f"{name}:{b}", 4000, bits) for b in range(len(e) + 1)]
            # Cue counts get full weight: the learned value of a cue word must carry to
            # unseen cue words.
            vals += [_PROMO_VALUE if name in _CUE_FEATURES else _META_VALUE] * (len(e) + 1)
        table = _META_TABLES[bits] = (np.array(edges), np.array(cols, dtype=np.int64),
                                      np.array(vals, dtype=np.float32))
    return table


def _money(enc: _Enc) -> np.ndarray:
    """Count currency amounts ($5, € 20, 500元) per document."""
    import numpy as np

    _class_counts(enc)
    pos, cls = enc.cache["class_at"]
    raw = enc.raw
    cur = pos[cls == _C_CUR]
    yuan = pos[cls == _C_YUAN]
    if not len(cur) and not len(yuan):  # most comments name no currency
        return np.zeros(len(enc.starts), dtype=np.int64)

    def digit(at: np.ndarray) -> np.ndarray:
        return (raw[at] >= 48) & (raw[at] <= 57)

    # The batch ends with " \x00 \x00", so cur + 2 stays inside it.
    amounts = np.concatenate((cur[digit(cur + 1) | ((raw[cur + 1] == 32) & digit(cur + 2))],
                              yuan[digit(yuan - 1)]))
    docs = np.searchsorted(enc.starts, amounts, side="right") - 1
    return np.bincount(docs, minlength=len(enc.starts))


def _phones(joined: str, starts: np.ndarray, lengths: np.ndarray,
            digits: np.ndarray) -> np.ndarray:
    """Count phone-number-like strings per document, searching only texts with 9+ digits."""
    import numpy as np

    out = np.zeros(len(starts), dtype=np.int64)
    for i in np.flatnonzero(digits >= 9).tolist():
        s = int(starts[i])
        out[i] = sum(1 for _ in _PHONE_RE.finditer(joined, s, s + int(lengths[i])))
    return out


def _find_links(enc: _Enc) -> list[tuple[int, int]]:
    """Return (start, end) of every URL or bare domain in a joined batch."""
    import numpy as np

    joined, c = enc.joined, enc.codes
    spans: list[tuple[int, int]] = []
    if "." not in joined and "/" not in joined:  # every link holds one or the other
        return spans
    # Candidates come from the folded (lower-case) codes with numpy; the regex then only runs
    # where a link can start. The batch ends with " \x00 \x00", so at + 3 stays inside it.
    _class_counts(enc)
    link_at = enc.cache["link_at"]
    first = c[link_at]
    cands: list[int] = []
    for start, rest in ((104, (116, 116, 112)), (119, (119, 119, 46))):  # "http", "www."
        at = link_at[first == start]
        for k, code in enumerate(rest, 1):
            at = at[c[at + k] == code]
        cands += at.tolist()
    end = -1
    for pos in sorted(cands):
        m = _URL_RE.match(joined, pos) if pos >= end else None
        if m:
            # Trailing punctuation ends the sentence, not the link.
            end = m.start() + len(m.group().rstrip(".,;:!?)]}'"))
            spans.append((m.start(), end))
    starts = [s for s, _ in spans]
    # Bare domains: a dot followed by two letters that can begin a top-level domain.
    dots = link_at[first == 46]
    a, b = c[dots + 1].astype(np.int64) - 97, c[dots + 2].astype(np.int64) - 97
    ok = (a >= 0) & (a < 26) & (b >= 0) & (b < 26)
    dots = dots[ok]
    dots = dots[_tld_pairs()[a[ok] * 26 + b[ok]]]
    for dot in dots.tolist():
        m = _TLD_RE.match(joined, dot)
        if m is None:
            continue
        k = bisect.bisect_right(starts, dot) - 1
        if k >= 0 and dot < spans[k][1]:
            continue
        start = dot
        while start > 0 and dot - start < 63 and (joined[start - 1].isascii() and (
                joined[start - 1].isalnum() or joined[start - 1] in "-.")):
            start -= 1
        if start == dot or not joined[start].isalnum():
            continue
        path = _PATH_RE.match(joined, m.end())
        link = joined[start:path.end() if path else m.end()].rstrip(".,;:!?)]}'\"")
        spans.append((start, start + len(link)))
    return sorted(spans)


_TLD_PAIRS: list[np.ndarray] = []


def _tld_pairs() -> np.ndarray:
    """Return a mask over the 26*26 letter pairs that begin one of the top-level domains."""
    import numpy as np

    if not _TLD_PAIRS:
        mask = np.zeros(26 * 26, dtype=bool)
        for tld in _TLDS.split("|"):
            mask[(ord(tld[0]) - 97) * 26 + ord(tld[1]) - 97] = True
        _TLD_PAIRS.append(mask)
    return _TLD_PAIRS[0]


def _per_doc(spans: list[tuple[int, int]], starts: np.ndarray,
             n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Count spans of a joined batch per document; return counts and each span's document."""
    import numpy as np

    if not spans:
        return np.zeros(n_docs, dtype=np.int64), np.zeros(0, dtype=np.int64)
    where = np.searchsorted(starts, [s for s, _ in spans], side="right") - 1
    return np.bincount(where, minlength=n_docs), where


def _pattern_spans(joined: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Return the spans of every match of a pattern."""
    return [m.span() for m in pattern.finditer(joined)]


def featurize(items: Sequence[CommentText], cfg: dict[str, Any], spans: bool = False,
              idf: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Turn comments into sparse hashed entries (rows, cols, vals[, fields, starts, ends])."""
    bits = int(cfg["bits"])
    entries = _Entries(spans=spans)
    if not items:
        return entries.concat()
    enc = _encode([it.text for it in items])
    authors = [it.author for it in items]
    a_enc = _encode(authors) if any(authors) else None
    names = _name_fields(items, a_enc)
    _add_ngrams(entries, enc, _F_TEXT, bits, cfg, _SALT_TEXT, idf)
    for fld, e in names:
        _add_ngrams(entries, e, fld, bits, cfg, _SALT_TEXT, idf, _NAME_SCALE)
    _add_other(entries, items, enc, a_enc, bits, names)
    return entries.concat()


_SALT_TEXT = 1000


def _name_fields(items: Sequence[CommentText],
                 a_enc: _Enc | None) -> list[tuple[int, _Enc]]:
    """Return the encoded author and website fields that are filled in anywhere in a batch."""
    out = [] if a_enc is None else [(_F_AUTHOR, a_enc)]
    sites = [it.website for it in items]
    if any(sites):
        out.append((_F_WEBSITE, _encode(sites)))
    return out


def _add_other(entries: _Entries, items: Sequence[CommentText], enc: _Enc,
               a_enc: _Enc | None, bits: int, names: list[tuple[int, _Enc]]) -> None:
    """Add link, website, e-mail domain and shape features."""
    import numpy as np

    n_docs = len(items)
    joined, starts, lengths = enc.joined, enc.starts, enc.lengths
    # Links, website and e-mail domain share one token space, so what the model learns from
    # links in bodies also applies to the website field, which no training set fills in.
    links = _find_links(enc)
    n_links, link_doc = _per_doc(links, starts, n_docs)
    u_rows: list[int] = []
    u_cols: list[int] = []
    u_fld: list[int] = []
    u_s: list[int] = []
    u_e: list[int] = []

    def add_url(i: int, url: str, fld: int, s: int, e: int) -> None:
        for c in _url_columns(url, bits):
            u_rows.append(i)
            u_cols.append(c)
            u_fld.append(fld)
            u_s.append(s)
            u_e.append(e)

    for (s, e), i in zip(links, link_doc.tolist(), strict=True):
        add_url(i, joined[s:e], _F_TEXT, s - int(starts[i]), e - int(starts[i]))
    websites = [it.website for it in items]
    for i, site in enumerate(websites):
        if site:
            add_url(i, site, _F_WEBSITE, 0, len(site))
    for i, it in enumerate(items):
        if "@" in it.email:
            dom = it.email.rsplit("@", 1)[1]
            add_url(i, dom, _F_EMAIL, len(it.email) - len(dom), len(it.email))
    if u_rows:
        entries.add(np.array(u_rows), np.array(u_cols), _URL_VALUE, np.array(u_fld, np.int8),
                    np.array(u_s), np.array(u_e))

    # The shape of a comment: spam is long on links, digits and capitals, short on words.
    counts = _class_counts(enc)
    upper, n_digits = counts[:, _C_UPPER], counts[:, _C_DIGIT]
    ws, we, _, wdoc, _, _ = _words(enc)
    alpha = np.bincount(wdoc, weights=we - ws, minlength=n_docs)
    cues = _cue_counts(enc)
    email = (np.zeros(n_docs, dtype=np.int64) if "@" not in joined
             else _per_doc(_pattern_spans(joined, _EMAIL_RE), starts, n_docs)[0])
    values: dict[str, np.ndarray] = {
        "links": n_links,
        "len": lengths,
        "digits": n_digits / np.maximum(lengths, 1),
        "caps": np.where(alpha >= 8, upper / np.maximum(alpha, 1), -1.0),
        "excl": counts[:, _C_EXCL],
        "phone": _phones(joined, starts, lengths, n_digits),
        "email": email,
        "website": np.fromiter((bool(w) for w in websites), dtype=np.int64, count=n_docs),
        "promo": cues[:, 0],
        "money": _money(enc),
        "abuse": cues[:, 1],
        "addressed": cues[:, 2],
    }
    # Cue words count the same in the author and website fields as in the text.
    for _, e in names:
        values["promo"] = values["promo"] + _cue_counts(e)[:, 0]
    if a_enc is not None:
        values["author_len"] = a_enc.lengths
        values["author_digits"] = _class_counts(a_enc)[:, _C_DIGIT]
        values["author_url"] = _per_doc(_find_links(a_enc), a_enc.starts, n_docs)[0]
    edges, cols, vals = _meta_table(bits)
    v = np.zeros((n_docs, len(_META_NAMES)))
    keep = np.ones(v.shape, dtype=bool)
    for k, name in enumerate(_META_NAMES):
        if name in values:
            v[:, k] = values[name]
        if name in _AUTHOR_SIGNALS:
            # Having a name is no sign of spam: every comment form asks for one, while in
            # training only YouTube comments (half of them spam) have one, so "has a name"
            # would be learned as spam. Author features fire only for what is unusual in a
            # name (v is 0 without an author, so a comment scores the same in any batch).
            keep[:, k] = v[:, k] >= _AUTHOR_SIGNALS[name]
    keep[:, _META_NAMES.index("caps")] = v[:, _META_NAMES.index("caps")] >= 0
    np.minimum(v, _META_SHIFT / 4, out=v)
    v += np.arange(len(_META_NAMES)) * _META_SHIFT
    bucket = np.searchsorted(edges, v, side="right") + np.arange(len(_META_NAMES))
    rows, _ = np.nonzero(keep)
    bucket = bucket[keep]
    entries.add(rows, cols[bucket], vals[bucket], _F_META)


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _cue_columns(bits: int) -> dict[int, int]:
    """Return the meta columns of cue counts above zero, each with its cue kind."""
    _, meta_cols, _ = _meta_table(bits)
    kind_of: dict[int, int] = {}
    k = 0
    for name, e in _META_EDGES.items():
        if name in _CUE_FEATURES:  # bucket 0 is a count of zero
            kind = _CUE_FEATURES.index(name)
            kind_of.update((int(c), kind) for c in meta_cols[k + 1:k + len(e) + 1])
        k += len(e) + 1
    return kind_of


def _cue_shares(item: CommentText, cols: np.ndarray, flds: np.ndarray,
                contrib: np.ndarray, bits: int) -> tuple[np.ndarray, ...]:
    """Spread what each cue count adds to the scores over the cue words it counted.

    The count of listed insults, say, is one column with no place in the text, but it is
    often the largest reason ("脑残" in a Chinese insult adds more through it than all its
    character n-grams). Returns (fields, starts, ends, contributions) of one entry per cue word
    and count, its share of the count's contribution to every head.
    """
    import numpy as np

    kind_of = _cue_columns(bits)
    fired = [(i, kind_of[int(cols[i])]) for i in np.flatnonzero(flds == _F_META).tolist()
             if int(cols[i]) in kind_of]
    words: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    # Most comments hold no listed word: then no cue column fired and nothing is searched.
    for fld, src in ((_F_TEXT, item.text), (_F_AUTHOR, item.author), (_F_WEBSITE, item.website)):
        if not src or not fired or (fld != _F_TEXT and all(kind for _, kind in fired)):
            continue
        enc = _encode([src])
        kinds, _, starts, ends = _cue_hits(enc)
        for kind, s, e in zip(kinds.tolist(), (starts - enc.starts[0]).tolist(),
                              (ends - enc.starts[0]).tolist(), strict=True):
            if fld == _F_TEXT or kind == 0:  # names and websites count promotional cues only
                words[kind].append((fld, s, e))
    out: list[tuple[int, int, int]] = []
    shares: list[np.ndarray] = []
    for i, kind in fired:
        found = words.get(kind)
        if found:
            out += found
            shares += [contrib[i] / len(found)] * len(found)
    if not out:
        return (np.zeros(0, dtype=np.int8), *(np.zeros(0, dtype=np.int64),) * 2,
                np.zeros((0, contrib.shape[1])))
    f, s, e = (np.array(x) for x in zip(*out, strict=True))
    return f.astype(np.int8), s, e, np.array(shares)


def _row_pointers(pos: np.ndarray, bounds: np.ndarray, n: int) -> np.ndarray | None:
    """Return where each document's entries start in the sorted positions pos.

    One document needs none: all its entries go in one sum.
    """
    import numpy as np

    return np.searchsorted(pos, bounds) if n > 1 else None


class Classifier:
    """A loaded model that scores and explains comments."""

    def __init__(self, artifact: dict[str, Any], manifest: dict[str, Any]) -> None:
        import numpy as np

        self.version: str = str(manifest.get("version", "unknown"))
        self.manifest = manifest
        self.heads: list[str] = list(artifact["heads"])
        self.config: dict[str, Any] = dict(artifact["features"])
        # float16 on disk keeps the file small; float32 in memory keeps sums exact enough.
        weights = np.asarray(artifact["weights"])
        self.idf = np.asarray(artifact["idf"], dtype=np.float32)
        # idf*w per head plus idf**2: scoring n-grams then needs one lookup per occurrence.
        # Rows are padded to a multiple of 8 floats (32 bytes), so that no row straddles two
        # cache lines: the lookups are random and memory-bound.
        h = weights.shape[1]
        self.table = np.zeros((len(self.idf), -(-(h + 1) // 8) * 8), dtype=np.float32)
        np.multiply(weights, self.idf[:, None], out=self.table[:, :h])
        self.table[:, h] = self.idf ** 2
        # The link, shape and name features use the plain weights. With float16 weights and
        # IDF (as trained) idf*w is exact in float32, so dividing by idf gives each weight back
        # to the bit and a second copy (24 MB per worker at 2**20 columns) is not kept.
        exact = (len(self.idf) > 0 and bool(np.all(self.idf > 0))
                 and np.array_equal(self.table[:, :h] / self.idf[:, None],
                                    weights.astype(np.float32)))
        self._weights_t = None if exact else np.ascontiguousarray(weights.T, dtype=np.float32)
        self.intercept = np.asarray(artifact["intercept"], dtype=np.float64)
        self.calib_a = np.asarray(artifact["calib_a"], dtype=np.float64)
        self.calib_b = np.asarray(artifact["calib_b"], dtype=np.float64)
        self.thresholds: dict[str, dict[str, float]] = {
            k: {kk: float(vv) for kk, vv in v.items()}
            for k, v in manifest.get("thresholds", {}).items()
        }
        if self.config.get("version") != FEATURE_VERSION:
            raise ModelError(f"model features are version {self.config.get('version')}, this "
                             f"code computes version {FEATURE_VERSION}; retrain the model")
        n_cols = 1 << int(self.config["bits"])
        h = len(self.heads)
        if (weights.shape != (n_cols, h) or self.idf.shape != (n_cols,)
                or self.intercept.shape != (h,)
                or self.calib_a.shape != (h,) or self.calib_b.shape != (h,)
                or "spam" not in self.heads or "toxicity" not in self.heads):
            raise ModelError("corrupt model: array shapes do not match the feature configuration")

    def head_weights(self, cols: np.ndarray) -> np.ndarray:
        """Return the weights of these feature columns, one row per head."""
        if self._weights_t is not None:
            return self._weights_t[:, cols]
        import numpy as np

        picked = np.take(self.table, cols, axis=0)  # faster than fancy indexing here
        return (picked[:, :len(self.heads)] / np.take(self.idf, cols)[:, None]).T

    def _logits(self, items: Sequence[CommentText]) -> np.ndarray:
        """Return the uncalibrated decision values, one row per comment."""
        import numpy as np

        n, h = len(items), len(self.heads)
        out = np.zeros((n, h), dtype=np.float64)
        enc = _encode([it.text for it in items])
        authors = [it.author for it in items]
        a_enc = _encode(authors) if any(authors) else None
        names = _name_fields(items, a_enc)
        for e, scale in [(enc, 1.0)] + [(e, _NAME_SCALE) for _, e in names]:
            # Same TF-IDF/unit-length values as featurize(), summed without materialising them:
            # sum(idf*w)/sqrt(sum(idf**2)) per document and block, via one table lookup.
            for a in (self._char_sums(e), self._word_sums(e)):
                norm = np.sqrt(np.maximum(a[:, h], 0.0))
                out += a[:, :h] * (scale / np.maximum(norm, 1e-6))[:, None]
        entries = _Entries()
        _add_other(entries, items, enc, a_enc, int(self.config["bits"]), names)
        rows, cols, vals, _, _, _ = entries.concat()
        weights = self.head_weights(cols)
        if n == 1:
            out[0] += weights @ vals
        else:
            for j, w in enumerate(weights):
                out[:, j] += np.bincount(rows, weights=w * vals, minlength=n)
        return out + self.intercept

    def _char_sums(self, enc: _Enc) -> np.ndarray:
        """Sum the table rows of every character n-gram per document."""
        import numpy as np

        bits = int(self.config["bits"])
        n = len(enc.starts)
        # One comment or a few tokens: summing every window directly is cheaper.
        ts, te, th = _tokens(enc) if n > 1 else (enc.starts, enc.starts, None)
        if n == 1 or len(ts) < 256:
            bounds = enc.bounds
            return self._block_sums([(cols, _row_pointers(pos, bounds, n)) for _, pos, cols, _
                                     in _char_windows(enc.codes, self.config, _SALT_TEXT, bits)],
                                    n)
        # The n-grams of a token do not depend on its neighbours, and a batch repeats most
        # of its tokens: sum each distinct token once, then add the tokens up per document.
        slot = _mix(th, 7, max(10, len(ts).bit_length() + 1))
        ar = np.arange(len(ts), dtype=np.int64)
        lut = np.empty(int(slot.max()) + 1, dtype=np.int64)
        lut[slot] = ar
        rep = lut[slot]
        own = np.where(th[rep] == th, rep, ar)
        uniq = np.flatnonzero(own == ar)
        row_of = np.empty(len(ts), dtype=np.int64)
        row_of[uniq] = np.arange(len(uniq))
        # The distinct tokens laid out as " tok1 tok2 ... ", each with the space before it.
        us, ue = ts[uniq], te[uniq]
        lens = ue - us + 1
        off = np.cumsum(lens) - lens
        codes = np.empty(int(lens.sum()) + 1, dtype=np.uint32)
        codes[:-1] = enc.codes[np.arange(len(codes) - 1) + np.repeat(us - 1 - off, lens)]
        codes[-1] = 32
        # " tok" holds len(tok) + 3 - n windows of n characters (with the space after it)
        # when no window is left out.
        bounds = np.append(off, len(codes))
        per_token = self._block_sums(
            [(cols, np.concatenate(([0], np.cumsum(np.maximum(lens + 2 - n, 0)))) if full
              else np.searchsorted(pos, bounds))
             for n, pos, cols, full in _char_windows(codes, self.config, _SALT_TEXT, bits)],
            len(uniq))
        import scipy.sparse as sp

        docs = sp.csr_matrix((np.ones(len(ts), dtype=np.float32), row_of[own],
                              np.searchsorted(ts, enc.bounds)), shape=(n, len(uniq)))
        return np.asarray(docs @ per_token)

    def _word_sums(self, enc: _Enc) -> np.ndarray:
        """Sum the table rows of every word unigram and bigram per document."""
        bits = int(self.config["bits"])
        ws, _, wh, _, same, bh = _words(enc)
        n = len(enc.starts)
        bounds = enc.bounds
        return self._block_sums([(_mix(wh, _SALT_TEXT + 101, bits), _row_pointers(ws, bounds, n)),
                                 (_mix(bh, _SALT_TEXT + 102, bits),
                                  _row_pointers(ws[same], bounds, n))], n)

    def _block_sums(self, passes: list[tuple[np.ndarray, np.ndarray | None]],
                    n: int) -> np.ndarray:
        """Sum table rows per row for passes of (columns, row pointers), as (n, heads + 1).

        One row (n == 1) needs no pointers.
        """
        import numpy as np

        if n == 1 or not passes:
            out = np.zeros((n, self.table.shape[1]), dtype=np.float64)
            if passes:
                cols = np.concatenate([c for c, _ in passes])
                out[0] = self.table[cols].sum(axis=0)
            return out
        import scipy.sparse as sp

        # One sparse product for all passes: pass k owns the rows k*n .. k*n+n-1.
        cols = np.concatenate([c for c, _ in passes])
        sizes = np.cumsum([0] + [len(c) for c, _ in passes])
        pointers = cast("list[np.ndarray]", [p for _, p in passes])  # n > 1: none is None
        indptr = np.concatenate([p[:-1] + sizes[k] for k, p in enumerate(pointers)]
                                + [sizes[-1:]])
        m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr),
                          shape=(n * len(passes), self.table.shape[0]))
        return np.asarray(m @ self.table, dtype=np.float64).reshape(len(passes), n, -1).sum(0)

    def predict(self, items: Sequence[CommentText]) -> np.ndarray:
        """Return calibrated probabilities as an array of shape (comments, heads)."""
        import numpy as np

        if not items:
            return np.zeros((0, len(self.heads)))
        if len(items) > PREDICT_CHUNK:
            # A comment scores the same in any batch, so chunks bound memory without changing
            # a score: 50,000 Wikipedia-length comments at once take about 1.2 GB.
            return np.vstack([self.predict(items[i:i + PREDICT_CHUNK])
                              for i in range(0, len(items), PREDICT_CHUNK)])
        z = self._logits(items) * self.calib_a + self.calib_b
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, items: Sequence[CommentText]) -> list[Scores]:
        """Score many comments in one vectorised pass."""
        probs = self.predict(items).tolist()
        names = self.heads
        i_spam, i_tox = names.index("spam"), names.index("toxicity")
        attrs = [(j, name) for j, name in enumerate(names) if name not in ("spam", "toxicity")]
        return [
            Scores(spam=p[i_spam], toxicity=p[i_tox], attributes={name: p[j] for j, name in attrs})
            for p in probs
        ]

    def score_one(self, item: CommentText) -> Scores:
        """Score a single comment."""
        return self.score([item])[0]

    def explain(self, item: CommentText, top: int = 8) -> dict[str, list[dict[str, object]]]:
        """Return, per score, the terms that pushed it up most, with character spans."""
        import numpy as np

        rows, cols, vals, flds, starts, ends = featurize([item], self.config, spans=True,
                                                          idf=self.idf)
        contrib = self.head_weights(cols).T * vals[:, None] * self.calib_a
        sources = {_F_TEXT: item.text, _F_AUTHOR: item.author, _F_WEBSITE: item.website}
        # Each feature's span in its field, trimmed of spaces and widened to whole words
        # ("idi" + "diot" -> "idiot"; Chinese has no spaces, so its n-grams stay as they are),
        # computed with arrays: the n-grams of one 10,000-letter word all widen to one span,
        # and walking it once per n-gram would take minutes.
        span_s = np.full(len(flds), -1, dtype=np.int64)
        span_e = np.full(len(flds), -1, dtype=np.int64)
        for fld, src in sources.items():
            sel = np.flatnonzero((flds == fld) & (starts >= 0))
            if not len(sel) or not src:
                continue
            first, last, after_space, before_space = _word_bounds(src)
            s = after_space[np.clip(starts[sel], 0, len(src))]
            e = before_space[np.clip(ends[sel], 0, len(src))]
            keep = s < e
            s, e, sel = s[keep], e[keep], sel[keep]
            widened = last[e - 1]
            span_s[sel], span_e[sel] = first[s], np.where(widened >= 0, widened, e)
        # The words of the fixed cue lists, with their share of what their counts add.
        cue_f, cue_s, cue_e, cue_w = _cue_shares(item, cols, flds, contrib,
                                                 int(self.config["bits"]))
        flds, span_s, span_e = (np.concatenate(pair) for pair in (
            (flds, cue_f), (span_s, cue_s), (span_e, cue_e)))
        contrib = np.concatenate([contrib, cue_w])
        size = max(len(src) for src in sources.values()) + 1
        out: dict[str, list[dict[str, object]]] = {}
        for j, head in enumerate(self.heads):
            pos = np.flatnonzero((contrib[:, j] > 0) & (span_s >= 0))
            keys = (flds[pos].astype(np.int64) * size + span_s[pos]) * size + span_e[pos]
            spans, first_seen, inverse = np.unique(keys, return_index=True, return_inverse=True)
            weights = np.bincount(inverse, weights=contrib[pos, j], minlength=len(spans))
            groups: dict[tuple[int, str], dict[str, Any]] = {}
            for u in np.argsort(first_seen, kind="stable"):  # in the order first seen
                k = pos[first_seen[u]]
                fld, s0, e0 = int(flds[k]), int(span_s[k]), int(span_e[k])
                term = sources[fld][s0:e0]
                g = groups.setdefault((fld, term.lower()), {"term": term, "weight": 0.0,
                                                            "spans": []})
                g["weight"] += float(weights[u])
                g["spans"].append([s0, e0])
            ranked = sorted(((k, g) for k, g in groups.items() if round(g["weight"], 4) > 0),
                            key=lambda kv: -kv[1]["weight"])[:top]
            out[head] = [
                {"term": g["term"], "field": FIELDS[fld], "weight": round(g["weight"], 4),
                 "spans": sorted(g["spans"])}
                for (fld, _), g in ranked
            ]
        return out


def _latin(ch: str) -> bool:
    """Tell whether a character belongs to a space-separated word (not CJK)."""
    return (ch.isalnum() and ord(ch) < 0x2E80) or ch == "'"


def _word_bounds(text: str) -> tuple[np.ndarray, ...]:
    """Return position tables of text for widening spans to whole words.

    ``first[i]``: where a span starting at i begins once widened (its word's first index, or i
    outside a word); ``last[i]``: the end of the word holding i (-1 outside a word);
    ``after_space[i]``: the first index at or after i that is not a space (len(text) if none);
    ``before_space[i]``: the largest j <= i with text[j - 1] not a space (0 if none).
    """
    import numpy as np

    n = len(text)
    latin = [_latin(ch) for ch in text]
    first, last = list(range(n)), [-1] * n
    for i in range(1, n):
        if latin[i] and latin[i - 1]:
            first[i] = first[i - 1]
    end = -1
    for i in range(n - 1, -1, -1):
        end = (end if end >= 0 else i + 1) if latin[i] else -1
        last[i] = end
    after, before = [n] * (n + 1), [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        after[i] = after[i + 1] if text[i].isspace() else i
    for i in range(1, n + 1):
        before[i] = before[i - 1] if text[i - 1].isspace() else i
    return tuple(np.array(a, dtype=np.int64) for a in (first, last, after, before))


@dataclass(frozen=True)
class ModelStatus:
    """The outcome of loading the model at start-up."""

    classifier: Classifier | None
    error: str | None

    @property
    def ok(self) -> bool:
        """Tell whether a classifier is loaded and usable."""
        return self.classifier is not None and self.error is None


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(model_dir: str | Path) -> Classifier:
    """Load and verify the model in ``model_dir`` or raise ModelError with the reason."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    if not manifest_path.is_file():
        raise ModelError(f"missing {manifest_path}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        artifacts = manifest["artifacts"]
        expected_sklearn = manifest["versions"]["sklearn"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"corrupt manifest {manifest_path}: {exc}") from exc

    installed = _installed_sklearn()
    if expected_sklearn != installed:
        raise ModelError(
            f"model was built with scikit-learn {expected_sklearn}, "
            f"but {installed} is installed; retrain or install the pinned version"
        )
    main = None
    for entry in artifacts:
        path = model_dir / str(entry.get("file", ""))
        if path.parent != model_dir or not path.is_file():
            raise ModelError(f"missing artifact {path}")
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise ModelError(f"sha256 mismatch for {path.name}: manifest says "
                             f"{entry.get('sha256')}, file has {digest}")
        if path.name == ARTIFACT_NAME:
            main = path, digest
    if main is None:
        raise ModelError(f"manifest lists no {ARTIFACT_NAME}")

    from .artifact import ArtifactError, load_in_child

    try:
        # The child re-checks the sha256 of the very bytes it loads with skops.
        artifact = load_in_child(main[0], main[1], TRUSTED_TYPES)
    except ArtifactError as exc:
        raise ModelError(str(exc)) from exc
    main_name = main[0].name
    if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"artifact {main_name} is not format {ARTIFACT_FORMAT}")
    try:
        return Classifier(artifact, manifest)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"corrupt artifact {main_name}: {exc}") from exc


def _installed_sklearn() -> str:
    """Return the installed scikit-learn version without importing it (it is large)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return "not installed"


def init_app(app: Flask) -> None:
    """Load the configured model once and record the outcome in ``app.extensions``."""
    model_dir = app.config.get("MODEL_DIR")
    if not model_dir:
        state = ModelStatus(None, "no model configured")
    else:
        try:
            state = ModelStatus(load(model_dir), None)
        except Exception as exc:  # the service must start and hold comments instead
            reason = str(exc) or exc.__class__.__name__
            app.logger.error("classifier not loaded, holding every comment: %s", reason)
            state = ModelStatus(None, reason)
    app.extensions["classifier"] = state


def status(app: Flask) -> ModelStatus:
    """Return the model status recorded by ``init_app``."""
    return app.extensions.get("classifier") or ModelStatus(None, "not initialised")
