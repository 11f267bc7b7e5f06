"""The scraper's network streams (asyncio protocols under httpcore) against real servers:
TLS verified against a given CA, bodies larger than the read buffer."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

from scraper_svc.errors import FetchError
from scraper_svc.fetcher import Fetcher, FetchLimits
from tests.conftest import StartTls
from tests.scraper_svc.conftest import PageServer, Route
from tests.tls_proxy import Pki

LIMITS = FetchLimits(
    timeout_s=5.0, max_redirects=2, max_response_bytes=4_000_000, user_agent="t",
    allow_private_targets=True,
)  # fmt: skip


@pytest.fixture
async def trusting(pki: Pki) -> AsyncIterator[Fetcher]:
    made = Fetcher(LIMITS, ssl_context=ssl.create_default_context(cafile=str(pki.ca_file)))
    yield made
    await made.aclose()


def _port(pages: PageServer) -> int:
    return int(pages.url("/").rsplit(":", 1)[1].rstrip("/"))


async def test_http_stream_fetches_https_verified_against_its_ca(
    pages: PageServer, pki: Pki, tls_in_front: StartTls, trusting: Fetcher
) -> None:
    pages.page("/secure", "<p>over TLS</p>")
    tls = tls_in_front(_port(pages), pki.server_context())
    for _ in range(3):  # a kept-alive TLS connection or a new one, the same page
        page = await trusting.fetch(f"https://127.0.0.1:{tls.port}/secure")
        assert page.status_code == 200 and page.text == "<p>over TLS</p>"
    assert pages.hits["/secure"] == 3


async def test_http_stream_refuses_a_certificate_it_cannot_verify(
    pages: PageServer, pki: Pki, tls_in_front: StartTls
) -> None:
    pages.page("/secure", "<p>over TLS</p>")
    tls = tls_in_front(_port(pages), pki.server_context())
    fetcher = Fetcher(LIMITS)  # the certifi CAs: the test CA is not among them
    try:
        with pytest.raises(FetchError, match=r"connection failed: .*CERTIFICATE_VERIFY_FAILED"):
            await fetcher.fetch(f"https://127.0.0.1:{tls.port}/secure")
    finally:
        await fetcher.aclose()
    assert "/secure" not in pages.hits


async def test_http_stream_reads_bodies_larger_than_its_buffer(
    pages: PageServer, trusting: Fetcher
) -> None:
    body = bytes(range(97, 123)) * 120_000  # about 3 MB: reading pauses and resumes
    pages.routes["/large"] = Route(body=body, headers=(("content-type", "text/plain"),))
    pages.routes["/chunked"] = Route(body=body, declare_length=False)
    for path in ("/large", "/chunked"):
        page = await trusting.fetch(pages.url(path))
        assert page.size == len(body) and page.text == body.decode()
