"""The scraper's background loops are supervised: a crashing retry pump is restarted without
taking the consumer down, a crashing consumer stops the process, /healthz tells which."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from campaign_common.localstack.embedded import free_port
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.supervisor import Backoff, Loop, LoopFailed
from campaigns.v1 import schedule_pb2
from scraper_svc.consumer import RunConsumer
from scraper_svc.pump import RetryPump
from scraper_svc.server import ScraperServer
from scraper_svc.store import ScraperStore
from tests.scraper_svc.conftest import (
    PageServer,
    Route,
    finished_run,
    run_request,
    scraper_settings,
)
from tests.support import PARTITIONS, eventually, metric_sample

RESTARTS = 'campaigns_scraper_loop_restarts_total{loop="retry-pump"}'


class _FaultyRetryQueue:
    """The retry pump's store, raising a non-Redis error (a bug) while ``owner.faulty``."""

    def __init__(self, owner: InjectedFaultScraper, real: ScraperStore) -> None:
        self._owner = owner
        self._real = real

    async def move_due_retries(self, limit: int) -> int:
        if self._owner.faulty:
            raise ValueError("injected fault in the retry pump")
        return await self._real.move_due_retries(limit)


class InjectedFaultScraper(ScraperServer):
    """The real retry pump over a store that fails on demand; the real consumer."""

    loop_backoff = Backoff(initial_s=0.2, max_s=0.2)
    faulty = False

    def _loops(self, consumers: list[RunConsumer], pump: RetryPump) -> list[Loop]:
        assert self._store is not None
        faulty_pump = RetryPump(
            _FaultyRetryQueue(self, self._store),
            interval_s=self.settings.retry_poll_ms / 1000,
        )
        real = [loop for loop in super()._loops(consumers, pump) if loop.name != "retry-pump"]
        return [*real, Loop("retry-pump", faulty_pump.run, faulty_pump.request_stop)]


async def _healthz(http: httpx.AsyncClient) -> tuple[int, str]:
    reply = await http.get("/healthz")
    return reply.status_code, reply.text


@pytest.fixture
async def faulty_scraper(
    state_url: str, lock_urls: list[str]
) -> AsyncIterator[InjectedFaultScraper]:
    server = InjectedFaultScraper(
        scraper_settings(state_url, lock_urls, metrics_port=free_port(), retry_poll_ms=20)
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_crashing_retry_pump_is_restarted_and_healthz_reports_it_meanwhile(
    faulty_scraper: InjectedFaultScraper, state_redis: Redis, pages: PageServer
) -> None:
    server = faulty_scraper
    runs = RunLog(state_redis, PARTITIONS)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.settings.metrics_port}", timeout=5
    ) as http:
        assert await _healthz(http) == (200, "ok\n")
        text = (await http.get("/metrics")).text
        for loop in (
            *(f"runs-consumer-{p.index}" for p in PARTITIONS),
            "retry-pump",
        ):  # every label value exists from the start
            assert f'campaigns_scraper_loop_up{{loop="{loop}"}} 1.0' in text
            assert f'campaigns_scraper_loop_restarts_total{{loop="{loop}"}} ' in text
        before = metric_sample(text, RESTARTS)

        server.faulty = True

        async def unhealthy() -> bool:
            status, body = await _healthz(http)
            return status == 503 and "retry-pump" in body

        await eventually(unhealthy, timeout_s=10, what="/healthz 503 while the pump is down")
        # The consumer is not taken down with it: runs still run.
        ok = pages.page("/ok", "<h1>fine</h1>")
        await runs.request_run(run_request("r-during", "c-during", [ok], {}), dedupe=False)
        assert (await finished_run(state_redis, "r-during")).state is RunState.SUCCEEDED

        server.faulty = False

        async def healthy() -> bool:
            return await _healthz(http) == (200, "ok\n")

        await eventually(healthy, timeout_s=10, what="/healthz 200 after the restart")
        text = (await http.get("/metrics")).text
        assert metric_sample(text, RESTARTS) - before >= 1
        assert metric_sample(text, 'campaigns_scraper_loop_up{loop="retry-pump"}') == 1
    # The restarted pump moves retries again: a page that fails once succeeds on attempt 2.
    pages.routes["/flaky"] = Route(200, b"<h1>later</h1>", fail_first=1)
    policy = schedule_pb2.RetryPolicy(max_attempts=2, initial_delay_seconds=0.05, jitter=0)
    request = run_request("r-after", "c-after", [pages.url("/flaky")], {}, retry=policy)
    await runs.request_run(request, dedupe=False)
    finished = await finished_run(state_redis, "r-after")
    assert (finished.state, finished.attempt) == (RunState.SUCCEEDED, 2)


class CrashingConsumerScraper(ScraperServer):
    """The consumer loop fails at once (a bug); the real retry pump beside it."""

    def _loops(self, consumers: list[RunConsumer], pump: RetryPump) -> list[Loop]:
        async def crash() -> None:
            raise ValueError("injected fault in the consumer loop")

        return [
            Loop("runs-consumer-0", crash, consumers[0].request_stop, fatal=True),
            Loop("retry-pump", pump.run, pump.request_stop),
        ]


async def test_a_crashing_consumer_stops_the_pump_and_ends_serving_with_the_error(
    state_url: str, lock_urls: list[str]
) -> None:
    server = CrashingConsumerScraper(
        scraper_settings(state_url, lock_urls, metrics_port=free_port())
    )
    await server.start()
    try:
        with pytest.raises(LoopFailed) as raised:
            await asyncio.wait_for(server.serve_until(asyncio.Event()), 10)
        assert isinstance(raised.value.__cause__, ValueError)
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.get(f"http://127.0.0.1:{server.settings.metrics_port}/healthz")
        assert reply.status_code == 503 and "runs-consumer" in reply.text
    finally:
        await asyncio.wait_for(server.stop(), 10)
