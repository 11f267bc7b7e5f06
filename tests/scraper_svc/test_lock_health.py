"""The lock-master probe against real lock masters: one killed, one hung, then back; and its
gauges on a running scraper's /metrics (masters by index, never by URL)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedStack, free_port
from campaign_common.redlock.client import Redlock
from scraper_svc.lock_health import LockProbe
from tests.scraper_svc.conftest import StartScraper
from tests.support import eventually, metric_sample


def _exported() -> tuple[float | None, list[float | None]]:
    reachable = REGISTRY.get_sample_value("campaigns_lock_masters_reachable")
    up = [
        REGISTRY.get_sample_value("campaigns_lock_master_up", {"master": str(index)})
        for index in range(3)
    ]
    return reachable, up


@pytest.fixture
async def redlock(lock_urls: list[str]) -> AsyncIterator[Redlock]:
    clients = [Redis.from_url(url) for url in lock_urls]
    client = Redlock(clients, node_timeout_s=0.2)
    yield client
    await client.aclose()
    for redis in clients:
        await redis.aclose()


async def test_lock_health_probe_follows_masters_going_and_coming_back(
    redlock: Redlock, redis_stack: EmbeddedStack
) -> None:
    probe = LockProbe(redlock, timeout_s=1.0, interval_s=0.05)
    running = asyncio.create_task(probe.run())

    async def all_up() -> bool:
        return _exported() == (3, [1, 1, 1])

    try:
        await eventually(all_up, timeout_s=10, what="every master seen up")
        redis_stack.locks[0].kill()
        hung = redis_stack.locks[2]
        assert hung.pid is not None
        os.kill(hung.pid, signal.SIGSTOP)
        try:

            async def two_gone() -> bool:
                return _exported() == (1, [0, 1, 0])

            await eventually(two_gone, timeout_s=10, what="a killed and a hung master seen down")
        finally:
            os.kill(hung.pid, signal.SIGCONT)
        redis_stack.locks[0].start()
        await eventually(all_up, timeout_s=10, what="every master seen up again")
    finally:
        probe.request_stop()
        await asyncio.wait_for(running, timeout=5)  # stops at once, mid-pause


async def test_lock_health_gauges_on_the_scrapers_metrics_name_no_url(
    start_scraper: StartScraper, lock_urls: list[str]
) -> None:
    port = free_port()
    await start_scraper(metrics_port=port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

        async def probed() -> str | None:
            text = (await http.get("/metrics")).text
            return text if "campaigns_lock_masters_reachable 3.0" in text else None

        text = await eventually(probed, timeout_s=20, what="a probe exported")
    for index in range(3):
        assert metric_sample(text, f'campaigns_lock_master_up{{master="{index}"}}') == 1
    assert metric_sample(text, 'campaigns_scraper_loop_up{loop="lock-masters-probe"}') == 1
    for url in lock_urls:
        address = url.removeprefix("redis://").split("/")[0]
        assert address not in text and f":{address.rsplit(':', 1)[1]}" not in text, "no URL"
