"""The scraper's connection pool against a real HTTP/1.1 keep-alive server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from scraper_svc.errors import ResponseTooLarge
from scraper_svc.fetcher import Fetcher, FetchLimits
from tests.scraper_svc.conftest import HttpThread

BIG = b"x" * 5000


class KeepAliveServer:
    """HTTP/1.1 with keep-alive; counts the connections it accepted and the most requests
    it had in flight; ``/slow`` waits until ``release`` is set."""

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()
        self.two_in_flight = threading.Event()
        server = self
        counting = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with counting:
                    server.connections.add(self.client_address)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    if server.in_flight >= 2:
                        server.two_in_flight.set()
                try:
                    if self.path == "/slow":
                        server.release.wait(timeout=10)
                    body = BIG if self.path == "/big" else b"<p>ok</p>"
                    self.send_response(200)
                    self.send_header("content-type", "text/html")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with counting:
                        server.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = HttpThread(Handler)

    def url(self, path: str) -> str:
        return self._http.url(path)

    def close(self) -> None:
        self.release.set()
        self._http.close()


@pytest.fixture
def keep_alive() -> Iterator[KeepAliveServer]:
    server = KeepAliveServer()
    try:
        yield server
    finally:
        server.close()


def limits(max_connections: int) -> FetchLimits:
    return FetchLimits(
        timeout_s=5.0,
        max_redirects=2,
        max_response_bytes=1000,
        user_agent="test",
        allow_private_targets=True,
        max_connections=max_connections,
    )


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    made = Fetcher(limits(2))
    try:
        yield made
    finally:
        await made.aclose()


async def test_http_pool_reuses_keep_alive_connection(
    keep_alive: KeepAliveServer, fetcher: Fetcher
) -> None:
    for _ in range(5):
        page = await fetcher.fetch(keep_alive.url("/"))
        assert page.text == "<p>ok</p>"
    assert len(keep_alive.connections) == 1


async def test_http_pool_caps_requests_in_flight(
    keep_alive: KeepAliveServer, fetcher: Fetcher
) -> None:
    fetches = [asyncio.ensure_future(fetcher.fetch(keep_alive.url("/slow"))) for _ in range(5)]
    async with asyncio.timeout(5):
        assert await asyncio.to_thread(keep_alive.two_in_flight.wait, 5)
        keep_alive.release.set()
        pages = await asyncio.gather(*fetches)
    assert [page.status_code for page in pages] == [200] * 5
    assert keep_alive.max_in_flight == 2
    assert len(keep_alive.connections) <= 2


async def test_http_pool_body_cut_short_frees_its_slot(keep_alive: KeepAliveServer) -> None:
    fetcher = Fetcher(limits(1))
    try:
        with pytest.raises(ResponseTooLarge):
            await fetcher.fetch(keep_alive.url("/big"))
        async with asyncio.timeout(5):  # the one slot came back: the next fetch goes out
            page = await fetcher.fetch(keep_alive.url("/"))
        assert page.status_code == 200
    finally:
        await fetcher.aclose()
