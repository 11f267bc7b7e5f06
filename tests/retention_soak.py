"""A retention soak: the scheduler and a scraper (in-process, real servers) fire a few
schedules every second with every retention in seconds, while the state Redis's key count
and memory are sampled. Used by tests/test_retention_soak.py (short) and
bench/retention_soak.py (minutes).

Every retention is ``retention_s``: run records and their indexes, written markers, results,
fences (state and lock masters), operation replies, both runs streams and the dead letters,
idle consumers, and the emission dedupe markers. The dedupe TTL is validated against the
longest jitter plus catch-up window a schedule may ask for (a day), so the soak lowers it on
a copy of the settings, past that check: its schedules have neither jitter nor a catch-up
window longer than a second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import grpc
from redis.asyncio import Redis

from campaign_common.redis_conn import make_client
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from scraper_svc.config import ScraperSettings
from scraper_svc.server import ScraperServer
from tests.support import PageServer

PAGE = "<html><body><h1>Spring sale</h1><span class='price'>9.99</span></body></html>"


@dataclass(frozen=True)
class Sample:
    at_s: float
    keys: int
    used_memory: int
    families: Counter[str]


def family(key: bytes) -> str:
    """A key's family: its name without ids (``{runs:0}:run:s1:123`` -> ``{runs:N}:run``)."""
    text = key.decode(errors="replace")
    tag, _, rest = text.partition("}:")
    tag = "{runs:N" if tag.startswith("{runs:") else tag
    return f"{tag}}}:{rest.split(':', 1)[0]}"


async def sample(redis: Redis, started: float) -> Sample:
    await redis.execute_command("MEMORY", "PURGE")
    info = await redis.info("memory")
    families: Counter[str] = Counter()
    async for key in redis.scan_iter(count=1000):
        families[family(key)] += 1
    return Sample(
        time.monotonic() - started,
        int(await redis.dbsize()),
        int(info["used_memory"]),
        families,
    )


def scheduler_settings(state_url: str, retention_s: int) -> SchedulerSettings:
    settings = SchedulerSettings(
        state_redis_url=state_url,
        host="127.0.0.1",
        port=0,
        log_block_ms=200,
        log_json=False,
        catch_up_window_s=1.0,
        partitions=2,
        run_retention_s=retention_s,
        operation_ttl_s=retention_s,
        runs_stream_retention_s=retention_s,
        run_events_retention_s=retention_s,
        dead_letters_retention_s=retention_s,
        idle_consumer_s=retention_s,
        housekeeping_interval_s=1.0,
    )
    return settings.model_copy(update={"run_dedupe_ttl_s": retention_s})


def scraper_settings(state_url: str, lock_urls: list[str], retention_s: int) -> ScraperSettings:
    return ScraperSettings(
        state_redis_url=state_url,
        lock_redis_urls=lock_urls,
        consumer_name="soak-worker",
        block_ms=100,
        allow_private_targets=True,
        log_json=False,
        partitions=2,
        lock_node_timeout_s=0.5,
        lock_ttl_ms=1_000,
        reclaim_idle_ms=1_500,
        lock_max_lease_s=retention_s / 2,
        run_retention_s=retention_s,
        operation_ttl_s=retention_s,
        shutdown_grace_s=2.0,
    )


async def add_schedules(target: str, url: str, count: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        for i in range(count):
            request = api.AddScheduledCampaignRequest(
                name=f"soak {i}",
                campaign_id=f"soak-{i}",
                schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                scrape=schedule_pb2.ScrapeSpec(urls=[url], selectors={"title": "h1"}),
            )
            await stub.AddScheduledCampaign(request, timeout=10)


@dataclass(frozen=True)
class SoakResult:
    horizon: list[Sample]
    end: list[Sample]
    runs_succeeded: int

    @staticmethod
    def _median(samples: list[Sample], attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in samples))

    @property
    def horizon_keys(self) -> float:
        return self._median(self.horizon, "keys")

    @property
    def end_keys(self) -> float:
        return self._median(self.end, "keys")

    @property
    def horizon_memory(self) -> float:
        return self._median(self.horizon, "used_memory")

    @property
    def end_memory(self) -> float:
        return self._median(self.end, "used_memory")

    def growth(self) -> dict[str, tuple[int, int]]:
        """Families with more keys at the end than at any horizon sample: (horizon max, end)."""
        grown = {}
        for name, count in self.end[-1].families.items():
            most = max(s.families.get(name, 0) for s in self.horizon)
            if count > most:
                grown[name] = (most, count)
        return grown


async def soak(
    state_url: str,
    lock_urls: list[str],
    *,
    retention_s: int,
    duration_s: float,
    schedules: int = 3,
    window_s: float | None = None,
) -> SoakResult:
    """Run the soak; samples over ``window_s`` (default: one retention) once the horizon is
    reached (two retentions after the first fire) and over the last ``window_s``."""
    window = window_s or float(retention_s)
    horizon_at = 2.0 * retention_s + 2.0
    if duration_s < horizon_at + 3 * window:
        raise ValueError(f"duration_s must be at least {horizon_at + 3 * window:g}")
    redis = make_client(state_url, timeout_s=5.0)
    scheduler = SchedulerServer(scheduler_settings(state_url, retention_s))
    scraper = ScraperServer(scraper_settings(state_url, lock_urls, retention_s))
    with PageServer({"/offer": (200, PAGE)}) as pages:
        await scheduler.start()
        try:
            await scraper.start()
            try:
                await add_schedules(f"127.0.0.1:{scheduler.port}", pages.url("/offer"), schedules)
                started = time.monotonic()
                horizon = await _samples(redis, started, horizon_at, window)
                end = await _samples(redis, started, duration_s - window, window)
                succeeded = sum(
                    count for name, count in end[-1].families.items() if name.endswith(":run")
                )
            finally:
                await scraper.stop()
        finally:
            await scheduler.stop()
            await redis.aclose()
    return SoakResult(horizon, end, succeeded)


async def _samples(redis: Redis, started: float, from_s: float, window_s: float) -> list[Sample]:
    """A sample every half second from ``from_s`` after ``started`` for ``window_s``."""
    taken: list[Sample] = []
    await asyncio.sleep(max(0.0, from_s - (time.monotonic() - started)))  # pacing the soak
    while time.monotonic() - started < from_s + window_s or not taken:
        taken.append(await sample(redis, started))
        await asyncio.sleep(0.5)  # sampling interval, not synchronisation
    return taken
