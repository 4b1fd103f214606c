"""Tests for moderation.sanitising: markdown subset, HTML allowlist, field cleaners."""

from __future__ import annotations

import re
import threading
from html import unescape
from html.parser import HTMLParser

import pytest

from moderation import sanitising
from moderation.exceptions import InvalidField
from moderation.sanitising import (
    clean_author,
    clean_email,
    clean_text,
    clean_website,
    count_links,
    link_domains,
    normalise,
    plain_text,
    render,
)

ALLOWED_TAGS = {"p", "br", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
REL = "nofollow ugc noopener noreferrer"
TEXT_BOUNDS = (2, 10_000)
SAFE_HREF_RE = re.compile(r"^(?:https?://[^/\s]|mailto:[^\s]+@)", re.IGNORECASE)
EVENT_HANDLER_RE = re.compile(r"<[^>]*\son\w+\s*=", re.IGNORECASE)


class _Audit(HTMLParser):
    """Parse sanitised HTML the way a browser-ish tokenizer would and record what it holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record a start tag and its attributes."""
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record a self-closing tag and its attributes."""
        self.tags.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        """Record a comment (none may survive)."""
        self.other.append(f"comment:{data}")

    def handle_decl(self, decl: str) -> None:
        """Record a declaration (none may survive)."""
        self.other.append(f"decl:{decl}")

    def handle_pi(self, data: str) -> None:
        """Record a processing instruction (none may survive)."""
        self.other.append(f"pi:{data}")

    def unknown_decl(self, data: str) -> None:
        """Record a CDATA or other unknown declaration (none may survive)."""
        self.other.append(f"unknown:{data}")


def assert_safe(html: str) -> None:
    """Assert that html holds only allowlisted tags and attributes and no live dangerous link."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert not EVENT_HANDLER_RE.search(html), html
    for needle in ("<img", "<svg", "<math", "<iframe", "<object", "<embed", "<form", "<style"):
        assert needle not in lowered, (needle, html)
    audit = _Audit()
    audit.feed(html)
    audit.close()
    assert audit.other == [], html
    for tag, attrs in audit.tags:
        assert tag in ALLOWED_TAGS, (tag, html)
        names = [name for name, _ in attrs]
        if tag != "a":
            assert names == [], (tag, attrs, html)
            continue
        assert sorted(names) == ["href", "rel"], (attrs, html)
        values = dict(attrs)
        assert values["rel"] == REL
        href = unescape(values["href"] or "")
        assert SAFE_HREF_RE.match(href), (href, html)
        scheme = href.split(":", 1)[0].strip().lower()
        assert scheme in {"http", "https", "mailto"}, (href, html)
        for bad in ("javascript:", "data:", "vbscript:", "file:"):
            assert not href.lower().startswith(bad)


# (hostile input, harmless text that must still be visible)
HOSTILE: list[tuple[str, str]] = [
    ("<script>alert(1)</script>hello", "hello"),
    ("<SCRIPT SRC=//evil.example/x.js></SCRIPT>hello", "hello"),
    ("<scr<script>ipt>alert(1)</script>hello", "hello"),
    ("<script\n>alert(1)</script\n>hello", "hello"),
    ("<img src=x onerror=alert(1)>hello", "hello"),
    ("<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">hello", "hello"),
    ("<svg onload=alert(1)>hello", "hello"),
    ("<svg><script>alert(1)</script></svg>hello", "hello"),
    ('<svg><a xlink:href="javascript:alert(1)"><text>hello</text></a></svg>', "hello"),
    ('<math href="javascript:alert(1)">hello</math>', "hello"),
    ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>hello", "hello"),
    ("<body onload=alert(1)>hello", "hello"),
    ("<details open ontoggle=alert(1)>hello", "hello"),
    ("<b onclick=alert(1)>hello", "hello"),
    ('<div style="background:url(javascript:alert(1))">hello</div>', "hello"),
    ('<p style="width: expression(alert(1))" class="x">hello</p>', "hello"),
    ("<style>@import 'javascript:alert(1)';</style>hello", "hello"),
    ('<iframe src="javascript:alert(1)"></iframe>hello', "hello"),
    ('<object data="data:text/html;base64,PHNjcmlwdD4="></object>hello', "hello"),
    ('<embed src="javascript:alert(1)">hello', "hello"),
    ('<form action="javascript:alert(1)"><input type=submit></form>hello', "hello"),
    ('<meta http-equiv="refresh" content="0;url=javascript:alert(1)">hello', "hello"),
    ('<base href="javascript:alert(1)//">hello', "hello"),
    ('<link rel=stylesheet href="javascript:alert(1)">hello', "hello"),
    ('<a href="javascript:alert(1)">hello</a>', "hello"),
    ('<a href="JaVaScRiPt:alert(1)">hello</a>', "hello"),
    ('<a href="&#106;avascript:alert(1)">hello</a>', "hello"),
    ('<a href="jav&#x09;ascript:alert(1)">hello</a>', "hello"),
    ('<a href="data:text/html,<script>alert(1)</script>">hello</a>', "hello"),
    ('<a href="vbscript:msgbox(1)">hello</a>', "hello"),
    (
        '<a href="https://example.com" onclick="alert(1)" style="x" rel="opener">hello</a>',
        "hello",
    ),
    ("[hello](javascript:alert(1))", "hello"),
    ("[hello](JAVASCRIPT:alert(1))", "hello"),
    ("[hello](JaVaScRiPt:alert(1))", "hello"),
    ("[hello](&#106;avascript:alert(1))", "hello"),
    ("[hello](&#x6A;avascript&#x3A;alert(1))", "hello"),
    ("[hello](javascript&colon;alert(1))", "hello"),
    ("[hello](jav&#x09;ascript:alert(1))", "hello"),
    ("[hello](<jav\tascript:alert(1)>)", "hello"),
    ("[hello](<java\nscript:alert(1)>)", "hello"),
    ("[hello](<javascript:alert(1)>)", "hello"),
    ("[hello]( javascript:alert(1))", "hello"),
    ("[hello](javascript://%0aalert(1))", "hello"),
    ("[hello](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "hello"),
    ("[hello](DATA:text/html,<script>alert(1)</script>)", "hello"),
    ("[hello](vbscript:msgbox(1))", "hello"),
    ("[hello](file:///etc/passwd)", "hello"),
    ("[hello](//evil.example/path)", "hello"),
    ("[hello](/relative/path)", "hello"),
    ("[hello](https:evil.example)", "hello"),
    ("[hello](https:/\\evil.example)", "hello"),
    ("[hello](https://user:pass@evil.example/)", "hello"),
    ("[hello][ref]\n\n[ref]: javascript:alert(1)", "hello"),
    ('[hello](https://example.com "t\\" onmouseover=\\"alert(1)")', "hello"),
    ('[hello](https://example.com/"onmouseover="alert(1))', "hello"),
    ("[hello](https://example.com/'onmouseover='alert(1))", "hello"),
    ('[hello](https://example.com/"><script>alert(1)</script>)', "hello"),
    ('https://example.com/"><script>alert(1)</script> hello', "hello"),
    ("https://example.com/'onmouseover='alert(1)' hello", "hello"),
    ("<javascript:alert(1)> hello", "hello"),
    ("<JavaScript:alert(1)> hello", "hello"),
    ("<data:text/html,<script>alert(1)</script>> hello", "hello"),
    ("<vbscript:msgbox(1)> hello", "hello"),
    ("![hello](javascript:alert(1))", "hello"),
    ("![hello](https://evil.example/pixel.png)", "hello"),
    ('![hello](https://evil.example/x.png" onerror="alert(1))', "hello"),
    ("![hello](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)", "hello"),
    ("</p></blockquote></li><script>alert(1)</script>hello", "hello"),
    ("<p><em>hello", "hello"),
    ("<!--<script>alert(1)</script>-->hello", "hello"),
    ("<!--><img src=x onerror=alert(1)>-->hello", "hello"),
    ("<![CDATA[<script>alert(1)</script>]]>hello", "hello"),
    ('<?xml version="1.0"?><script>alert(1)</script>hello', "hello"),
    ("<!DOCTYPE html><script>alert(1)</script>hello", "hello"),
    ("<template><script>alert(1)</script></template>hello", "hello"),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">hello', "hello"),
    ('<video><source onerror="alert(1)">hello', "hello"),
    ("<isindex type=image src=1 onerror=alert(1)>hello", "hello"),
    ('"><script>alert(1)</script>hello', "hello"),
    ("'';!--\"<XSS>=&{()} hello", "hello"),
    ("&lt;script&gt;alert(1)&lt;/script&gt; hello", "hello"),
    ("```\n<script>alert(1)</script>\n```\nhello", "hello"),
    ("`<img src=x onerror=alert(1)>` hello", "hello"),
    ("> <script>alert(1)</script>\n> hello", "hello"),
    ("- <iframe src=//evil.example></iframe>\n- hello", "hello"),
    ("\u202e<script>alert(1)</script>hello\u202c", "hello"),
    ("<scr\u200bipt>alert(1)</scr\u200bipt>hello", "hello"),
    ("[hello](java\u200bscript:alert(1))", "hello"),
    ("[hello](java\u00adscript:alert(1))", "hello"),
    ("<scr\x00ipt>alert(1)</script>hello", "hello"),
    ("[hello](javascript\x00:alert(1))", "hello"),
    ("[hello](\x01javascript:alert(1))", "hello"),
    ('<a href="java\x00script:alert(1)">hello</a>', "hello"),
    ("<script>alert(1)</script>" * 390 + "hello", "hello"),
    ("[x](javascript:alert(1)) " * 300 + "hello", "hello"),
    ("你这个傻瓜，滚开！<script>alert('笨蛋')</script>", "你这个傻瓜，滚开！"),
    ("他妈的垃圾文章 [点这里](javascript:alert(1))", "他妈的垃圾文章"),
]


@pytest.mark.parametrize(("raw", "survivor"), HOSTILE)
def test_hostile_input_is_neutralised(raw: str, survivor: str) -> None:
    """Hostile markup never survives as live HTML, and the harmless text stays visible."""
    text, html = clean_text(raw)
    assert_safe(html)
    assert survivor in plain_text(html)
    assert survivor in text


@pytest.mark.parametrize(("raw", "survivor"), HOSTILE)
def test_hostile_input_is_neutralised_without_normalising(raw: str, survivor: str) -> None:
    """render() is safe on its own, even on text that did not go through normalise()."""
    html = render(raw)
    assert_safe(html)
    assert survivor in plain_text(html)


BLEACH_ONLY_EXTRA = [
    '<svg><a xlink:href="https://ok.example/">x</a></svg>',
    '<a xlink:href="javascript:alert(1)" href="https://ok.example/">x</a>',
    '<a href="/relative">x</a> <a href="//evil.example/">y</a> <a>z</a>',
    '<a href="https://ok.example/" target="_blank" rel="opener" class="c">x</a>',
    '<a href=" javascript:alert(1)">x</a><a href="\x01javascript:alert(1)">y</a>',
    "<table><tr><td>x</td></tr></table><h1>y</h1><hr><img src=x>",
]


@pytest.mark.parametrize("raw", [raw for raw, _ in HOSTILE] + BLEACH_ONLY_EXTRA)
def test_bleach_layer_alone_enforces_allowlist(raw: str) -> None:
    """The bleach Cleaner on its own neutralises raw hostile HTML (defence in depth)."""
    assert_safe(sanitising._cleaner().clean(raw))


def test_hostile_table_is_large() -> None:
    """The hostile-input table covers at least fifty cases."""
    assert len(HOSTILE) >= 50


@pytest.mark.parametrize(
    "raw",
    [
        "<b>x</b>",
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<!-- comment -->",
    ],
)
def test_raw_html_is_shown_literally(raw: str) -> None:
    """Raw HTML in a comment is displayed as text, not interpreted."""
    html = render(raw)
    assert plain_text(html) == raw
    assert "&lt;" in html


@pytest.mark.parametrize(
    "raw",
    [
        "[x](javascript:alert(1))",
        "<javascript:alert(1)>",
        "[x](&#106;avascript:alert(1))",
        "[x](//evil.example/)",
        "[x](/local)",
        "[x](https://user:pw@evil.example/)",
        "https://user:pw@evil.example/",
        "![x](https://evil.example/a.png)",
        "example.com",
        "ftp://example.com/file",
    ],
)
def test_unsafe_or_relative_targets_make_no_link(raw: str) -> None:
    """Only absolute http(s) and mailto targets ever become links."""
    html = render(raw)
    assert count_links(html) == 0, html
    assert "<a" not in html


# -- markdown subset ----------------------------------------------------------------------


def _link(href: str, label: str) -> str:
    """Return the HTML render() produces for a link."""
    return f'<a href="{href}" rel="{REL}">{label}</a>'


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain words", "<p>plain words</p>"),
        ("*em* and **strong**", "<p><em>em</em> and <strong>strong</strong></p>"),
        ("_em_ and __strong__", "<p><em>em</em> and <strong>strong</strong></p>"),
        ("line one\nline two", "<p>line one<br>\nline two</p>"),
        ("para one\n\npara two", "<p>para one</p>\n<p>para two</p>"),
        ("`x < y && z`", "<p><code>x &lt; y &amp;&amp; z</code></p>"),
        ("```python\nprint('<b>')\n```", "<pre><code>print('&lt;b&gt;')\n</code></pre>"),
        ("    indented code", "<pre><code>indented code\n</code></pre>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        ("- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"),
        ("* a\n* b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"),
        ("1. a\n2. b", "<ol>\n<li>a</li>\n<li>b</li>\n</ol>"),
        ("3. a\n4. b", "<ol>\n<li>a</li>\n<li>b</li>\n</ol>"),
        ("# Title", "<p># Title</p>"),
        ("### Title", "<p>### Title</p>"),
        ("Title\n=====", "<p>Title<br>\n=====</p>"),
        ("---", "<p>---</p>"),
        ("![alt text](https://example.com/a.png)", "<p>alt text</p>"),
        ("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"),
        ('He said "hi" & left', '<p>He said "hi" &amp; left</p>'),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "<p>| a | b |<br>\n|---|---|<br>\n| 1 | 2 |</p>"),
        ("~~struck~~", "<p>~~struck~~</p>"),
        ("[site](https://example.com)", f"<p>{_link('https://example.com', 'site')}</p>"),
        ("[site](HTTP://Example.com/A)", f"<p>{_link('HTTP://Example.com/A', 'site')}</p>"),
        (
            '[site](https://example.com "a title")',
            f"<p>{_link('https://example.com', 'site')}</p>",
        ),
        ("<https://example.com>", f"<p>{_link('https://example.com', 'https://example.com')}</p>"),
        ("<me@example.com>", f"<p>{_link('mailto:me@example.com', 'me@example.com')}</p>"),
        (
            "[mail me](mailto:me@example.com)",
            f"<p>{_link('mailto:me@example.com', 'mail me')}</p>",
        ),
        (
            "see https://example.com/a?b=1&c=2.",
            "<p>see "
            + _link("https://example.com/a?b=1&amp;c=2", "https://example.com/a?b=1&amp;c=2")
            + ".</p>",
        ),
        (
            "(see https://en.wikipedia.org/wiki/Foo_(bar))",
            "<p>(see "
            + _link(
                "https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"
            )
            + ")</p>",
        ),
        (
            "wow http://example.com!",
            f"<p>wow {_link('http://example.com', 'http://example.com')}!</p>",
        ),
        ("`https://example.com`", "<p><code>https://example.com</code></p>"),
        ("```\nhttps://example.com\n```", "<pre><code>https://example.com\n</code></pre>"),
        ("example.com and www.example.com", "<p>example.com and www.example.com</p>"),
        (
            "**https://example.com**",
            f"<p><strong>{_link('https://example.com', 'https://example.com')}</strong></p>",
        ),
        (
            "> - *a*\n>   `b`",
            "<blockquote>\n<ul>\n<li><em>a</em><br>\n<code>b</code></li>\n</ul>\n</blockquote>",
        ),
    ],
)
def test_markdown_subset(source: str, expected: str) -> None:
    """Each supported markdown feature renders to the expected allowlisted HTML."""
    html = render(source)
    assert html == expected
    assert_safe(html)


def test_every_link_gets_rel() -> None:
    """All links, written or autolinked, carry the fixed rel and nothing else."""
    html = render("[a](https://a.example) <https://b.example> https://c.example <d@e.example>")
    audit = _Audit()
    audit.feed(html)
    links = [dict(attrs) for tag, attrs in audit.tags if tag == "a"]
    assert len(links) == 4
    assert all(link["rel"] == REL and set(link) == {"href", "rel"} for link in links)


@pytest.mark.parametrize(
    "source",
    [
        "你好，世界！这篇文章写得很好。",
        "こんにちは 안녕하세요 مرحبا שלום Привет",
        "emoji 😀👍🏽👨‍👩‍👧 and flags 🇩🇪",
        "Ελληνικά and Ünïcödé",
    ],
)
def test_non_latin_text_and_emoji_survive(source: str) -> None:
    """Non-Latin scripts and emoji (including ZWJ sequences in clean input) render unchanged."""
    html = render(source)
    assert plain_text(html) == source
    assert html == f"<p>{source}</p>"


def test_zwj_emoji_loses_joiner_after_normalise() -> None:
    """normalise() strips U+200D, so a ZWJ emoji sequence splits into its parts (documented)."""
    text, html = clean_text("family 👨\u200d👩\u200d👧")
    assert text == "family 👨👩👧"
    assert "👨👩👧" in html


def test_unicode_links() -> None:
    """Links to internationalised domains work and report their Unicode host names."""
    html = render("[a](https://例子.测试/路径) and https://例子.测试/x。")
    assert count_links(html) == 2
    assert link_domains(html) == ["例子.测试", "例子.测试"]
    assert "。</p>" in html


# -- normalise -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("e\u0301", "\u00e9"),
        ("A\u030a", "\u00c5"),
        ("\u212b", "\u00c5"),
        ("a\r\nb\rc\nd", "a\nb\nc\nd"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("nul\x00bell\x07esc\x1bdel\x7fnel\x85", "nulbellescdelnel"),
        ("zero\u200bwidth\u200cnon\u200djoiner\u2060wj\ufeffbom", "zerowidthnonjoinerwjbom"),
        ("soft\u00adhyphen", "softhyphen"),
        ("\u202eevil\u202c \u202aa\u202b\u202d", "evil a"),
        ("\u2066iso\u2067late\u2068fsi\u2069", "isolatefsi"),
        ("lrm\u200e rlm\u200f alm\u061c", "lrm rlm alm"),
        ("e\u200b\u0301", "\u00e9"),
        ("你好 😀", "你好 😀"),
        ("", ""),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    """normalise() applies NFC and removes controls, zero-width and bidi characters."""
    assert normalise(raw) == expected


# -- clean_text ----------------------------------------------------------------------------


def test_clean_text_returns_text_and_html() -> None:
    """clean_text() returns the normalised text and its rendered HTML."""
    text, html = clean_text("  Hello *e\u0301* \u200b\r\n")
    assert text == "Hello *\u00e9*"
    assert html == "<p>Hello <em>\u00e9</em></p>"


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("a", False),
        ("", False),
        ("   \n\t  ", False),
        (" a ", False),
        ("a\u200b\u200b", False),
        ("\u202ea\u202c", False),
        ("ab", True),
        ("  ab  ", True),
        ("x" * 10_000, True),
        (" " + "x" * 10_000 + "\n", True),
        ("x" * 10_001, False),
        ("x" * 10_000 + "\u200b" * 50, True),
    ],
)
def test_clean_text_length(raw: str, ok: bool) -> None:
    """The text must be 2..10,000 characters after normalising and stripping."""
    if ok:
        text, html = clean_text(raw)
        assert TEXT_BOUNDS[0] <= len(text) <= TEXT_BOUNDS[1]
        assert html.startswith("<p>")
    else:
        with pytest.raises(InvalidField) as info:
            clean_text(raw)
        assert info.value.field == "text"
        assert info.value.code == "invalid_field"


