"""The scraper's /metrics endpoint, scraped over real HTTP while it runs real runs."""

from __future__ import annotations

import threading

import httpx
from redis.asyncio import Redis

from campaign_common.localstack.embedded import free_port
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaigns.v1 import schedule_pb2
from tests.scraper_svc.conftest import (
    PageServer,
    StartScraper,
    finished_run,
    run_request,
)
from tests.support import PARTITIONS, metric_sample

SUCCEEDED = 'campaigns_scraper_runs_total{outcome="succeeded"}'
RETRIED = 'campaigns_scraper_runs_total{outcome="retry_scheduled"}'
DEAD = 'campaigns_scraper_dead_letters_total{cause="attempts"}'
FAILED = 'campaigns_scraper_runs_total{outcome="failed"}'
ACQUIRED = "campaigns_scraper_lock_acquire_seconds_count"
DURATION = "campaigns_scraper_run_duration_seconds_count"


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.text


async def test_metrics_count_outcomes_retries_dead_letters_and_locks(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    port = free_port()
    await start_scraper(metrics_port=port, retry_poll_ms=20)
    url = f"http://127.0.0.1:{port}/metrics"
    before = await _scrape(url)
    runs = RunLog(state_redis, PARTITIONS)
    policy = schedule_pb2.RetryPolicy(max_attempts=2, initial_delay_seconds=0.05, jitter=0)
    ok, down = pages.page("/ok", "<h1>x</h1>"), pages.page("/down", "no", status=503)
    gone = pages.page("/gone", "no", status=404)
    for run_id, page in (("r-ok", ok), ("r-down", down), ("r-gone", gone)):
        await runs.request_run(run_request(run_id, run_id, [page], {}, retry=policy), dedupe=False)
    states = {
        run_id: (await finished_run(state_redis, run_id)).state
        for run_id in ("r-ok", "r-down", "r-gone")
    }
    assert states == {
        "r-ok": RunState.SUCCEEDED,
        "r-down": RunState.DEAD_LETTERED,
        "r-gone": RunState.FAILED,
    }

    after = await _scrape(url)
    for series, grew_by in (
        (SUCCEEDED, 1),
        (RETRIED, 1),
        (DEAD, 1),
        (FAILED, 1),
        (ACQUIRED, 4),
        (DURATION, 4),
    ):
        assert metric_sample(after, series) - metric_sample(before, series) == grew_by, series
    assert "campaigns_scraper_runs_in_flight 0.0" in after


class _ThreadRecordingEndpoint:
    """The scraper's endpoint, noting which thread stops it (its stop blocks that thread)."""

    def __init__(self, endpoint: object) -> None:
        self._endpoint = endpoint
        self.stopped_on: threading.Thread | None = None

    def stop(self) -> None:
        self.stopped_on = threading.current_thread()
        self._endpoint.stop()  # type: ignore[attr-defined]


async def test_stop_shuts_the_metrics_endpoint_down_off_the_event_loop(
    start_scraper: StartScraper,
) -> None:
    port = free_port()
    server = await start_scraper(metrics_port=port)
    recording = _ThreadRecordingEndpoint(server.metrics)
    server.metrics = recording  # type: ignore[assignment]
    await server.stop()
    assert recording.stopped_on is not None
    assert recording.stopped_on is not threading.current_thread(), "blocked the event loop"
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            await http.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.ConnectError:
            return
    raise AssertionError("the metrics endpoint still answers after stop")
