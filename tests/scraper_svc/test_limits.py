"""Execution limits, each shown enforced by an in-process scraper against real servers."""

from __future__ import annotations

import itertools

from redis.asyncio import Redis

from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.timeutil import now_ms
from campaigns.v1 import schedule_pb2
from scraper_svc.semaphore import ClusterSemaphore
from tests.scraper_svc.conftest import (
    NO_RETRIES,
    PageServer,
    Route,
    StartScraper,
    finished_run,
    run_in_state,
    run_request,
    started_workers,
)
from tests.support import PARTITIONS, eventually, pending_all

PAGE = "<html><body><h1>Offer</h1></body></html>"
Limits = schedule_pb2.RunLimits


async def _request(
    state_redis: Redis,
    run_id: str,
    campaign: str,
    urls: list[str],
    *,
    limits: schedule_pb2.RunLimits | None = None,
    scheduled_for_ms: int | None = None,
    retry: schedule_pb2.RetryPolicy | None = None,
) -> None:
    request = run_request(
        run_id,
        campaign,
        urls,
        {"t": "h1"},
        limits=limits,
        scheduled_for_ms=scheduled_for_ms,
        retry=retry,
    )
    await RunLog(state_redis, PARTITIONS).request_run(request, dedupe=False)


async def test_limit_start_deadline_skips_runs_picked_up_too_late(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(start_deadline_s=5)  # the worker's default; schedules override it
    url = pages.page("/p", PAGE)
    late_ms = now_ms() - 10_000
    await _request(state_redis, "r-late", "c1", [url], scheduled_for_ms=late_ms)
    await _request(
        state_redis,
        "r-late-ok",
        "c2",
        [url],
        scheduled_for_ms=late_ms,
        limits=Limits(start_deadline_seconds=60),
    )
    await _request(state_redis, "r-on-time", "c3", [url])

    late = await finished_run(state_redis, "r-late")
    assert late.state is RunState.SKIPPED and late.error == "missed start deadline"
    assert late.started_at_ms == 0
    assert (await finished_run(state_redis, "r-late-ok")).state is RunState.SUCCEEDED
    assert (await finished_run(state_redis, "r-on-time")).state is RunState.SUCCEEDED
    assert pages.hits == {"/p": 2}


async def test_limit_run_timeout_cancels_the_run(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(fetch_timeout_s=10.0)
    pages.routes["/hang"] = Route(hang=True)
    limits = Limits(run_timeout_seconds=1)
    await _request(
        state_redis, "r-timeout", "c", [pages.url("/hang")], limits=limits, retry=NO_RETRIES
    )

    run = await finished_run(state_redis, "r-timeout")
    # A timeout may pass on a later attempt: with no attempt left, the run is dead-lettered.
    assert run.state is RunState.DEAD_LETTERED and run.error == "timeout"
    assert 1000 <= run.finished_at_ms - run.started_at_ms < 3000


async def test_limit_page_budget_leaves_urls_beyond_it_unfetched(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper()
    urls = [pages.page(f"/{n}", PAGE) for n in range(3)]
    await _request(state_redis, "r-pages", "c", urls, limits=Limits(max_pages=2))

    run = await finished_run(state_redis, "r-pages")
    assert run.state is RunState.FAILED
    assert run.error.startswith("page budget exceeded: 3 URLs, at most 2 pages per run")
    assert pages.hits == {"/0": 1, "/1": 1}
    assert len(await RunLog(state_redis, PARTITIONS).list_results("c", 10)) == 2


async def test_limit_byte_budget_stops_the_run_at_the_page_that_passes_it(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(max_bytes_per_run=100_000)  # the schedule's value wins
    body = "<h1>" + "x" * 600 + "</h1>"  # 609 bytes: 391 left after the first page
    urls = [pages.page(f"/{n}", body) for n in range(3)]
    await _request(state_redis, "r-bytes", "c", urls, limits=Limits(max_bytes=1000))

    run = await finished_run(state_redis, "r-bytes")
    assert run.state is RunState.FAILED
    assert run.error.startswith("byte budget exceeded: more than 1000 bytes per run")
    assert f"GET {urls[1]}: response larger than the 391 bytes left" in run.error
    assert pages.hits == {"/0": 1, "/1": 1}  # the third URL is never requested
    [result] = await RunLog(state_redis, PARTITIONS).list_results("c", 10)
    assert result.url == urls[0]


async def test_limit_per_host_concurrency_across_runs_of_a_worker(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(concurrency=4)
    pages.routes["/slow"] = Route(body=PAGE.encode(), delay_s=0.15)
    url = pages.url("/slow")
    one = Limits(per_host_concurrency=1)
    for n in range(4):
        await _request(state_redis, f"r-one-{n}", f"c{n}", [url], limits=one)
    for n in range(4):
        assert (await finished_run(state_redis, f"r-one-{n}")).state is RunState.SUCCEEDED
    assert pages.max_in_flight == 1

    pages.max_in_flight = 0
    three = Limits(per_host_concurrency=3)
    for n in range(3):
        await _request(state_redis, f"r-three-{n}", f"c{n}", [url], limits=three)
    for n in range(3):
        assert (await finished_run(state_redis, f"r-three-{n}")).state is RunState.SUCCEEDED
    assert pages.max_in_flight > 1


async def test_limit_per_host_delay_spaces_requests_to_one_host(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper()
    urls = [pages.page(f"/{n}", PAGE) for n in range(3)]
    await _request(state_redis, "r-delay", "c", urls, limits=Limits(per_host_delay_ms=300))

    assert (await finished_run(state_redis, "r-delay")).state is RunState.SUCCEEDED
    starts = [at for _, at in pages.starts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 2 and min(gaps) >= 0.29, gaps


async def test_limit_runs_per_window_skips_runs_over_the_rate(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper()
    url = pages.page("/p", PAGE)
    limits = Limits(max_runs_per_window=2, window_seconds=3600)
    states = []
    for n in range(3):
        await _request(state_redis, f"r-rate-{n}", "rated", [url], limits=limits)
        states.append(await finished_run(state_redis, f"r-rate-{n}"))
    await _request(state_redis, "r-other", "other", [url], limits=limits)

    assert [run.state for run in states] == [
        RunState.SUCCEEDED,
        RunState.SUCCEEDED,
        RunState.SKIPPED,
    ]
    assert states[2].error == "rate limit"
    assert (await finished_run(state_redis, "r-other")).state is RunState.SUCCEEDED
    assert pages.hits == {"/p": 3}


async def test_limit_cluster_semaphore_bounds_runs_across_workers(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    workers = [
        await start_scraper(consumer_name=name, concurrency=2, max_cluster_runs=1)
        for name in ("worker-a", "worker-b")
    ]
    pages.routes["/slow"] = Route(body=PAGE.encode(), delay_s=0.2)
    for n in range(4):
        await _request(state_redis, f"r-slot-{n}", f"c{n}", [pages.url("/slow")])

    async def both_workers_busy() -> bool:
        return all(worker.in_flight > 0 for worker in workers)

    await eventually(both_workers_busy, what="runs waiting on both workers")
    for n in range(4):
        assert (await finished_run(state_redis, f"r-slot-{n}")).state is RunState.SUCCEEDED
    assert pages.max_in_flight == 1
    started_by = await started_workers(state_redis)
    assert {label.split()[0] for label in started_by.values()} == {"worker-a", "worker-b"}


async def test_limit_cluster_slot_of_a_dead_worker_expires_and_a_waiting_run_goes_on(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    dead = ClusterSemaphore(state_redis, limit=1, ttl_ms=1000, wait_s=0)
    assert await dead.take("dead-worker/run/1-0")  # never renewed, never released
    await start_scraper(max_cluster_runs=1, cluster_slot_wait_s=10)
    url = pages.page("/p", PAGE)
    await _request(state_redis, "r-after-dead", "c", [url])

    run = await finished_run(state_redis, "r-after-dead")
    assert run.state is RunState.SUCCEEDED

    async def released() -> bool:  # after the outcome is written, on the way out of the run
        return await dead.holders() == 0

    await eventually(released, what="the run's cluster slot to be released")


async def test_limit_cluster_slot_wait_leaves_the_run_pending_and_retries_it(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(
        concurrency=2, max_cluster_runs=1, cluster_slot_wait_s=0.2, retry_delay_s=0.2
    )
    pages.routes["/hang"] = Route(body=PAGE.encode(), hang=True)
    await _request(state_redis, "r-holder", "c1", [pages.url("/hang")])
    await eventually(
        lambda: run_in_state(state_redis, "r-holder", RunState.RUNNING), what="running"
    )
    await _request(state_redis, "r-waiter", "c2", [pages.url("/hang")])

    waiting = await eventually(
        lambda: run_in_state(state_redis, "r-waiter", RunState.RETRY_SCHEDULED),
        what="the second run to be scheduled for a retry",
    )
    assert waiting.error == "cluster run limit reached: all 1 slots stayed taken for 0.2 s"
    assert await pending_all(state_redis) == 2
    pages.release.set()
    assert (await finished_run(state_redis, "r-holder")).state is RunState.SUCCEEDED
    assert (await finished_run(state_redis, "r-waiter")).state is RunState.SUCCEEDED