@pytest.mark.parametrize(
    ("cleaner", "field"),
    [
        (clean_text, "text"),
        (clean_author, "author"),
        (clean_email, "email"),
        (clean_website, "website"),
    ],
)
@pytest.mark.parametrize("value", [5, 1.5, b"bytes", ["x"], {"x": 1}, True, object()])
def test_non_strings_are_rejected(cleaner: object, field: str, value: object) -> None:
    """Every cleaner rejects non-string values, naming its field."""
    assert callable(cleaner)
    with pytest.raises(InvalidField) as info:
        cleaner(value)
    assert info.value.field == field
    assert info.value.message == "must be a string"


def test_clean_text_rejects_none() -> None:
    """The comment text is required."""
    with pytest.raises(InvalidField) as info:
        clean_text(None)
    assert info.value.field == "text"


# -- clean_author --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("\u200b\u202e \t", ""),
        ("Jane Doe", "Jane Doe"),
        ("  Jane \n\t  Doe  ", "Jane Doe"),
        ("Jane\r\nDoe", "Jane Doe"),
        ("<b>Bob</b>", "<b>Bob</b>"),
        ("Jos\u0065\u0301", "Jos\u00e9"),
        ("Ev\u202eil\u202c", "Evil"),
        ("张伟 😀", "张伟 😀"),
        ("x" * 64, "x" * 64),
        ("  " + "x" * 64 + "  ", "x" * 64),
    ],
)
def test_clean_author(raw: object, expected: str) -> None:
    """Author names are single-line, whitespace-collapsed plain text."""
    assert clean_author(raw) == expected


