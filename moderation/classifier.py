"""Load the trained spam and toxicity model, score comments with it and explain the scores."""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
# Matched against the lower-cased text: IGNORECASE makes Python's re test every position.
_TLD_RE = re.compile(r"\.(?:com|net|org|info|ru|cn|biz|xyz|top|io|co|me|ly|tk|us|uk|de|online|"
                     r"site|club|shop|store|click|link|pw|cc|ws)\b")
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
    "trash",
    "shut up|kill yourself")
_ABUSE_ZH = re.compile(
    "傻逼|傻b|傻B|煞笔|沙比|傻叉|脑残|滚|垃圾|废物|贱|婊|妈的|他妈|操你|草泥马|尼玛|去死|狗东西|"
    "畜生|蠢|白痴|智障|弱智|人渣|死全家|恶心|黑鬼|娘炮|屌丝|卧槽|闭嘴|狗日|杂种|舔狗|下贱")
# Currency signs before a number and 元 after one; found with numpy, not a regex.
_CURRENCY = (36, 163, 8364, 165, 65509)
_YUAN = 0x5143
#: Version of the feature code; an artifact built by another version is refused.
FEATURE_VERSION = 2
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


def _encode(texts: Sequence[str]) -> tuple[Any, ...]:
    """Join texts into one normalised code-point array; return joined, codes, raw, starts, docs."""
    import numpy as np

    joined = "\x00 " + " \x00 ".join(texts) + " \x00"
    if joined.count("\x00") != len(texts) + 1:
        joined = "\x00 " + " \x00 ".join(t.replace("\x00", " ") for t in texts) + " \x00"
    # UTF-32 keeps one array element per Python character, so offsets are string indices.
    raw = np.frombuffer(joined.encode("utf-32-le", "replace"), dtype=np.uint32)
    codes = raw.astype(np.uint64)
    # Fold case, full-width forms and digits so that "FREE", "ｆｒｅｅ" and "free" share
    # features and phone numbers generalise; the mapping is one character to one character.
    big = raw >= 0xA0
    if big.any():
        fw = big & (raw >= 0xFF01) & (raw <= 0xFF5E)
        codes[fw] -= np.uint64(0xFEE0)
        codes[big & ((raw == 0xA0) | (raw == 0x3000) | (raw == 0x200B) | (raw == 0xFEFF))] = 32
    codes[(codes >= 65) & (codes <= 90)] += np.uint64(32)
    codes[(codes >= 48) & (codes <= 57)] = 48
    codes[(codes >= 9) & (codes <= 13)] = 32
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.cumsum(np.concatenate(([2], lengths[:-1] + 3))) if len(texts) else lengths
    doc = np.cumsum(raw == 0) - 1
    # The last element caches the word hashes, which n-grams and cue words both need.
    return joined, codes, raw, starts, doc, {}


def _is_word(codes: np.ndarray) -> np.ndarray:
    """Return a mask of code points that belong to word tokens."""
    mask = ((codes >= 97) & (codes <= 122)) | (codes == 48) | (codes == 39)
    big = codes >= 128
    if big.any():
        # Everything outside ASCII except punctuation and CJK is a word character. Chinese has
        # no spaces, so a "word" would be a whole clause seen once; character n-grams cover it.
        punct = ((codes >= 0x3000) & (codes <= 0x303F)) | ((codes >= 0xFF00) & (codes <= 0xFF0F))
        punct |= ((codes >= 0xFF1A) & (codes <= 0xFF20)) | ((codes >= 0x2000) & (codes <= 0x206F))
        punct |= ((codes >= 0x3400) & (codes <= 0x9FFF)) | ((codes >= 0xF900) & (codes <= 0xFAFF))
        mask |= big & ~punct
    return mask


def _ngram_passes(enc: tuple[Any, ...], bits: int, char_range: Sequence[int], salt: int,
                  spans: bool) -> Iterator[tuple[str, np.ndarray, np.ndarray, Any, Any]]:
    """Yield (block, rows, cols, starts, ends) per n-gram order; rows ascend within a pass."""
    import numpy as np

    codes, doc = enc[1], enc[4]
    total = len(codes)
    zero = np.concatenate(([0], np.cumsum(codes == 0)))
    is_space = codes == 32
    h = codes.copy()
    lo, hi = char_range
    for n in range(2, hi + 1):
        h = h[:-1] * np.uint64(_POLY) + codes[n - 1:]
        if n < lo:
            continue
        m = total - n + 1
        # Windows that cross a document separator, or start and end on spaces, say nothing.
        ok = (zero[n:] == zero[:m]) & ~(is_space[:m] & is_space[n - 1:])
        pos = np.flatnonzero(ok)
        yield "char", doc[pos], _mix(h[pos], salt + n, bits), pos if spans else None, (
            pos + n if spans else None)
    ws, we, wh, wdoc, same, bh = _words(enc)
    if len(ws):
        yield "word", wdoc, _mix(wh, salt + 101, bits), ws, we
        yield "word", wdoc[same], _mix(bh, salt + 102, bits), ws[same], we[same + 1]


