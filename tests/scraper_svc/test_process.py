"""`python -m scraper_svc` as a real process: configured by env, runs a run, stops on SIGTERM."""

from __future__ import annotations

import json
import time

import pytest
from redis.asyncio import Redis

from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from tests.scraper_svc.conftest import PageServer, finished_run, run_request
from tests.support import ServiceProcess

pytestmark = pytest.mark.slow


async def test_process_runs_a_run_and_stops_on_sigterm(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    env = {
        "SCRAPER_STATE_REDIS_URL": state_url,
        "SCRAPER_LOCK_REDIS_URLS": json.dumps(lock_urls),
        "SCRAPER_ALLOW_PRIVATE_TARGETS": "true",
        "SCRAPER_BLOCK_MS": "200",
        "SCRAPER_CONSUMER_NAME": "proc-worker",
    }
    process = ServiceProcess("scraper_svc", env).start()
    try:
        url = pages.page("/p", "<h1>hello</h1>")
        runs = RunLog(state_redis)
        await runs.request_run(run_request("r-proc", "c", [url], {"h": "h1"}), dedupe=False)
        run = await finished_run(state_redis, "r-proc", timeout_s=30)
        assert run.state is RunState.SUCCEEDED, process.logs()
        [result] = await runs.list_results("c", 1)
        assert result.fields[0].text == "hello"

        started = time.monotonic()
        code = process.terminate(timeout_s=15)
        assert code == 0, process.logs()
        assert time.monotonic() - started < 5
        assert "scraper stopped" in process.logs()
    finally:
        process.close()


async def test_process_refuses_to_start_without_lock_masters(state_url: str) -> None:
    process = ServiceProcess("scraper_svc", {"SCRAPER_STATE_REDIS_URL": state_url}).start()
    try:
        assert process.proc is not None
        code = process.proc.wait(timeout=30)
        assert code != 0 and "lock_redis_urls" in process.logs()
    finally:
        process.close()
