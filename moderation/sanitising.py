"""Input normalisation, markdown rendering and HTML sanitising for submitted comments."""

from __future__ import annotations

import functools
import ipaddress
import re
import threading
import unicodedata
from collections.abc import Sequence
from html import unescape as html_unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bleach.linkifier import LinkifyFilter
from bleach.sanitizer import Cleaner
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from moderation.exceptions import InvalidField

TEXT_MIN_LENGTH = 2
TEXT_MAX_LENGTH = 10_000
AUTHOR_MAX_LENGTH = 64
EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_MAX_LENGTH = 64
WEBSITE_MAX_LENGTH = 254

ALLOWED_TAGS = frozenset(
    {"p", "br", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
)
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow ugc noopener noreferrer"

# Characters removed by normalise(): C0/C1 controls except \t and \n, zero-width characters,
# the soft hyphen and bidirectional formatting controls.
_INVISIBLE = (
    [cp for cp in range(0x20) if cp not in (0x09, 0x0A)]
    + [0x7F]
    + list(range(0x80, 0xA0))
    + [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD]
    + [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
    + [0x200E, 0x200F, 0x061C]
)
_REMOVE_TABLE: dict[int, None] = dict.fromkeys(_INVISIBLE)

_WHITESPACE_OR_CONTROL_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT_ONLY_RE = re.compile(r"[0-9]{1,5}(?:[/?#].*)?", re.DOTALL)
_HOST_LABEL_RE = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")
_EMAIL_FORBIDDEN = frozenset('<>"(),;:[]\\')
_WEBSITE_FORBIDDEN = frozenset('<>"`\\')

# Bare http(s) URLs in text become links. The scheme is required (so "example.com" or
# "file.txt" in prose stays text), a URL carrying credentials is not linked at all, and
# trailing punctuation is left out of the link (bleach itself balances parentheses).
_URL_CHARS = r"""[^\s{}|\\^`<>"]"""
_URL_LAST_CHAR = r"""[^\s{}|\\^`<>".,:;!?'*\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\uff09]"""
_URL_TRAILING_PUNCTUATION = frozenset(".,:;!?'*\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\uff09")
_LINKIFY_URL_RE = re.compile(
    rf"""\(*  # opening parentheses, balanced off again by bleach
    \bhttps?://
    (?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W_](?:[\w-]*[^\W_])?  # dotted host name
    (?::[0-9]{{1,5}})?  # port
    (?![:@\w-]|\.[\w-])  # the whole host: no credentials, no partial match
    (?:[/?\#](?:{_URL_CHARS}*{_URL_LAST_CHAR})?)?  # path, query and fragment
    """,
    re.IGNORECASE | re.VERBOSE | re.UNICODE,
)


def normalise(value: str) -> str:
    """Return value in NFC with line endings unified and invisible or control characters removed."""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", value.translate(_REMOVE_TABLE))


def _require_str(field: str, value: object) -> str:
    """Return value if it is a str, otherwise raise InvalidField for field."""
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    return value


def _is_valid_hostname(host: str) -> bool:
    """Tell whether host is a DNS name made of letter/digit/hyphen labels or an IP literal."""
    if not host or len(host) > 253:
        return False
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(len(label) <= 63 and _HOST_LABEL_RE.fullmatch(label) for label in labels)


def _is_safe_href(url: str) -> bool:
    """Tell whether url is an absolute http(s) URL with a host or a mailto: address."""
    url = url.strip()
    if not url or _WHITESPACE_OR_CONTROL_RE.search(url):
        return False
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not url[len(scheme) + 1 :].startswith("//") or "@" in parts.netloc:
            return False
        return hostname is not None and _is_valid_hostname(hostname)
    if scheme == "mailto":
        return "@" in parts.path and not parts.netloc
    return False


def _render_image_as_alt_text(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """Render a markdown image as its escaped alt text instead of an <img> tag."""
    token = tokens[idx]
    return escapeHtml(self.renderInlineAsText(token.children or [], options, env))


def _render_text(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """Escape text content but leave quotes alone (they are harmless outside attributes)."""
    content = tokens[idx].content
    if "&" in content:
        content = content.replace("&", "&amp;")
    if "<" in content:
        content = content.replace("<", "&lt;")
    if ">" in content:
        content = content.replace(">", "&gt;")
    return content


def _build_markdown() -> MarkdownIt:
    """Build the markdown-it parser for the comment markdown subset."""
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "xhtmlOut": False})
    md.disable(["heading", "lheading", "hr", "html_block", "html_inline", "table"])
    md.validateLink = _is_safe_href  # type: ignore[method-assign]
    md.add_render_rule("image", _render_image_as_alt_text)
    # Fewer entities means fewer tokens for bleach's (slow, pure-Python) html5lib parser.
    md.add_render_rule("text", _render_text)
    return md


_MARKDOWN = _build_markdown()


def _allow_attribute(tag: str, name: str, value: str) -> bool:
    """Bleach attribute filter: keep only a[href] pointing at a safe absolute URL."""
    return tag == "a" and name == "href" and _is_safe_href(html_unescape(value))


class _LinkifyFilter(LinkifyFilter):
    """Bleach's linkifier, with parentheses balanced inside URLs like .../Foo_(bar))."""

    def strip_non_url_bits(self, fragment: str) -> tuple[str, str, str]:
        """Split leading '(' and unbalanced trailing ')' or punctuation off a matched URL."""
        prefix = suffix = ""
        while fragment.startswith("("):
            prefix += "("
            fragment = fragment[1:]
        while fragment:
            if fragment[-1] == ")" and fragment.count(")") > fragment.count("("):
                fragment, suffix = fragment[:-1], ")" + suffix
            elif fragment[-1] in _URL_TRAILING_PUNCTUATION:
                fragment, suffix = fragment[:-1], fragment[-1] + suffix
            else:
                break
        return fragment, prefix, suffix


def _link_callback(attrs: dict[Any, str], new: bool = False) -> dict[Any, str] | None:
    """Linkify callback: unwrap links without a safe href and force rel on the others."""
    href = attrs.get((None, "href"))
    if href is None or not _is_safe_href(html_unescape(href)):
        return None
    attrs[(None, "rel")] = LINK_REL
    return attrs


_cleaners = threading.local()


def _cleaner(linkify: bool = True) -> Cleaner:
    """Return this thread's bleach Cleaner, building it once (Cleaner is not thread-safe).

    With linkify, a filter after the sanitiser turns bare URLs into links and applies
    _link_callback to every link, old and new; without, links are not expected.
    """
    name = "linkify" if linkify else "plain"
    cleaner: Cleaner | None = getattr(_cleaners, name, None)
    if cleaner is None:
        filters = [
            functools.partial(
                _LinkifyFilter,
                callbacks=[_link_callback],
                skip_tags={"pre", "code"},
                parse_email=False,
                url_re=_LINKIFY_URL_RE,
            )
        ] if linkify else []
        cleaner = Cleaner(
            tags=ALLOWED_TAGS,
            attributes={"a": _allow_attribute},
            protocols=ALLOWED_PROTOCOLS,
            strip=True,
            strip_comments=True,
            filters=filters,
        )
        setattr(_cleaners, name, cleaner)
    return cleaner


def render(text: str) -> str:
    """Render the comment markdown subset in text to allowlisted, linkified HTML."""
    html = _MARKDOWN.render(text)
    # Only a scheme ("://" of a bare URL) or a markdown link ("<a") gives the linkifier work.
    return _cleaner(linkify="://" in html or "<a" in html).clean(html).strip()


def clean_text(value: object) -> tuple[str, str]:
    """Validate and normalise the comment body, returning (text, safe_html)."""
    text = normalise(_require_str("text", value)).strip()
    if len(text) < TEXT_MIN_LENGTH:
        raise InvalidField("text", f"must be at least {TEXT_MIN_LENGTH} characters")
    if len(text) > TEXT_MAX_LENGTH:
        raise InvalidField("text", f"must be at most {TEXT_MAX_LENGTH} characters")
    return text, render(text)


def clean_author(value: object) -> str:
    """Validate and normalise the optional author name as single-line plain text."""
    if value is None:
        return ""
    author = " ".join(normalise(_require_str("author", value)).split())
    if len(author) > AUTHOR_MAX_LENGTH:
        raise InvalidField("author", f"must be at most {AUTHOR_MAX_LENGTH} characters")
    return author


def _optional_token(field: str, value: object, max_length: int) -> str:
    """Return an optional single-token field normalised, "" when absent; check length and spaces."""
    if value is None:
        return ""
    token = normalise(_require_str(field, value)).strip()
    if len(token) > max_length:
        raise InvalidField(field, f"must be at most {max_length} characters")
    if _WHITESPACE_OR_CONTROL_RE.search(token):
        raise InvalidField(field, "must not contain spaces or control characters")
    return token


def clean_email(value: object) -> str:
    """Validate and normalise the optional e-mail address, lower-casing its domain."""
    email = _optional_token("email", value, EMAIL_MAX_LENGTH)
    if not email:
        return ""
    if email.count("@") != 1:
        raise InvalidField("email", "must contain exactly one '@'")
    local, domain = email.split("@")
    if not local:
        raise InvalidField("email", "is missing the part before '@'")
    if len(local) > EMAIL_LOCAL_MAX_LENGTH or _EMAIL_FORBIDDEN.intersection(local):
        raise InvalidField("email", "has an invalid part before '@'")
    if "." not in domain:
        raise InvalidField("email", "must have a domain name with a dot")
    if domain.endswith(".") or ":" in domain or not _is_valid_hostname(domain):
        raise InvalidField("email", "has an invalid domain name")
    return f"{local}@{domain.lower()}"


def clean_website(value: object) -> str:
    """Validate and normalise the optional website URL (http or https with a host)."""
    url = _optional_token("website", value, WEBSITE_MAX_LENGTH)
    if not url:
        return ""
    if _WEBSITE_FORBIDDEN.intersection(url):
        raise InvalidField("website", "contains characters that are not allowed in a URL")
    match = _SCHEME_RE.match(url)
    if match and url[match.end() :].startswith("//"):
        if match.group(1).lower() not in ("http", "https"):
            raise InvalidField("website", "must start with http:// or https://")
    elif match and not _PORT_ONLY_RE.fullmatch(url[match.end() :]):
        raise InvalidField("website", "must start with http:// or https://")
    elif url.startswith("/"):
        raise InvalidField("website", "must be an absolute http:// or https:// address")
    else:
        url = "https://" + url
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidField("website", "is not a valid URL") from exc
    if "@" in parts.netloc:
        raise InvalidField("website", "must not contain a user name or password")
    if not hostname:
        raise InvalidField("website", "must include a host name")
    if not _is_valid_hostname(hostname):
        raise InvalidField("website", "has an invalid host name")
    host = f"[{hostname}]" if ":" in hostname else hostname
    netloc = host if port is None else f"{host}:{port}"
    normalised = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    if len(normalised) > WEBSITE_MAX_LENGTH:
        raise InvalidField("website", f"must be at most {WEBSITE_MAX_LENGTH} characters")
    return normalised


class _Collector(HTMLParser):
    """Collect the visible text of an HTML fragment and the href of every <a> element.

    Block elements and line breaks separate the text by newlines.
    """

    _BREAKS = frozenset({"p", "br", "li", "pre", "blockquote", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Start a new line before block-level elements; record the href of a link."""
        if tag in self._BREAKS:
            self.parts.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)

    def handle_endtag(self, tag: str) -> None:
        """End block-level elements with a new line."""
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        """Keep text content."""
        self.parts.append(data)


@functools.lru_cache(maxsize=64)
def _parse(html_text: str) -> tuple[str, tuple[str, ...]]:
    """Return the visible text and the link hrefs of html_text in one pass.

    Remembered: a submission asks for its text, its links and their hosts.
    """
    collector = _Collector()
    collector.feed(html_text)
    collector.close()
    lines = (" ".join(line.split()) for line in "".join(collector.parts).split("\n"))
    return "\n".join(line for line in lines if line), tuple(collector.hrefs)


def _unicode_host(host: str) -> str:
    """Return host with punycode labels decoded, matching clean_website and clean_email hosts."""
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except UnicodeError:
                pass
        labels.append(label)
    return ".".join(labels)


def count_links(html: str) -> int:
    """Return the number of <a href> links in sanitised HTML."""
    return len(link_targets(html))


def link_targets(html: str) -> tuple[str, ...]:
    """Return the href of each link in sanitised HTML, in order."""
    return _parse(html)[1] if "<a" in html else ()


def link_domains(html: str) -> list[str]:
    """Return the lower-case (Unicode) host name of each link in sanitised HTML, in order."""
    domains: list[str] = []
    for href in link_targets(html):
        try:
            parts = urlsplit(href.strip())
            host = parts.hostname
        except ValueError:
            continue
        if parts.scheme.lower() == "mailto":
            host = parts.path.rpartition("@")[2].split("?")[0] or None
        if host:
            domains.append(_unicode_host(host.lower().rstrip(".")))
    return domains


def plain_text(html: str) -> str:
    """Return the visible text of sanitised HTML with tags stripped and entities unescaped."""
    return _parse(html)[0]
