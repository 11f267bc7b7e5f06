"""What a scrape target URL must look like to be accepted: the answer is a sentence or None.

An absolute ``http``/``https`` URL of at most `MAX_URL_LENGTH` characters, without whitespace
or control characters, without credentials (``user:password@``: they would be echoed on every
read and in run errors), with a host that is an IP address or a DNS name (IDNA allowed), and a
port, when given, of 1-65535. Whether the target may be fetched (the SSRF guard) is the
scraper's decision at fetch time.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT_SUFFIX = re.compile(r":[0-9]*")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")


def _host_problem(host: str) -> str | None:
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return "has a malformed IPv6 host"
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        return "has a host name that is not a valid (internationalised) DNS name"
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "has a host name that is not a valid DNS name"
    return None


def _split(url: str) -> tuple[SplitResult, int | None]:
    parts = urlsplit(url)
    return parts, parts.port  # .port raises ValueError for a port out of range


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an acceptable scrape target, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if _FORBIDDEN.search(url):
        return "contains whitespace or a control character; percent-encode it"
    try:
        parts, port = _split(url)
    except ValueError as exc:
        return f"is not a valid URL ({str(exc)[:80]})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http(s) URL"
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@); they would be shown on reads"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "has port 0; use 1-65535"
    after_bracket = parts.netloc.partition("]")[2] if parts.netloc.startswith("[") else ""
    if after_bracket and not _PORT_SUFFIX.fullmatch(after_bracket):
        return "has a malformed IPv6 host"
    return _host_problem(parts.hostname)
