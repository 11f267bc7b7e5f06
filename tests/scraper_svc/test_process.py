"""`python -m scraper_svc` as a real process: configured by env, runs a run, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from tests.scraper_svc.conftest import PageServer, finished_run, run_request
from tests.support import PARTITIONS, ServiceProcess, descendants, eventually

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
        runs = RunLog(state_redis, PARTITIONS)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _consumers(redis: Redis) -> set[str]:
    try:
        rows = await redis.xinfo_consumers(PARTITIONS[0].runs_stream, SCRAPER_GROUP)
    except ResponseError:  # no group yet
        return set()
    return {row["name"].decode() for row in rows}  # every worker reads every partition


async def test_process_runs_several_workers_restarts_a_dead_one_and_stops_them_all(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    env = {
        "SCRAPER_STATE_REDIS_URL": state_url,
        "SCRAPER_LOCK_REDIS_URLS": json.dumps(lock_urls),
        "SCRAPER_ALLOW_PRIVATE_TARGETS": "true",
        "SCRAPER_BLOCK_MS": "100",
        "SCRAPER_CONSUMER_NAME": "multi",
        "SCRAPER_PROCESSES": "2",
    }
    process = ServiceProcess("scraper_svc", env).start()
    try:
        names = {"multi-0", "multi-1"}

        async def both_joined() -> bool:
            return names <= await _consumers(state_redis)

        await eventually(both_joined, timeout_s=30, what="both workers in the group")
        children = descendants(process.pid)
        assert len(children) == 2, process.logs()
        victim = min(children)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> set[int] | None:
            now = descendants(process.pid)
            return now if len(now) == 2 and victim not in now else None

        await eventually(replaced, timeout_s=30, what="the dead worker restarted")
        url = pages.page("/m", "<h1>many</h1>")
        await RunLog(state_redis, PARTITIONS).request_run(
            run_request("r-multi", "c", [url], {"h": "h1"}), dedupe=False
        )
        run = await finished_run(state_redis, "r-multi", timeout_s=30)
        assert run.state is RunState.SUCCEEDED, process.logs()

        workers = descendants(process.pid)
        assert process.terminate(timeout_s=30) == 0, process.logs()
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived its parent"
        assert "scraper stopped" in process.logs()
    finally:
        process.close()