@pytest.mark.parametrize("raw", ["x" * 65, "a " * 33, "名" * 65])
def test_clean_author_too_long(raw: str) -> None:
    """Author names longer than 64 characters are rejected."""
    with pytest.raises(InvalidField) as info:
        clean_author(raw)
    assert info.value.field == "author"


# -- clean_email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("jane@example.com", "jane@example.com"),
        ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),
        ("  jane+tag@mail.example.co.uk \n", "jane+tag@mail.example.co.uk"),
        ("ja\u200bne@exa\u200bmple.com", "jane@example.com"),
        ("用户@例子.测试", "用户@例子.测试"),
        ("a@b.co", "a@b.co"),
    ],
)
def test_clean_email_valid(raw: object, expected: str) -> None:
    """Valid addresses are normalised and their domain lower-cased."""
    assert clean_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@@example.com",
        "jane@doe@example.com",
        "jane doe@example.com",
        "jane@exa mple.com",
        "jane@example.com\nBcc: x@evil.example",
        "jane\t@example.com",
        "jane@.example.com",
        "jane@example..com",
        "jane@example.com.",
        "jane@-example.com",
        "<jane@example.com>",
        'Jane "Doe"@example.com',
        "jane@[127.0.0.1]",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_clean_email_invalid(raw: str) -> None:
    """Malformed addresses are rejected, naming the email field."""
    with pytest.raises(InvalidField) as info:
        clean_email(raw)
    assert info.value.field == "email"


