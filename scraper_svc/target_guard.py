"""The SSRF guard: outbound connections only to public addresses, checked where they are made.

Unless ``allow_private_targets`` is set, the guard runs *inside the connection*: the network
backend resolves the host (``loop.getaddrinfo``), refuses it if any address is loopback,
private, link-local (including the cloud metadata address), multicast, reserved, unspecified
or otherwise not global, and then connects to the vetted address itself (TLS still verifies
and sends SNI for the host name). Checking and connecting with the same addresses closes the
DNS-rebinding gap a check-then-connect guard has, and every new connection (so every redirect
hop to a new host) passes the guard.

A refusal names the host and why; the address it resolved to is logged (WARNING), never put
in the error API clients read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

import httpcore

from scraper_svc.errors import FetchError, TargetRefused

log = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "SCRAPER_ALLOW_PRIVATE_TARGETS=true"
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# Checked in this order, so an address gets its most telling name.
_CATEGORIES = (
    ("is_unspecified", "an unspecified"),
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_reserved", "a reserved"),
    ("is_private", "a private"),
)


def refusal_reason(address: IPAddress) -> str | None:
    """Why the guard refuses ``address`` (e.g. "a loopback address"), None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refusal_reason(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    for flag, name in _CATEGORIES:
        if getattr(address, flag):
            return f"{name} address"
    return None if address.is_global else "a non-global address"


class TargetGuard:
    """Resolves a host and returns its addresses only if every one of them is public."""

    async def vetted_addresses(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            reason = refusal_reason(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason is not None:
                # The address the name resolved to stays in the log (it may be internal).
                log.warning("SSRF guard refused %s: it resolves to %s, %s", host, text, reason)
                what = f"{host} is" if host == text else f"{host} resolves to"
                raise TargetRefused(
                    f"refused: {what} {reason} (set {ALLOW_SETTING} to allow private targets)"
                )
        return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Network backend that connects only to addresses the guard has vetted."""

    def __init__(self, guard: TargetGuard, inner: httpcore.AsyncNetworkBackend) -> None:
        self._guard = guard
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception = FetchError(f"no address for {host}")
        for address in await self._guard.vetted_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore backend interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("refused: unix sockets are not scrape targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
