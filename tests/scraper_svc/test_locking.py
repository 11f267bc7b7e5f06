"""Campaign lock, overlap policies, fencing and lock-master failures, in-process."""

from __future__ import annotations

from functools import partial

from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaigns.v1 import run_pb2, schedule_pb2
from scraper_svc.store import buffer_key
from tests.scraper_svc.conftest import (
    NO_RETRIES,
    PageServer,
    Route,
    StartScraper,
    finished_run,
    lock_holders,
    run_in_state,
    run_request,
    started_workers,
)
from tests.support import PARTITIONS, eventually, pending_all

PAGE = "<html><body><h1>Offer</h1></body></html>"
BUFFER_ONE = schedule_pb2.RunLimits(overlap=schedule_pb2.OVERLAP_POLICY_BUFFER_ONE)
ALLOW_ALL = schedule_pb2.RunLimits(overlap=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL)


async def _request(
    state_redis: Redis,
    run_id: str,
    campaign: str,
    url: str,
    limits: schedule_pb2.RunLimits,
    retry: schedule_pb2.RetryPolicy | None = None,
) -> None:
    request = run_request(run_id, campaign, [url], {"t": "h1"}, limits=limits, retry=retry)
    await RunLog(state_redis, PARTITIONS).request_run(request, dedupe=False)


async def test_locking_buffer_one_waits_for_the_lock_and_skips_a_third_run(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(concurrency=4)
    pages.routes["/slow"] = Route(body=PAGE.encode(), hang=True)
    url = pages.url("/slow")
    await _request(state_redis, "r-1", "buf", url, BUFFER_ONE)
    await eventually(lambda: run_in_state(state_redis, "r-1", RunState.RUNNING), what="r-1 running")
    await _request(state_redis, "r-2", "buf", url, BUFFER_ONE)

    async def r2_waiting() -> bool:
        return await state_redis.get(buffer_key("buf")) == b"r-2"

    await eventually(r2_waiting, what="r-2 waiting for the campaign lock")
    await _request(state_redis, "r-3", "buf", url, BUFFER_ONE)
    third = await finished_run(state_redis, "r-3")
    assert third.state is RunState.SKIPPED and third.error == "overlap"
    assert await run_in_state(state_redis, "r-2", RunState.REQUESTED)  # still waiting

    pages.release.set()
    first = await finished_run(state_redis, "r-1")
    second = await finished_run(state_redis, "r-2")
    assert first.state is second.state is RunState.SUCCEEDED
    assert second.started_at_ms >= first.finished_at_ms
    assert pages.hits == {"/slow": 2}
    assert await state_redis.exists(buffer_key("buf")) == 0
    workers = await started_workers(state_redis)
    assert workers == {"r-1": "test-worker fence=1", "r-2": "test-worker fence=2"}


async def test_locking_allow_all_runs_overlap_without_a_lock(
    state_redis: Redis, pages: PageServer, lock_urls: list[str], start_scraper: StartScraper
) -> None:
    await start_scraper(concurrency=4)
    pages.routes["/slow"] = Route(body=PAGE.encode(), hang=True)
    url = pages.url("/slow")
    await _request(state_redis, "r-a", "free", url, ALLOW_ALL)
    await _request(state_redis, "r-b", "free", url, ALLOW_ALL)

    async def both_fetching() -> bool:
        return pages.in_flight == 2

    await eventually(both_fetching, what="both runs of one campaign fetching at once")
    assert await lock_holders(lock_urls, "free") == 0
    pages.release.set()
    for run_id in ("r-a", "r-b"):
        assert (await finished_run(state_redis, run_id)).state is RunState.SUCCEEDED
    assert await started_workers(state_redis) == {"r-a": "test-worker", "r-b": "test-worker"}


async def test_locking_fences_continue_above_the_last_accepted_one_after_masters_lost_data(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    # The state accepted fence 1000 for the campaign; the lock masters (fresh, as after a
    # wipe) count from 0. The next lock must still write: its fence continues above 1000.
    runs = RunLog(state_redis, PARTITIONS)
    newer = run_pb2.ScrapeResult(run_id="newer", campaign_id="wiped", url="https://x.test/")
    await runs.add_results("wiped", [newer], writer=Writer("wiped", 1000))
    await start_scraper()
    url = pages.page("/p", PAGE)
    await _request(state_redis, "r-next", "wiped", url, schedule_pb2.RunLimits(), NO_RETRIES)

    run = await finished_run(state_redis, "r-next")
    assert run.state is RunState.SUCCEEDED, run.error
    assert (await started_workers(state_redis))["r-next"] == "test-worker fence=1001"
    assert [result.run_id for result in await runs.list_results("wiped", 10)] == [
        "r-next",
        "newer",
    ]
    assert await pending_all(state_redis) == 0


async def test_locking_without_quorum_runs_wait_pending_and_complete_when_masters_return(
    state_redis: Redis,
    pages: PageServer,
    lock_urls: list[str],
    redis_stack: EmbeddedStack,
    start_scraper: StartScraper,
) -> None:
    await start_scraper(retry_delay_s=0.1, retry_max_delay_s=0.5)
    url = pages.page("/p", PAGE)
    redis_stack.locks[0].kill()
    redis_stack.locks[1].kill()
    down = [f"127.0.0.1:{master.port}" for master in redis_stack.locks[:2]]
    for n in range(2):
        await _request(state_redis, f"r-q{n}", f"q{n}", url, schedule_pb2.RunLimits())

    for run_id in ("r-q0", "r-q1"):
        waiting = await eventually(
            partial(run_in_state, state_redis, run_id, RunState.RETRY_SCHEDULED),
            what=f"{run_id} scheduled for a retry",
        )
        assert waiting.error.startswith("lock quorum unavailable: "), waiting.error
        assert all(address in waiting.error for address in down), (down, waiting.error)
    assert await pending_all(state_redis) == 2
    assert pages.hits == {} and await lock_holders(lock_urls[2:], "q0") == 0

    redis_stack.locks[1].start()
    for n in range(2):
        run = await finished_run(state_redis, f"r-q{n}")
        assert run.state is RunState.SUCCEEDED and run.error == "", run.error
    assert pages.hits == {"/p": 2}
    assert await pending_all(state_redis) == 0
