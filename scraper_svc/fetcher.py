"""Outbound HTTP of the scraper: one shared connection pool, caps, redirects, the SSRF guard.

Every fetch is one ``GET`` under a total deadline (``fetch_timeout_s``, covering DNS, connect,
every redirect hop and the body). Redirects (301, 302, 303, 307, 308 with a Location) are
followed here, at most ``max_redirects`` hops, and every hop must be http(s). The body is
streamed and the fetch is aborted as soon as it passes ``max_response_bytes`` (decoded,
`scraper_svc.response_body`). Only 2xx/3xx bodies are read; an error status is returned as
such and its body is not downloaded.

Requests go straight to the pool (`scraper_svc.http_pool`, httpcore's HTTP/1.1 connections on
`scraper_svc.http_stream`): URLs are parsed and joined with httpx's ``URL``, but no httpx
client sits in between (its request and response models, cookie jar and per-operation
timers cost more CPU than the fetch itself). What a fetch sends: ``Host``, ``User-Agent``,
``Accept: */*``, ``Accept-Encoding: gzip, deflate``, and ``Authorization: Basic`` when the URL
carries credentials (kept on redirects within the origin or from http to https on the same
host, dropped elsewhere). Cookies a redirect sets are sent on the following hops to the same
host of that fetch; nothing is kept from one fetch to the next (runs of different campaigns
share the worker's pool, never its cookies).

SSRF guard (`scraper_svc.target_guard`): unless ``allow_private_targets`` is set, every new
connection resolves its host, refuses non-public addresses and connects to the vetted address.

A fetch error becomes a run's error, which API clients read: it names the host and why it was
refused, never the addresses the worker resolved or connected to (`error_text`); those are
logged (a refusal at WARNING, with the address it resolved to).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import cast

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
from scraper_svc.http_stream import LoopBackend
from scraper_svc.response_body import (
    ACCEPT_ENCODING,
    Headers,
    charset,
    decode_text,
    header,
    read_body,
)
from scraper_svc.target_guard import GuardedBackend, TargetGuard

log = logging.getLogger(__name__)
# httpx's default: an idle keep-alive connection is closed after this long.
KEEPALIVE_EXPIRY_S = 5.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PROTOCOL_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
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


class Fetcher:
    """Fetches pages through one shared connection pool; close it with `aclose`."""

    def __init__(self, limits: FetchLimits, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context``: how https targets are verified (default: the certifi CAs)."""
        self._limits = limits
        backend: httpcore.AsyncNetworkBackend = LoopBackend()
        if not limits.allow_private_targets:
            backend = GuardedBackend(TargetGuard(), backend)
        self._pool = HostPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            network_backend=backend,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_connections,
            keepalive_expiry_s=KEEPALIVE_EXPIRY_S,
        )
        self._user_agent = limits.user_agent.encode()

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def fetch(self, url: str, *, byte_budget: int | None = None) -> Page:
        """The page at ``url``; FetchError (message starts with ``GET <url>:``) otherwise.

        ``byte_budget`` is what is left of the run's byte budget: a body larger than that
        raises `ByteBudgetExceeded` as soon as the excess is read. A URL that does not parse
        raises httpx's ``InvalidURL`` (or ``ValueError``), as before any request.
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
        target = httpx.URL(url)
        timeout = self._limits.timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(url, target, byte_budget)
        except (TimeoutError, httpcore.TimeoutException):
            raise FetchTimeout(f"GET {url}: timeout after {timeout:g}s") from None
        except FetchError as exc:
            raise type(exc)(_public(url, f"GET {url}: {exc}")) from exc
        except _PROTOCOL_ERRORS as exc:
            raise FetchError(_public(url, f"GET {url}: {_describe(exc)}")) from exc

    async def _follow(self, url: str, target: httpx.URL, byte_budget: int | None) -> Page:
        hop = _Hop(target, _authorization(target), {})
        for hops in range(self._limits.max_redirects + 1):
            _check_target(hop.url, redirected=hops > 0)
            response = await self._pool.handle_async_request(self._request(hop))
            try:
                location = header(response.headers, b"location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    return await self._read(url, hop.url, response, byte_budget)
                hop = hop.redirected(location, response.headers)
            finally:
                await response.aclose()
        raise FetchError(
            f"more than {self._limits.max_redirects} redirects (SCRAPER_MAX_REDIRECTS)"
        )

    def _request(self, hop: _Hop) -> httpcore.Request:
        url = hop.url
        headers = [
            (b"Host", url.netloc),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", ACCEPT_ENCODING),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", self._user_agent),
        ]
        if hop.authorization:
            headers.append((b"Authorization", hop.authorization))
        if hop.cookies:
            cookies = "; ".join(f"{name}={value}" for name, value in hop.cookies.items())
            headers.append((b"Cookie", cookies.encode("latin-1", "replace")))
        return httpcore.Request(
            b"GET",
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=headers,
        )

    async def _read(
        self, url: str, final: httpx.URL, response: httpcore.Response, byte_budget: int | None
    ) -> Page:
        body = b""
        if response.status < 400:
            body = await self._body(response, byte_budget)
        text = decode_text(body, charset(response.headers)) if body else ""
        return Page(url, str(final), response.status, text, now_ms(), len(body))

    async def _body(self, response: httpcore.Response, byte_budget: int | None) -> bytes:
        cap = self._limits.max_response_bytes
        too_large: FetchError = ResponseTooLarge(
            f"response larger than {cap} bytes (raise SCRAPER_MAX_RESPONSE_BYTES to allow it)"
        )
        if byte_budget is not None and byte_budget < cap:
            cap = byte_budget
            too_large = ByteBudgetExceeded(f"response larger than the {cap} bytes left")
        declared = (header(response.headers, b"content-length") or b"").decode("latin-1")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        stream = cast(AsyncIterable[bytes], response.stream)
        return await read_body(response.headers, stream, cap, too_large)


@dataclass(frozen=True)
class _Hop:
    """One request of a fetch: its URL, the credentials and cookies it carries."""

    url: httpx.URL
    authorization: bytes | None
    cookies: dict[str, str]

    def redirected(self, location: bytes, headers: Headers) -> _Hop:
        try:
            url = httpx.URL(location.decode("latin-1"))
        except (httpx.InvalidURL, ValueError) as exc:
            raise FetchError(f"invalid URL in the Location header: {exc}") from None
        if url.scheme and not url.host:  # "http:/path": a malformed absolute form
            url = url.copy_with(host=self.url.host)
        if url.is_relative_url:
            url = self.url.join(url)
        if self.url.fragment and not url.fragment:
            url = url.copy_with(fragment=self.url.fragment)
        same_host = url.host == self.url.host
        cookies = {**self.cookies, **_set_cookies(headers)} if same_host else {}
        keeps_credentials = _same_origin(self.url, url) or _upgraded(self.url, url)
        return _Hop(url, self.authorization if keeps_credentials else None, cookies)


def _same_origin(before: httpx.URL, after: httpx.URL) -> bool:
    return (before.scheme, before.host, before.port) == (after.scheme, after.host, after.port)


def _upgraded(before: httpx.URL, after: httpx.URL) -> bool:
    """From http on its default port to https on its default port, same host."""
    return (before.scheme, before.port, after.scheme, after.port) == (
        "http",
        None,
        "https",
        None,
    ) and before.host == after.host


def _authorization(url: httpx.URL) -> bytes | None:
    """Basic credentials from the URL's user info, as httpx sends them."""
    if not url.username and not url.password:
        return None
    pair = f"{url.username}:{url.password or ''}".encode()  # both unquoted by httpx
    return b"Basic " + base64.b64encode(pair)


def _set_cookies(headers: Headers) -> dict[str, str]:
    """Name and value of each Set-Cookie (attributes ignored: they live for one fetch)."""
    cookies: dict[str, str] = {}
    for key, value in headers:
        if key == b"set-cookie":
            pair = value.decode("latin-1").split(";", 1)[0]
            name, sep, content = pair.partition("=")
            if sep and name.strip():
                cookies[name.strip()] = content.strip()
    return cookies


def _public(url: str, message: str) -> str:
    """``message`` without the addresses the client did not give; the full one is logged."""
    public = withhold_addresses(message, url_hosts([url]))
    if public != message:
        log.info("fetch failed: %s", message.replace(url, without_query(url)))
    return public


def _check_target(url: httpx.URL, *, redirected: bool) -> None:
    hop = f"redirect to {url}: " if redirected else ""
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "a URL without a scheme"
        raise TargetRefused(f"{hop}refused: only http and https URLs are fetched, not {scheme}")
    if not url.host:
        raise TargetRefused(f"{hop}refused: the URL names no host")


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpcore.ConnectError):
        return f"connection failed: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
