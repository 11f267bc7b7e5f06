"""Outbound HTTP of the scraper: one shared httpx client, caps, and the SSRF guard.

Every fetch is one ``GET`` under a total deadline (``fetch_timeout_s``, covering DNS, connect,
every redirect hop and the body). Redirects are followed here, not by httpx, at most
``max_redirects`` hops, and every hop must be http(s). The body is streamed and the fetch is
aborted as soon as it passes ``max_response_bytes``. Only 2xx/3xx bodies are read; an error
status is returned as such and its body is not downloaded.

SSRF guard: unless ``allow_private_targets`` is set, the guard runs *inside the connection*:
the HTTP client's network backend resolves the host (``loop.getaddrinfo``), refuses it if any
address is loopback, private, link-local (including the cloud metadata address), multicast,
reserved, unspecified or otherwise not global, and then connects to the vetted address itself
(TLS still verifies and sends SNI for the host name). Checking and connecting with the same
addresses closes the DNS-rebinding gap a check-then-connect guard has, and every new
connection (so every redirect hop to a new host) passes the guard.

A fetch error becomes a run's error, which API clients read: it names the host and why it was
refused, never the addresses the worker resolved or connected to (`error_text`); those are
logged here (a refusal at WARNING, with the address it resolved to).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from campaign_common.timeutil import now_ms
from scraper_svc.error_text import url_hosts, withhold_addresses
from scraper_svc.errors import (
    ByteBudgetExceeded,
    FetchError,
    FetchTimeout,
    ResponseTooLarge,
    TargetRefused,
)
from scraper_svc.fetch_telemetry import fetch_failed, fetch_span, fetched, without_query
from scraper_svc.http_pool import HostPool

log = logging.getLogger(__name__)
# httpx's default: an idle keep-alive connection is closed after this long.
KEEPALIVE_EXPIRY_S = 5.0
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


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float
    max_redirects: int
    max_response_bytes: int
    user_agent: str
    allow_private_targets: bool = False
    max_connections: int = 100


@dataclass(frozen=True)
class Page:
    """One fetched URL. ``text`` is the decoded body, empty for a status >= 400; ``size`` is
    the number of body bytes read (0 for a status >= 400)."""

    url: str
    final_url: str
    status_code: int
    text: str
    fetched_at_ms: int
    size: int = 0


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


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Network backend that connects only to addresses the guard has vetted."""

    def __init__(self, guard: TargetGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

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


class _PooledTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on `scraper_svc.http_pool.HostPool` (the guarded backend unless
    private targets are allowed)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, max_connections: int) -> None:
        super().__init__(trust_env=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx transport internals changed: cannot install the pool")
        self._pool = HostPool(  # type: ignore[assignment]
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=backend,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry_s=KEEPALIVE_EXPIRY_S,
        )


class Fetcher:
    """Fetches pages with one shared client; close it with `aclose`."""

    def __init__(self, limits: FetchLimits) -> None:
        self._limits = limits
        backend: httpcore.AsyncNetworkBackend = (
            httpcore.AnyIOBackend()
            if limits.allow_private_targets
            else _GuardedBackend(TargetGuard())
        )
        transport = _PooledTransport(backend, limits.max_connections)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(limits.timeout_s),
            follow_redirects=False,
            headers={"User-Agent": limits.user_agent},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, *, byte_budget: int | None = None) -> Page:
        """The page at ``url``; FetchError (message starts with ``GET <url>:``) otherwise.

        ``byte_budget`` is what is left of the run's byte budget: a body larger than that
        raises `ByteBudgetExceeded` as soon as the excess is read.
        """
        with fetch_span(url) as span:
            started = time.monotonic()
            try:
                page = await self._fetch(url, byte_budget)
            except FetchError as exc:
                fetch_failed(span, url, exc, time.monotonic() - started)
                raise
            fetched(span, page, time.monotonic() - started)
            return page

    async def _fetch(self, url: str, byte_budget: int | None) -> Page:
        timeout = self._limits.timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(url, byte_budget)
        except (TimeoutError, httpx.TimeoutException):
            raise FetchTimeout(f"GET {url}: timeout after {timeout:g}s") from None
        except FetchError as exc:
            raise type(exc)(_public(url, f"GET {url}: {exc}")) from exc
        except httpx.HTTPError as exc:
            raise FetchError(_public(url, f"GET {url}: {_describe(exc)}")) from exc

    async def _follow(self, url: str, byte_budget: int | None) -> Page:
        request = self._client.build_request("GET", url)
        for _ in range(self._limits.max_redirects + 1):
            _check_scheme(request.url, url)
            response = await self._client.send(request, stream=True)
            try:
                if response.next_request is None:
                    return await self._read(url, response, byte_budget)
                request = response.next_request
            finally:
                await response.aclose()
        raise FetchError(
            f"more than {self._limits.max_redirects} redirects (SCRAPER_MAX_REDIRECTS)"
        )

    async def _read(self, url: str, response: httpx.Response, byte_budget: int | None) -> Page:
        body = b""
        if response.status_code < 400:
            body = await self._body(response, byte_budget)
        text = _decode(body, response.charset_encoding) if body else ""
        return Page(url, str(response.url), response.status_code, text, now_ms(), len(body))

    async def _body(self, response: httpx.Response, byte_budget: int | None) -> bytes:
        cap = self._limits.max_response_bytes
        too_large: FetchError = ResponseTooLarge(
            f"response larger than {cap} bytes (raise SCRAPER_MAX_RESPONSE_BYTES to allow it)"
        )
        if byte_budget is not None and byte_budget < cap:
            cap = byte_budget
            too_large = ByteBudgetExceeded(f"response larger than the {cap} bytes left")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise too_large
        return bytes(body)


def _public(url: str, message: str) -> str:
    """``message`` without the addresses the client did not give; the full one is logged."""
    public = withhold_addresses(message, url_hosts([url]))
    if public != message:
        log.info("fetch failed: %s", message.replace(url, without_query(url)))
    return public


def _check_scheme(url: httpx.URL, requested: str) -> None:
    if url.scheme not in ("http", "https"):
        hop = "" if str(url) == requested else f"redirect to {url}: "
        raise TargetRefused(f"{hop}refused: only http and https URLs are fetched, not {url.scheme}")


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
