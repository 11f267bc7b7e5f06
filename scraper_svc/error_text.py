"""What a run's error may say: it reaches API clients (GetRun, ListRuns, dead letters, REST and
the dashboard), so it names what went wrong but never an address the client did not give.

A refused or failed fetch may carry addresses the worker learnt itself: what a host name
resolved to, the peer of a failed connection, the target of a redirect. Those can be internal
(the reason the SSRF guard refused them), so `withhold_addresses` replaces every IP literal in
an error text that is not the host of a URL the client asked for; the full text goes to the
worker's log only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

WITHHELD = "<address withheld>"
# Candidates only; each is checked with `ipaddress` before it is replaced.
_IPV4 = r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])"
_IPV6 = r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?:%\w+)?(?![\w:])"
_CANDIDATE = re.compile(f"{_IPV4}|{_IPV6}")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def url_hosts(urls: Iterable[str]) -> set[str]:
    """The hosts of ``urls`` (what a client may see again in an error about them)."""
    hosts: set[str] = set()
    for url in urls:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if host:
            hosts.add(host)
    return hosts


def withhold_addresses(text: str, given_hosts: Iterable[str]) -> str:
    """``text`` with every IP address that is not one of ``given_hosts`` replaced."""
    given = {address for host in given_hosts if (address := _address(host)) is not None}

    def replace(match: re.Match[str]) -> str:
        address = _address(match.group(0))
        if address is None or address in given:
            return match.group(0)
        return WITHHELD

    return _CANDIDATE.sub(replace, text)