def test_clean_email_length_limit() -> None:
    """Addresses up to 254 characters are accepted, longer ones are not."""
    domain = ".".join(["d" * 60] * 3) + ".example"
    local = "a" * (254 - len(domain) - 1)
    assert len(clean_email(f"{local}@{domain}")) == 254
    with pytest.raises(InvalidField):
        clean_email(f"{local}a@{domain}")


# -- clean_website -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  ", ""),
        ("https://example.com", "https://example.com"),
        ("http://example.com/", "http://example.com/"),
        ("example.com", "https://example.com"),
        ("example.com/blog?x=1#top", "https://example.com/blog?x=1#top"),
        ("  www.example.com  ", "https://www.example.com"),
        ("HTTPS://Example.COM/Path", "https://example.com/Path"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("example.com:8080", "https://example.com:8080"),
        ("https://exa\u200bmple.com", "https://example.com"),
        ("https://example.com/\x00", "https://example.com/"),
        ("https://例子.测试/路径", "https://例子.测试/路径"),
        ("https://[2001:db8::1]/", "https://[2001:db8::1]/"),
    ],
)
def test_clean_website_valid(raw: object, expected: str) -> None:
    """Websites are normalised to absolute http(s) URLs."""
    assert clean_website(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "javascript://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.com",
        "mailto:jane@example.com",
        "http:example.com",
        "https:/example.com",
        "//example.com",
        "/relative/path",
        "https://",
        "https:///path",
        "https://user:pass@example.com",
        "https://user@example.com",
        "https://example.com@evil.example",
        "https://exa mple.com",
        "https://example.com/a b",
        'https://example.com/"onmouseover="alert(1)',
        "https://example.com/<script>",
        "https:\\\\evil.example",
        "https://evil.example\\@good.example",
        "https://example..com",
        "https://-example.com",
        "https://example.com:99999",
        "https://exa<mple.com",
        "https://example.com/" + "x" * 240,
        "example.com/" + "x" * 235,
    ],
)
def test_clean_website_invalid(raw: str) -> None:
    """Non-http(s), relative, credentialed or malformed websites are rejected."""
    with pytest.raises(InvalidField) as info:
        clean_website(raw)
    assert info.value.field == "website"


