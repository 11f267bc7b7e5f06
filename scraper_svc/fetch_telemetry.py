"""Span, metrics and log line of one fetch (OpenTelemetry HTTP client conventions).

The CLIENT span is named after the method (``GET``): method, ``url.full``, ``server.address``
and ``server.port``, then ``http.response.status_code``. A status >= 400 or a fetch that got
no response sets status ERROR with ``error.type`` (the status code, or the error's class).
The log line is at DEBUG and never shows the query string (it may carry tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.trace import Span, SpanKind

from campaign_common.observability.telemetry import mark_error, tracer
from scraper_svc import metrics
from scraper_svc.errors import FetchError, FetchTimeout

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def without_query(url: str) -> str:
    """``url`` without user info, query string and fragment: safe for logs (a URL that does
    not even split is shown as such, never raised from a log line)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a malformed port raises here, not later)
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client_attributes(url: str) -> dict[str, str | int]:
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": "GET",
        "url.full": without_query(url) + (f"?{parts.query}" if parts.query else ""),
        "server.address": parts.hostname or "",
    }
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if port is not None:
        attributes["server.port"] = port
    return attributes


@contextmanager
def fetch_span(url: str) -> Iterator[Span]:
    with _tracer.start_as_current_span(
        "GET", kind=SpanKind.CLIENT, attributes=client_attributes(url)
    ) as span:
        yield span


def status_class(status_code: int) -> str:
    return f"{status_code // 100}xx" if 100 <= status_code < 600 else "error"


def fetched(span: Span, page: object, duration_s: float) -> None:
    """A response came back (``page`` is a `scraper_svc.fetcher.Page`)."""
    status_code = int(getattr(page, "status_code", 0))
    size = int(getattr(page, "size", 0))
    span.set_attribute("http.response.status_code", status_code)
    span.set_attribute("http.response.body.size", size)
    if status_code >= 400:
        mark_error(span, str(status_code))
    metrics.FETCH_STATUS_CLASSES[status_class(status_code)].inc()
    metrics.FETCH_BYTES.inc(size)
    metrics.FETCH_DURATION.observe(duration_s)
    log.debug(
        "fetched %s: %d, %d bytes in %.0f ms",
        without_query(str(getattr(page, "url", ""))),
        status_code,
        size,
        duration_s * 1000,
    )


def fetch_failed(span: Span, url: str, exc: FetchError, duration_s: float) -> None:
    """No usable response: refused, timed out, too large, connection failed ..."""
    mark_error(span, error_type(exc), str(exc).replace(url, without_query(url)))
    metrics.FETCH_STATUS_CLASSES["error"].inc()
    metrics.FETCH_DURATION.observe(duration_s)
    log.debug(
        "fetch of %s failed after %.0f ms: %s",
        without_query(url),
        duration_s * 1000,
        error_type(exc),
    )


def error_type(exc: FetchError) -> str:
    if isinstance(exc, FetchTimeout):
        return "timeout"
    cause = exc.__cause__
    return type(cause if cause is not None else exc).__name__
