"""Fixtures of the scraper tests: a real HTTP page server and an in-process scraper."""

from __future__ import annotations

import http.server
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from campaign_common.runlog import RunLog, RunRecord, RunState
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from scraper_svc.config import ScraperSettings
from scraper_svc.server import ScraperServer
from tests.support import eventually

FINISHED = {RunState.SUCCEEDED, RunState.FAILED, RunState.SKIPPED}


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/html; charset=utf-8"),)
    # False: no content-length, the body ends when the connection closes (HTTP/1.0).
    declare_length: bool = True
    # Answer only once the test releases the page (a page that hangs).
    hang: bool = False


@dataclass
class PageServer:
    """A real HTTP/1.0 server on 127.0.0.1 (port 0) serving ``routes``; counts requests."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    user_agents: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pages.hits[self.path] = pages.hits.get(self.path, 0) + 1
                pages.user_agents.append(self.headers.get("user-agent", ""))
                route = pages.routes.get(self.path, Route(404, b"not found"))
                if route.hang:
                    pages.release.wait(timeout=30)
                try:
                    self.send_response(route.status)
                    for name, value in route.headers:
                        self.send_header(name, value)
                    if route.declare_length:
                        self.send_header("content-length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the scraper gave up on this page, as the test wanted

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def page(self, path: str, html: str, status: int = 200) -> str:
        self.routes[path] = Route(status, html.encode())
        return self.url(path)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def pages() -> Iterator[PageServer]:
    server = PageServer()
    try:
        yield server
    finally:
        server.close()


def scraper_settings(state_url: str, lock_urls: list[str], **overrides: object) -> ScraperSettings:
    values: dict[str, object] = {
        "state_redis_url": state_url,
        "lock_redis_urls": lock_urls,
        "consumer_name": "test-worker",
        "block_ms": 100,
        "lock_node_timeout_s": 0.5,
        "fetch_timeout_s": 5.0,
        "allow_private_targets": True,
        "shutdown_grace_s": 2.0,
        "log_json": False,
        **overrides,
    }
    return ScraperSettings(**values)  # type: ignore[arg-type]


StartScraper = Callable[..., Awaitable[ScraperServer]]


@pytest.fixture
async def start_scraper(state_url: str, lock_urls: list[str]) -> AsyncIterator[StartScraper]:
    """Starts in-process scrapers (settings overridable); every one is stopped afterwards."""
    started: list[ScraperServer] = []

    async def start(**overrides: object) -> ScraperServer:
        server = ScraperServer(scraper_settings(state_url, lock_urls, **overrides))
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.stop()


def run_request(
    run_id: str, campaign_id: str, urls: list[str], selectors: dict[str, str]
) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id="sched-1",
        campaign_id=campaign_id,
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
        scrape=schedule_pb2.ScrapeSpec(urls=urls, selectors=selectors),
    )


async def finished_run(state_redis: Redis, run_id: str, timeout_s: float = 15.0) -> RunRecord:
    """The run once it reached a final state (polled under a deadline)."""
    runs = RunLog(state_redis)

    async def probe() -> RunRecord | None:
        run = await runs.get_run(run_id)
        return run if run is not None and run.state in FINISHED else None

    return await eventually(probe, timeout_s=timeout_s, what=f"run {run_id} to finish")