def test_clean_website_length_limit() -> None:
    """A website of exactly 254 characters is accepted."""
    url = "https://example.com/" + "x" * (254 - len("https://example.com/"))
    assert clean_website(url) == url


# -- link helpers and plain text -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "links", "domains"),
    [
        ("no links here", 0, []),
        ("example.com is not a link", 0, []),
        ("[a](https://Example.COM/x)", 1, ["example.com"]),
        ("https://a.example/ and https://B.example/", 2, ["a.example", "b.example"]),
        ("[a](https://a.example) [b](https://a.example)", 2, ["a.example", "a.example"]),
        ("<jane@Mail.Example>", 1, ["mail.example"]),
        ("[x](javascript:alert(1)) https://ok.example", 1, ["ok.example"]),
        ("`https://code.example`", 0, []),
        ("[a](https://a.example:8080/p)", 1, ["a.example"]),
    ],
)
def test_count_links_and_domains(source: str, links: int, domains: list[str]) -> None:
    """count_links() and link_domains() see exactly the live links."""
    html = render(source)
    assert count_links(html) == links
    assert link_domains(html) == domains


def test_plain_text() -> None:
    """plain_text() strips tags, unescapes entities and keeps block boundaries."""
    html = render(
        "Hello **world** & <friends>\n\n> quoted [link](https://a.example)\n\n- one\n- two"
    )
    assert plain_text(html) == "Hello world & <friends>\nquoted link\none\ntwo"


