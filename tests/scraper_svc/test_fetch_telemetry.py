"""Spans, metrics and logs of page fetches (HTTP client conventions), against a real server.

Spans are read from an in-memory exporter added to this process's tracer provider; the
cross-process span tree is tested with a real OTLP receiver in tests/test_traces_end_to_end.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from scraper_svc.errors import FetchError
from scraper_svc.fetch_telemetry import without_query
from scraper_svc.fetcher import Fetcher, FetchLimits
from tests.scraper_svc.conftest import PageServer, Route


class _Switch(SpanExporter):
    """Forwards to the current test's exporter; drops spans between these tests."""

    target: SpanExporter | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.target.export(spans) if self.target else SpanExportResult.SUCCESS


_SWITCH = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "tests/conftest.py installs the SDK provider"
    if not getattr(provider, "_fetch_test_switch", False):
        provider.add_span_processor(SimpleSpanProcessor(_SWITCH))
        setattr(provider, "_fetch_test_switch", True)  # noqa: B010
    _SWITCH.target = memory = InMemorySpanExporter()
    yield memory
    _SWITCH.target = None


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    limits = FetchLimits(
        timeout_s=0.5, max_redirects=2, max_response_bytes=10_000, user_agent="t",
        allow_private_targets=True,
    )  # fmt: skip
    client = Fetcher(limits)
    yield client
    await client.aclose()


@pytest.fixture
def pages() -> Iterator[PageServer]:
    server = PageServer(
        {
            "/ok?token=secret": Route(200, b"<h1>hi</h1>"),
            "/missing": Route(404, b"no"),
            "/slow": Route(200, b"late", hang=True),
        }
    )
    yield server
    server.close()


def _fetches(status_class: str) -> float:
    value = REGISTRY.get_sample_value(
        "campaigns_scraper_fetches_total", {"status_class": status_class}
    )
    return value or 0.0


def _only(spans: InMemorySpanExporter) -> ReadableSpan:
    [span] = spans.get_finished_spans()
    return span


async def test_a_fetch_is_a_client_span_with_http_attributes_and_a_quiet_log(
    spans: InMemorySpanExporter,
    fetcher: Fetcher,
    pages: PageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = _fetches("2xx")
    with caplog.at_level(logging.DEBUG, logger="scraper_svc.fetch_telemetry"):
        page = await fetcher.fetch(pages.url("/ok?token=secret"))
    assert page.status_code == 200
    span = _only(spans)
    assert span.name == "GET" and span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(pages.url("/").rsplit(":", 1)[1].strip("/"))
    assert span.status.status_code is StatusCode.UNSET
    assert _fetches("2xx") == before + 1
    [record] = [r for r in caplog.records if r.name == "scraper_svc.fetch_telemetry"]
    assert record.levelno == logging.DEBUG
    assert "/ok" in record.getMessage() and "secret" not in record.getMessage()


async def test_an_error_status_sets_error_with_the_status_code_as_type(
    spans: InMemorySpanExporter, fetcher: Fetcher, pages: PageServer
) -> None:
    before = _fetches("4xx")
    page = await fetcher.fetch(pages.url("/missing"))
    assert page.status_code == 404
    span = _only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "404"
    assert _fetches("4xx") == before + 1


async def test_a_fetch_without_a_response_names_its_error_type(
    spans: InMemorySpanExporter, fetcher: Fetcher, pages: PageServer
) -> None:
    before = _fetches("error")
    with pytest.raises(FetchError, match="timeout"):
        await fetcher.fetch(pages.url("/slow"))
    span = _only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "timeout"
    assert _fetches("error") == before + 1


async def test_a_refused_target_is_an_error_span(spans: InMemorySpanExporter) -> None:
    limits = FetchLimits(timeout_s=1, max_redirects=0, max_response_bytes=10, user_agent="t")
    guarded = Fetcher(limits)
    try:
        with pytest.raises(FetchError, match="refused"):
            await guarded.fetch("http://127.0.0.1:1/private")
    finally:
        await guarded.aclose()
    assert dict(_only(spans).attributes or {})["error.type"] == "TargetRefused"


def test_urls_in_logs_lose_query_fragment_and_credentials() -> None:
    assert without_query("https://u:p@example.com:8443/a/b?x=1#f") == "https://example.com:8443/a/b"
    assert without_query("http://[::1]/p?q") == "http://[::1]/p"