def _words(enc: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """Return word starts, ends, hashes and documents, and the same-document bigram hashes."""
    import numpy as np

    cache = enc[5]
    if "words" not in cache:
        codes, doc = enc[1], enc[4]
        mask = _is_word(codes).astype(np.int8)
        edge = np.diff(mask, prepend=np.int8(0), append=np.int8(0))
        ws = np.flatnonzero(edge == 1)
        we = np.flatnonzero(edge == -1)
        # Polynomial prefix hashes, made position-free with the modular inverse of _POLY.
        fwd, bwd = _powers(len(codes))
        g = np.concatenate(([np.uint64(0)], np.cumsum(codes * fwd, dtype=np.uint64)))
        wh = (g[we] - g[ws]) * bwd[ws]
        wdoc = doc[ws]
        same = np.flatnonzero(wdoc[:-1] == wdoc[1:])
        bh = wh[same] * np.uint64(0x9E3779B1) + wh[same + 1]
        cache["words"] = (ws, we, wh, wdoc, same, bh)
    return cache["words"]


def _word_hash(word: str) -> int:
    """Hash one folded word exactly as _words() does."""
    return sum(ord(ch) * pow(_POLY, i, 1 << 64) for i, ch in enumerate(word)) & _MASK64


_LEXICONS: dict[str, tuple[tuple[np.ndarray, np.ndarray], ...]] = {}
_LUT_BITS = 16


def _lexicon(words: tuple[str, str]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Return (lookup table, hashes) for the words and for the bigrams of a cue list."""
    import numpy as np

    key = words[0][:40]
    if key not in _LEXICONS:
        uni = sorted({_word_hash(w) for w in words[0].split()})
        bi = sorted({(_word_hash(a) * 0x9E3779B1 + _word_hash(b)) & _MASK64
                     for a, b in (p.split() for p in words[1].split("|"))})
        tables = []
        for hashes in (uni, bi):
            arr = np.array(hashes, dtype=np.uint64)
            # A direct-mapped table: bucket -> 1 + index of the cue hash stored there.
            slots = _mix(arr, 0, _LUT_BITS)
            if len(set(slots.tolist())) != len(arr):
                raise ValueError("cue words collide in the lookup table; raise _LUT_BITS")
            lut = np.zeros(1 << _LUT_BITS, dtype=np.int32)
            lut[slots] = np.arange(1, len(arr) + 1)
            tables.append((lut, np.r_[np.uint64(0), arr]))
        _LEXICONS[key] = tuple(tables)
    return _LEXICONS[key]


def _cue_counts(enc: tuple[Any, ...], n_docs: int, words: tuple[str, str],
                zh: re.Pattern[str]) -> np.ndarray:
    """Count English cue words (whole words) and Chinese cue strings per document."""
    import numpy as np

    _, _, wh, wdoc, same, bh = _words(enc)
    uni, bi = _lexicon(words)
    out = np.zeros(n_docs + 1, dtype=np.int64)
    for hashes, (lut, table), docs in ((wh, uni, wdoc), (bh, bi, wdoc[same])):
        if len(hashes):
            k = lut[_mix(hashes, 0, _LUT_BITS)]
            hit = (k > 0) & (table[k] == hashes)
            out += np.bincount(docs[hit], minlength=n_docs + 1)
    counts = out[:n_docs]
    if enc[2].max(initial=0) >= 0x3400:
        counts += _per_doc(_pattern_spans(enc[0], zh), enc[3], n_docs)[0]
    return counts


def _add_ngrams(entries: _Entries, enc: tuple[Any, ...], n_docs: int, fld: int, bits: int,
                char_range: Sequence[int], salt: int, idf: np.ndarray | None,
                scale: float = 1.0) -> None:
    """Add character n-grams and word uni/bigrams of one field, each set scaled to unit length."""
    blocks: dict[str, tuple[list[Any], ...]] = {}
    for kind, rows, cols, st, en in _ngram_passes(enc, bits, char_range, salt, entries.spans):
        lists = blocks.setdefault(kind, ([], [], [], []))
        lists[0].append(rows)
        lists[1].append(cols)
        if entries.spans:
            lists[2].append(st)
            lists[3].append(en)
    for rows_l, cols_l, s_l, e_l in blocks.values():
        _add_block(entries, n_docs, fld, enc[3], idf, rows_l, cols_l, s_l, e_l, scale)


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
    "money": (1,),
}
# Scale of the meta block relative to a text block (which has unit length).
_META_VALUE = 0.35
_PROMO_VALUE = 1.0
# Scale of each URL/domain token.
_URL_VALUE = 0.5
_META_TABLES: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}


def _meta_table(bits: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the bucket edges and bucket columns of every meta feature."""
    import numpy as np

    table = _META_TABLES.get(bits)
    if table is None:
        table = _META_TABLES[bits] = {
            name: (np.asarray(edges, dtype=np.float64),
                   np.array([_str_hash(f"{name}:{b}", 4000, bits)
                             for b in range(len(edges) + 1)], dtype=np.int64))
            for name, edges in _META_EDGES.items()
        }
    return table


def _find_all(text: str, sub: str) -> list[int]:
    """Return every start of ``sub`` in ``text``."""
    out = []
    i = text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def _money(raw: np.ndarray, doc: np.ndarray, n_docs: int) -> np.ndarray:
    """Count currency amounts ($5, € 20, 500元) per document."""
    import numpy as np

    d = (raw >= 48) & (raw <= 57)
    next1 = np.r_[d[1:], False]
    next2 = np.r_[d[2:], False, False] & np.r_[raw[1:] == 32, False]
    cur = raw == _CURRENCY[0]
    for c in _CURRENCY[1:]:
        cur |= raw == c
    before = cur & (next1 | next2)
    after = (raw == _YUAN) & np.r_[False, d[:-1]]
    return np.bincount(doc[before | after], minlength=n_docs + 1)[:n_docs]


def _phones(joined: str, starts: np.ndarray, lengths: np.ndarray,
            digits: np.ndarray) -> np.ndarray:
    """Count phone-number-like strings per document, searching only texts with 9+ digits."""
    import numpy as np

    out = np.zeros(len(starts), dtype=np.int64)
    for i in np.flatnonzero(digits >= 9).tolist():
        s = int(starts[i])
        out[i] = sum(1 for _ in _PHONE_RE.finditer(joined, s, s + int(lengths[i])))
    return out


def _find_links(joined: str) -> list[tuple[int, int]]:
    """Return (start, end) of every URL or bare domain in a string."""
    spans: list[tuple[int, int]] = []
    low = joined.lower()
    if len(low) != len(joined):  # a few characters lower-case to two; keep offsets exact
        for ch in {c for c in set(joined) if len(c.lower()) != 1}:
            joined = joined.replace(ch, " ")
        low = joined.lower()
    # str.find scans in C; the regex then only runs where a link can start.
    cands = sorted(_find_all(low, "http") + _find_all(low, "www."))
    end = -1
    for pos in cands:
        m = _URL_RE.match(joined, pos) if pos >= end else None
        if m:
            # Trailing punctuation ends the sentence, not the link.
            end = m.start() + len(m.group().rstrip(".,;:!?)]}'"))
            spans.append((m.start(), end))
    starts = [s for s, _ in spans]
    for m in _TLD_RE.finditer(low):
        dot = m.start()
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
    texts = [it.text for it in items]
    enc = _encode(texts)
    authors = [it.author for it in items]
    a_enc = _encode(authors) if any(authors) else None
    _add_ngrams(entries, enc, len(items), _F_TEXT, bits, cfg["char_range"], _SALT_TEXT, idf)
    for fld, e in _name_fields(items, a_enc):
        _add_ngrams(entries, e, len(items), fld, bits, cfg["char_range"], _SALT_TEXT, idf,
                    _NAME_SCALE)
    _add_other(entries, items, texts, enc, authors, a_enc, bits)
    return entries.concat()


_SALT_TEXT = 1000


def _name_fields(items: Sequence[CommentText],
                 a_enc: tuple[Any, ...] | None) -> list[tuple[int, tuple[Any, ...]]]:
    """Return the encoded author and website fields that are filled in anywhere in a batch."""
    out = [] if a_enc is None else [(_F_AUTHOR, a_enc)]
    sites = [it.website for it in items]
    if any(sites):
        out.append((_F_WEBSITE, _encode(sites)))
    return out


def _add_other(entries: _Entries, items: Sequence[CommentText], texts: list[str],
               enc: tuple[Any, ...], authors: list[str], a_enc: tuple[Any, ...] | None,
               bits: int, names: list[tuple[int, tuple[Any, ...]]] | None = None) -> None:
    """Add link, website, e-mail domain and shape features."""
    import numpy as np

    n_docs = len(items)

    joined, _, raw, starts, doc, _ = enc
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n_docs)
    # Links, website and e-mail domain share one token space, so what the model learns from
    # links in bodies also applies to the website field, which no training set fills in.
    links = _find_links(joined)
    n_links, link_doc = _per_doc(links, starts, n_docs)
    u_rows: list[int] = []
    u_cols: list[int] = []
    u_fld: list[int] = []
    u_s: list[int] = []
    u_e: list[int] = []
    cache: dict[str, list[int]] = {}

    def add_url(i: int, url: str, fld: int, s: int, e: int) -> None:
        cols = cache.get(url)
        if cols is None:
            cols = cache[url] = [_str_hash(t, 3000, bits) for t in _url_tokens(url)]
        for c in cols:
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
    def counts(mask: np.ndarray) -> np.ndarray:
        return np.bincount(doc[mask], minlength=n_docs + 1)[:n_docs]

    upper = counts((raw >= 65) & (raw <= 90))
    n_digits = counts((raw >= 48) & (raw <= 57))
    alpha = upper + counts((raw >= 97) & (raw <= 122))
    values: dict[str, np.ndarray] = {
        "links": n_links,
        "len": lengths,
        "digits": n_digits / np.maximum(lengths, 1),
        "caps": np.where(alpha >= 8, upper / np.maximum(alpha, 1), -1.0),
        "excl": counts(raw == 33),
        "phone": _phones(joined, starts, lengths, n_digits),
        "email": _per_doc(_pattern_spans(joined, _EMAIL_RE), starts, n_docs)[0],
        "website": np.fromiter((bool(w) for w in websites), dtype=np.int64, count=n_docs),
        "promo": _cue_counts(enc, n_docs, _PROMO_EN, _PROMO_ZH),
        "money": _money(raw, doc, n_docs),
        "abuse": _cue_counts(enc, n_docs, _ABUSE_EN, _ABUSE_ZH),
    }
    # Cue words count the same in the author and website fields as in the text.
    for _, e in names if names is not None else _name_fields(items, a_enc):
        values["promo"] += _cue_counts(e, n_docs, _PROMO_EN, _PROMO_ZH)
    if a_enc is not None:
        a_len = np.fromiter((len(a) for a in authors), dtype=np.int64, count=n_docs)
        a_raw, a_doc = a_enc[2], a_enc[4]
        values["author_len"] = a_len
        values["author_digits"] = np.bincount(a_doc[(a_raw >= 48) & (a_raw <= 57)],
                                              minlength=n_docs + 1)[:n_docs]
        values["author_url"] = _per_doc(_find_links(a_enc[0]), a_enc[3], n_docs)[0]
    table = _meta_table(bits)
    all_rows = np.arange(n_docs)
    # Author features exist only where there is an author, so that a comment scores the same
    # alone or in any batch.
    has_author = np.fromiter((bool(a) for a in authors), dtype=bool, count=n_docs)
    for name, v in values.items():
        if v is None:
            continue
        edges, cols = table[name]
        b = np.searchsorted(edges, v, side="right")
        if name == "caps":
            keep = np.flatnonzero(v >= 0)
        elif name.startswith("author_"):
            keep = np.flatnonzero(has_author)
        elif name in ("promo", "abuse"):
            # Full weight: the learned value of a cue word must carry to unseen cue words.
            entries.add(all_rows, cols[b], _PROMO_VALUE, _F_META)
            continue
        else:
            entries.add(all_rows, cols[b], _META_VALUE, _F_META)
            continue
        entries.add(keep, cols[b[keep]], _META_VALUE, _F_META)


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


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
        # One contiguous row per head: gathers of the few link and shape features then touch
        # one head's row at a time.
        self.weights_t = np.ascontiguousarray(weights.T, dtype=np.float32)
        self.idf = np.asarray(artifact["idf"], dtype=np.float32)
        # idf*w per head plus idf**2: scoring n-grams then needs one lookup per occurrence.
        self.table = np.empty((len(self.idf), weights.shape[1] + 1), dtype=np.float32)
        np.multiply(weights, self.idf[:, None], out=self.table[:, :-1])
        self.table[:, -1] = self.idf ** 2
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
        if (self.weights_t.shape != (h, n_cols) or self.idf.shape != (n_cols,)
                or self.intercept.shape != (h,)
                or self.calib_a.shape != (h,) or self.calib_b.shape != (h,)
                or "spam" not in self.heads or "toxicity" not in self.heads):
            raise ModelError("corrupt model: array shapes do not match the feature configuration")

    def _logits(self, items: Sequence[CommentText]) -> np.ndarray:
        """Return the uncalibrated decision values, one row per comment."""
        import numpy as np

        n, h = len(items), len(self.heads)
        out = np.zeros((n, h), dtype=np.float64)
        texts = [it.text for it in items]
        enc = _encode(texts)
        authors = [it.author for it in items]
        a_enc = _encode(authors) if any(authors) else None
        bits = int(self.config["bits"])
        char_range = self.config["char_range"]
        names = _name_fields(items, a_enc)
        for e, scale in [(enc, 1.0)] + [(e, _NAME_SCALE) for _, e in names]:
            # Same TF-IDF/unit-length values as featurize(), summed without materialising them:
            # sum(idf*w)/sqrt(sum(idf**2)) per document and block, via one table lookup.
            passes = [(kind, rows, cols) for kind, rows, cols, _, _
                      in _ngram_passes(e, bits, char_range, _SALT_TEXT, False)]
            sums = self._sum_passes(passes, n)
            acc: dict[str, np.ndarray] = {}
            for (kind, _, _), part in zip(passes, sums, strict=True):
                acc[kind] = acc[kind] + part if kind in acc else part
            for a in acc.values():
                norm = np.sqrt(np.maximum(a[:, h], 0.0))
                out += a[:, :h] * (scale / np.maximum(norm, 1e-6))[:, None]
        entries = _Entries()
        _add_other(entries, items, texts, enc, authors, a_enc, bits, names)
        rows, cols, vals, _, _, _ = entries.concat()
        for j, w in enumerate(self.weights_t):
            out[:, j] += np.bincount(rows, weights=w[cols] * vals, minlength=n)
        return out + self.intercept

    def _sum_passes(self, passes: list[tuple[str, np.ndarray, np.ndarray]],
                    n: int) -> list[np.ndarray]:
        """Sum table rows per document for every pass (``rows`` ascend within a pass)."""
        import numpy as np

        if n == 1:
            return [self.table[cols].sum(axis=0, dtype=np.float64)[None, :]
                    for _, _, cols in passes]
        if not passes:
            return []
        import scipy.sparse as sp

        # One sparse product for all passes: pass k owns the rows k*n .. k*n+n-1.
        rows = np.concatenate([r + k * n for k, (_, r, _) in enumerate(passes)])
        cols = np.concatenate([c for _, _, c in passes])
        indptr = np.searchsorted(rows, np.arange(n * len(passes) + 1))
        m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr),
                          shape=(n * len(passes), self.table.shape[0]))
        res = np.asarray(m @ self.table, dtype=np.float64)
        return [res[k * n:(k + 1) * n] for k in range(len(passes))]

    def predict(self, items: Sequence[CommentText]) -> np.ndarray:
        """Return calibrated probabilities as an array of shape (comments, heads)."""
        import numpy as np

        if not items:
            return np.zeros((0, len(self.heads)))
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
        contrib = self.weights_t[:, cols].T * vals[:, None] * self.calib_a
        sources = {_F_TEXT: item.text, _F_AUTHOR: item.author, _F_WEBSITE: item.website}
        out: dict[str, list[dict[str, object]]] = {}
        for j, head in enumerate(self.heads):
            groups: dict[tuple[int, str], dict[str, Any]] = {}
            for k in np.flatnonzero(contrib[:, j] > 0):
                fld = int(flds[k])
                src = sources.get(fld)
                if src is None or starts[k] < 0:
                    continue
                s, e = max(int(starts[k]), 0), min(int(ends[k]), len(src))
                while s < e and src[s].isspace():
                    s += 1
                while e > s and src[e - 1].isspace():
                    e -= 1
                if s >= e:
                    continue
                # Pieces of a word count for the whole word ("idi" + "diot" -> "idiot");
                # Chinese has no spaces, so its n-grams stay as they are.
                while s > 0 and _latin(src[s - 1]) and _latin(src[s]):
                    s -= 1
                while e < len(src) and _latin(src[e]) and _latin(src[e - 1]):
                    e += 1
                term = src[s:e]
                g = groups.setdefault((fld, term.lower()), {"term": term, "weight": 0.0,
                                                            "spans": []})
                g["weight"] += float(contrib[k, j])
                if [s, e] not in g["spans"]:
                    g["spans"].append([s, e])
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