def test_plain_text_of_empty_html() -> None:
    """plain_text() of empty HTML is empty."""
    assert plain_text("") == ""
    assert count_links("") == 0
    assert link_domains("") == []


# -- robustness and speed ------------------------------------------------------------------


PATHOLOGICAL = [
    "https://" + "a" * 9990 + "@",
    "https://" + "a-" * 4995 + "@",
    "https://a.example/" + "." * 9980,
    "*a " * 3000,
    "[" * 5000 + "](" * 2000,
    "<" * 9000,
    ">" * 9000,
    "`" * 9000,
    "&#106;" * 1600,
    "".join("  " * i + "- x\n" for i in range(90)),
]


@pytest.mark.parametrize("source", PATHOLOGICAL)
def test_pathological_input_is_safe_and_bounded(source: str) -> None:
    """Worst-case inputs at the length limit render safely (their cost is in bench/)."""
    text, html = clean_text(source)
    assert_safe(html)


def test_deep_nesting_is_cut_off_safely() -> None:
    """Nesting beyond markdown-it's limit (20) is dropped rather than crashing or leaking."""
    html = render("> " * 25 + "deep text")
    assert_safe(html)
    assert html.count("<blockquote>") <= 20


def test_render_is_thread_safe() -> None:
    """Concurrent renders in several threads give the same result as a single thread."""
    sources = [f"**{i}** https://example.com/{i} `code {i}`\n\n> quote {i}" for i in range(40)]
    expected = [render(source) for source in sources]
    results: dict[int, list[str]] = {}

    def work(index: int) -> None:
        results[index] = [render(source) for source in sources * 5]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected * 5 for result in results.values())


def test_parser_and_cleaner_are_built_once() -> None:
    """The markdown parser is a module constant and the Cleaner is reused per thread."""
    first = sanitising._cleaner()
    render("warm up")
    assert sanitising._cleaner() is first
    assert isinstance(sanitising._MARKDOWN, sanitising.MarkdownIt)
