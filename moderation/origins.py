"""Browser origins (scheme://host[:port]) in the one form browsers send in the Origin header.

Sites store the origins allowed to call the API; a request's Origin header is compared with
them. Both go through ``normalise`` so that ``https://Blog.Example:443/`` saved by a person
matches the ``https://blog.example`` a browser sends, and ``https://中文.example`` matches
``https://xn--fiq228c.example``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from functools import lru_cache

DEFAULT_PORTS = {"http": 80, "https": 443}
EXAMPLE = "https://blog.example"
# Longer than any real origin (a 253-character host, a scheme and a port).
MAX_LENGTH = 400
# Characters browsers treat as label dots in host names (ideographic and full-width stops).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class InvalidOrigin(ValueError):
    """A value that is not an origin; the message says what is wrong, for a person."""


def _refuse(value: str, why: str) -> InvalidOrigin:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return InvalidOrigin(f"{shown!r} is not an origin like {EXAMPLE}: {why}")


def _label(label: str) -> str:
    """Return one host label in ASCII: lower-cased, non-ASCII labels as IDNA (xn--) labels."""
    mapped = unicodedata.normalize("NFKC", label).lower()
    if mapped.isascii():
        return mapped
    # Lower-case + NFKC is the UTS #46 mapping browsers apply for all but a few rare letters.
    return "xn--" + mapped.encode("punycode").decode("ascii")


def _host(value: str, host: str) -> str:
    if ":" in host:  # an IPv6 literal, without its brackets (and never with a zone)
        try:
            if "%" in host:
                raise ValueError(host)
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise _refuse(value, "the IPv6 address is not valid") from None
    labels = host.translate(_DOTS).split(".")
    # A fully qualified name's final dot is kept: browsers send it as typed.
    tail = "." if len(labels) > 1 and labels[-1] == "" else ""
    try:
        encoded = [_label(label) for label in (labels[:-1] if tail else labels)]
    except UnicodeError:
        raise _refuse(value, "the host name is not valid") from None
    if not all(_LABEL_RE.fullmatch(label) for label in encoded):
        raise _refuse(value, "the host name is not valid")
    joined = ".".join(encoded) + tail
    if len(joined) > 253:
        raise _refuse(value, "the host name is too long")
    return joined


def normalise(value: str) -> str:
    """Return an origin as browsers send it: scheme://host[:port], or raise InvalidOrigin.

    The scheme and host are lower-cased, a non-ASCII host is IDNA-encoded and the scheme's
    default port is dropped. A trailing "/" is accepted; any other path, a query, a fragment,
    a user name or password, spaces and schemes other than http and https are refused.
    """
    value = value.strip()
    if not value:
        raise _refuse(value, "it is empty")
    if len(value) > MAX_LENGTH:
        raise _refuse(value, "it is too long")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise _refuse(value, "it contains spaces or invisible characters")
    scheme = value.partition("://")[0].lower()
    if "://" not in value or scheme not in DEFAULT_PORTS:
        raise _refuse(value, "it must start with http:// or https://")
    if "?" in value or "#" in value:
        raise _refuse(value, "an origin has no query or fragment")
    try:
        parts = urllib.parse.urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise _refuse(value, "the host name or port is not valid") from None
    if parts.path not in ("", "/"):
        raise _refuse(value, "an origin has no path")
    if "@" in parts.netloc:
        raise _refuse(value, "an origin has no user name or password")
    if not host:
        raise _refuse(value, "it has no host name")
    if port == 0:
        raise _refuse(value, "the port must be a number from 1 to 65535")
    host = _host(value, host)
    if port is not None and port != DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


@lru_cache(maxsize=2048)
def canonical(value: str) -> str | None:
    """Return the normalised origin, or None if the value is not an origin (cached)."""
    try:
        return normalise(value)
    except InvalidOrigin:
        return None


def normalise_all(values: Iterable[str]) -> list[str]:
    """Return the non-empty values normalised, duplicates dropped, or raise InvalidOrigin."""
    out: list[str] = []
    for value in values:
        if not value.strip():
            continue
        origin = normalise(value)
        if origin not in out:
            out.append(origin)
    return out


def allows(allowed: Iterable[str] | None, origin: str) -> bool:
    """Return whether a request's Origin header is one of the allowed origins.

    Stored values are normalised here too, so origins saved before normalising still match.
    """
    wanted = canonical(origin)
    return wanted is not None and any(canonical(o) == wanted for o in allowed or ())


def same(first: str, second: str) -> bool:
    """Return whether two values are the same origin (False if either is not an origin)."""
    one = canonical(first)
    return one is not None and one == canonical(second)
