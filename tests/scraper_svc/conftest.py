"""Fixtures of the scraper tests: a real HTTP page server and an in-process scraper."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from campaign_common.redis_conn import make_client
from campaign_common.redlock.scripts import lock_key
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunRecord, RunState
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from scraper_svc.config import ScraperSettings
from scraper_svc.server import ScraperServer
from scraper_svc.store import campaign_lock_resource
from tests.support import PARTITIONS, event_run_id, eventually, run_event_bodies

FINISHED = {RunState.SUCCEEDED, RunState.FAILED, RunState.SKIPPED, RunState.DEAD_LETTERED}
# One attempt: a retryable failure is dead-lettered at once.
NO_RETRIES = schedule_pb2.RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/html; charset=utf-8"),)
    # False: no content-length, the body ends when the connection closes (HTTP/1.0).
    declare_length: bool = True
    # Answer only once the test releases the page (a page that hangs).
    hang: bool = False
    # A slow page: the server takes this long before it answers.
    delay_s: float = 0.0
    # The first this many requests get a 503 instead (a target that recovers).
    fail_first: int = 0


class HttpThread:
    """A real threading HTTP server on 127.0.0.1 (port 0), served from a daemon thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class PageServer:
    """A real HTTP/1.0 server on 127.0.0.1 (port 0) serving ``routes``; counts requests,
    records when each started (monotonic clock) and the most requests it had in flight."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    user_agents: list[str] = field(default_factory=list)
    # The request headers of each request, by path (names in lower case).
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    starts: list[tuple[str, float]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        pages = self
        counting = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with counting:
                    pages.hits[self.path] = pages.hits.get(self.path, 0) + 1
                    pages.starts.append((self.path, time.monotonic()))
                    pages.in_flight += 1
                    pages.max_in_flight = max(pages.max_in_flight, pages.in_flight)
                try:
                    self._answer()
                finally:
                    with counting:
                        pages.in_flight -= 1

            def _answer(self) -> None:
                pages.user_agents.append(self.headers.get("user-agent", ""))
                sent = {name.lower(): value for name, value in self.headers.items()}
                pages.headers.append((self.path, sent))
                route = pages.routes.get(self.path, Route(404, b"not found"))
                if pages.hits[self.path] <= route.fail_first:
                    route = Route(503, b"try later")
                if route.hang:
                    pages.release.wait(timeout=30)
                if route.delay_s:
                    time.sleep(route.delay_s)  # the server is slow; not test synchronisation
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

        self._http = HttpThread(Handler)

    def url(self, path: str) -> str:
        return self._http.url(path)

    def page(self, path: str, html: str, status: int = 200) -> str:
        self.routes[path] = Route(status, html.encode())
        return self.url(path)

    def close(self) -> None:
        self.release.set()
        self._http.close()


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
    run_id: str,
    campaign_id: str,
    urls: list[str],
    selectors: dict[str, str],
    *,
    limits: schedule_pb2.RunLimits | None = None,
    scheduled_for_ms: int | None = None,
    retry: schedule_pb2.RetryPolicy | None = None,
) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id="sched-1",
        campaign_id=campaign_id,
        scheduled_for=ms_to_timestamp(now_ms() if scheduled_for_ms is None else scheduled_for_ms),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
        scrape=schedule_pb2.ScrapeSpec(urls=urls, selectors=selectors),
        limits=limits,
        retry_policy=retry,
    )


async def run_in_state(state_redis: Redis, run_id: str, state: RunState) -> RunRecord | None:
    """The run if it is in ``state`` now (a probe for `eventually`)."""
    run = await RunLog(state_redis, PARTITIONS).get_run(run_id)
    return run if run is not None and run.state is state else None


async def run_events(state_redis: Redis, run_id: str) -> list[object]:
    """Bodies of the run events stream that concern ``run_id``, oldest first."""
    return [body for body in await run_event_bodies(state_redis) if event_run_id(body) == run_id]


async def retry_reasons(state_redis: Redis, run_id: str) -> list[str]:
    """Why each failed attempt of the run was retried (RunRetryScheduled with a due time)."""
    return [
        body.reason
        for body in await run_events(state_redis, run_id)
        if isinstance(body, events_pb2.RunRetryScheduled) and body.HasField("next_attempt_at")
    ]


async def started_workers(state_redis: Redis) -> dict[str, str]:
    """run id -> the ``worker`` field of its RunStarted event (``<name> fence=<token>``)."""
    return {
        body.run_id: body.worker
        for body in await run_event_bodies(state_redis)
        if isinstance(body, events_pb2.RunStarted)
    }


async def lock_holders(lock_urls: list[str], campaign_id: str) -> int:
    """On how many lock masters the campaign's lock key exists right now."""
    key = lock_key(campaign_lock_resource(campaign_id))
    found = 0
    for url in lock_urls:
        client = make_client(url, 1.0, retries=0)
        try:
            found += int(await client.exists(key))
        finally:
            await client.aclose()
    return found


async def finished_run(state_redis: Redis, run_id: str, timeout_s: float = 15.0) -> RunRecord:
    """The run once it reached a final state (polled under a deadline)."""
    runs = RunLog(state_redis, PARTITIONS)

    async def probe() -> RunRecord | None:
        run = await runs.get_run(run_id)
        return run if run is not None and run.state in FINISHED else None

    return await eventually(probe, timeout_s=timeout_s, what=f"run {run_id} to finish")
