"""Failed attempts and failed workers: retries with backoff, dead letters, take-overs.

In-process scrapers for the retry policy; real `python -m scraper_svc` processes killed with
SIGKILL or stopped with SIGTERM for the take-overs. Every fault test checks the same ledger:
runs requested, completed, lost (never finished) and duplicated (more than one final event).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from campaign_common.redis_conn import make_client
from campaign_common.redlock.client import Redlock
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaigns.v1 import events_pb2, schedule_pb2
from scraper_svc.store import campaign_lock_resource
from tests.scraper_svc.conftest import (
    PageServer,
    Route,
    StartScraper,
    finished_run,
    run_events,
    run_request,
)
from tests.support import (
    FINAL_EVENTS,
    PARTITIONS,
    ServiceProcess,
    campaigns_in,
    delayed_all,
    event_run_id,
    eventually,
    part,
    pending_all,
    run_event_bodies,
    scraper_process,
)

PAGE = "<html><body><h1>Spring sale</h1></body></html>"
FAST = schedule_pb2.RetryPolicy(initial_delay_seconds=0.3, multiplier=2, jitter=0)


async def _request(
    redis: Redis, run_id: str, url: str, *, selectors: dict[str, str] | None = None, **kw: object
) -> None:
    campaign = kw.pop("campaign", run_id)
    request = run_request(run_id, str(campaign), [url], selectors or {"t": "h1"}, **kw)  # type: ignore[arg-type]
    await RunLog(redis, PARTITIONS).request_run(request, dedupe=False)


async def _pending(redis: Redis) -> int:
    return int(await pending_all(redis))


async def test_recovery_target_failing_twice_succeeds_on_attempt_3_after_backoff(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(retry_poll_ms=20)
    pages.routes["/flaky"] = Route(body=PAGE.encode(), fail_first=2)
    url = pages.url("/flaky")
    await _request(state_redis, "r-flaky", url, retry=FAST)

    run = await finished_run(state_redis, "r-flaky")
    assert run.state is RunState.SUCCEEDED and run.attempt == 3, run
    assert run.error == "" and run.next_attempt_at_ms == 0
    assert pages.hits["/flaky"] == 3
    events = await run_events(state_redis, "r-flaky")
    retries = [e for e in events if isinstance(e, events_pb2.RunRetryScheduled)]
    assert [(r.attempt, r.reason) for r in retries] == [(n, f"GET {url}: HTTP 503") for n in (1, 2)]
    starts = {e.attempt: e.started_at.ToMilliseconds() for e in events if _is(e, "RunStarted")}
    assert sorted(starts) == [1, 2, 3]
    for retry, delay_ms in zip(retries, (300, 600), strict=True):
        due_ms = retry.next_attempt_at.ToMilliseconds()
        assert due_ms - starts[retry.attempt] >= delay_ms  # the backoff grows: 0.3 s, 0.6 s
        assert starts[retry.attempt + 1] >= due_ms  # and the next attempt waited for it
    assert await delayed_all(state_redis) == 0
    assert await _pending(state_redis) == 0


@pytest.mark.parametrize(
    ("status", "selector", "retried"),
    [
        (404, "h1", False),
        (403, "h1", False),
        (200, "h1[", False),  # an invalid selector fails the same way every time
        (408, "h1", True),
        (429, "h1", True),
        (503, "h1", True),
    ],
)
async def test_recovery_only_errors_a_retry_can_fix_are_retried(
    state_redis: Redis,
    pages: PageServer,
    start_scraper: StartScraper,
    status: int,
    selector: str,
    retried: bool,
) -> None:
    await start_scraper(retry_poll_ms=20)
    url = pages.page("/p", PAGE, status=status)
    policy = schedule_pb2.RetryPolicy(max_attempts=2, initial_delay_seconds=0.05, jitter=0)
    await _request(state_redis, "r-p", url, selectors={"t": selector}, retry=policy)

    run = await finished_run(state_redis, "r-p")
    if retried:
        assert (run.state, run.attempt, pages.hits["/p"]) == (RunState.DEAD_LETTERED, 2, 2)
    else:
        assert (run.state, run.attempt, pages.hits["/p"]) == (RunState.FAILED, 1, 1)
    assert (str(status) in run.error) if status != 200 else ("h1[" in run.error), run.error
    assert await _pending(state_redis) == 0


async def test_recovery_last_attempt_is_dead_lettered_and_a_retry_brings_it_back(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(retry_poll_ms=20)
    url = pages.page("/down", PAGE, status=503)
    policy = schedule_pb2.RetryPolicy(max_attempts=2, initial_delay_seconds=0.05, jitter=0)
    await _request(state_redis, "r-down", url, retry=policy)

    run = await finished_run(state_redis, "r-down")
    assert (run.state, run.attempt) == (RunState.DEAD_LETTERED, 2)
    assert run.error == f"GET {url}: HTTP 503"
    dead = DeadLetters(state_redis, PARTITIONS)
    [letter], _ = await dead.page(10)
    assert letter.request.run_id == "r-down" and letter.request.attempt == 2
    assert letter.error == run.error and letter.deliveries == 1
    assert letter.request.retry_policy.max_attempts == 2  # the policy travels with the run
    assert await _pending(state_redis) == 0

    pages.page("/down", PAGE)  # the target recovers; an operator retries the run
    await dead.retry(letter.id)
    run = await eventually(
        lambda: _in_state(state_redis, "r-down", RunState.SUCCEEDED), what="the retried run"
    )
    assert run.attempt == 3 and await dead.count() == 0


async def test_recovery_entry_delivered_too_often_is_dead_lettered(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    url = pages.page("/p", PAGE)
    await _request(state_redis, "r-crashy", url)
    # Two workers took the entry and vanished (each read or claim is one delivery).
    stream = part("r-crashy").runs_stream
    await state_redis.xgroup_create(stream, SCRAPER_GROUP, id="0", mkstream=True)
    [[_, [(entry_id, _)]]] = await state_redis.xreadgroup(SCRAPER_GROUP, "ghost-1", {stream: ">"})
    await state_redis.xclaim(stream, SCRAPER_GROUP, "ghost-2", 0, [entry_id])

    await start_scraper(
        max_deliveries=2, lock_ttl_ms=1000, reclaim_idle_ms=1200, reclaim_interval_s=0.05
    )
    run = await finished_run(state_redis, "r-crashy")
    assert run.state is RunState.DEAD_LETTERED and run.attempt == 1
    assert run.error.startswith("delivered 3 times without finishing"), run.error
    assert pages.hits == {}  # never run a fourth time
    [letter], _ = await DeadLetters(state_redis, PARTITIONS).page(10)
    assert letter.deliveries == 3
    assert await _pending(state_redis) == 0


async def test_recovery_taken_over_run_waits_while_its_previous_worker_holds_the_lock(
    state_redis: Redis, lock_urls: list[str], pages: PageServer, start_scraper: StartScraper
) -> None:
    url = pages.page("/p", PAGE)
    await _request(state_redis, "r-cut", url, campaign="cut")
    # A worker took the entry, started the run and holds the campaign lock, but stopped
    # touching its entry (cut off from the state Redis): the entry goes idle.
    stream = part("cut").runs_stream
    await state_redis.xgroup_create(stream, SCRAPER_GROUP, id="0", mkstream=True)
    await state_redis.xreadgroup(SCRAPER_GROUP, "cut-off", {stream: ">"})
    started = events_pb2.RunStarted(run_id="r-cut", attempt=1, worker="cut-off")
    await RunLog(state_redis, PARTITIONS).append_event(
        started, state=RunState.RUNNING, writer=Writer("cut")
    )
    clients = [make_client(url, 1.0) for url in lock_urls]
    redlock = Redlock(clients, node_timeout_s=0.5)
    try:
        held = await redlock.acquire(campaign_lock_resource("cut"), 30_000)
        await start_scraper(
            # A lock command's per-node deadline is a tenth of the TTL: a second keeps it
            # well above what a loaded 2-core machine delays a reply by.
            lock_ttl_ms=1000,
            reclaim_idle_ms=1200,
            reclaim_interval_s=0.05,
            retry_delay_s=0.05,
            retry_max_delay_s=0.2,
        )
        waiting = await eventually(
            lambda: _retried_in_place(state_redis, "r-cut"), what="the take-over to wait"
        )
        assert waiting.startswith("taken over while its previous worker"), waiting
        run = await RunLog(state_redis, PARTITIONS).get_run("r-cut")
        assert run is not None and run.state is RunState.RUNNING and pages.hits == {}
        await redlock.release(held)  # the previous worker's lease ends
        run = await finished_run(state_redis, "r-cut")
    finally:
        await redlock.aclose()
        for client in clients:
            await client.aclose()
    assert run.state is RunState.SUCCEEDED and run.attempt == 1
    finals = [e for e in await run_events(state_redis, "r-cut") if isinstance(e, FINAL_EVENTS)]
    assert len(finals) == 1  # never SKIPPED "overlap" as well
    assert await _pending(state_redis) == 0


async def _retried_in_place(redis: Redis, run_id: str) -> str | None:
    for event in await run_events(redis, run_id):
        if isinstance(event, events_pb2.RunRetryScheduled):
            return event.reason
    return None


# --- real processes -------------------------------------------------------------------


def _worker(state_url: str, lock_urls: list[str], name: str, **extra: str) -> ServiceProcess:
    fast_takeover = {
        "SCRAPER_LOG_LEVEL": "INFO",
        "SCRAPER_LOCK_TTL_MS": "1000",
        "SCRAPER_RECLAIM_IDLE_MS": "2000",
        "SCRAPER_RECLAIM_INTERVAL_S": "0.2",
        "SCRAPER_FETCH_TIMEOUT_S": "60",  # pages hang until the test releases them
        "SCRAPER_PER_HOST_CONCURRENCY": "8",  # every page is on 127.0.0.1
    }
    return scraper_process(state_url, lock_urls, name, **{**fast_takeover, **extra})


@dataclass
class Ledger:
    """What became of the requested runs, from the run events stream."""

    requested: int
    completed: int  # exactly one final event, SUCCEEDED
    lost: int  # no final event
    duplicated: int  # more than one final event
    started_by: dict[str, list[str]]  # run id -> consumer of each RunStarted, in order


async def _ledger(redis: Redis, run_ids: list[str]) -> Ledger:
    finals: Counter[str] = Counter()
    succeeded: set[str] = set()
    started_by: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for body in await run_event_bodies(redis):
        run_id = event_run_id(body)
        if run_id not in started_by:
            continue
        if isinstance(body, events_pb2.RunStarted):
            started_by[run_id].append(body.worker.split(" ")[0])
        if isinstance(body, FINAL_EVENTS):
            finals[run_id] += 1
            if isinstance(body, events_pb2.RunSucceeded):
                succeeded.add(run_id)
    return Ledger(
        requested=len(run_ids),
        completed=sum(1 for r in run_ids if finals[r] == 1 and r in succeeded),
        lost=sum(1 for r in run_ids if finals[r] == 0),
        duplicated=sum(1 for r in run_ids if finals[r] > 1),
        started_by=started_by,
    )


@pytest.mark.slow
async def test_recovery_kill_9_worker_mid_run_completes_once_on_another(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    pages.routes["/slow"] = Route(body=PAGE.encode(), hang=True)
    run_ids = [f"r-k{n}" for n in range(8)]
    doomed = _worker(state_url, lock_urls, "doomed", SCRAPER_CONCURRENCY="4")
    survivor: ServiceProcess | None = None
    try:
        for run_id in run_ids:
            await _request(state_redis, run_id, pages.url("/slow"))

        async def doomed_busy() -> bool:
            ledger = await _ledger(state_redis, run_ids)
            return sum(1 for s in ledger.started_by.values() if s == ["doomed"]) == 4

        await eventually(doomed_busy, timeout_s=30, what="the doomed worker running 4 runs")
        survivor = _worker(state_url, lock_urls, "survivor", SCRAPER_CONCURRENCY="8")
        await eventually(lambda: _hits_at_least(pages, "/slow", 8), what="all 8 runs fetching")
        doomed.kill()  # mid-run: its runs are RUNNING, its entries pending, its locks held
        pages.release.set()
        for run_id in run_ids:
            run = await finished_run(state_redis, run_id, timeout_s=30)
            assert run.state is RunState.SUCCEEDED, survivor.logs()
        ledger = await _ledger(state_redis, run_ids)
    finally:
        doomed.close()
        if survivor is not None:
            survivor.close()

    assert (ledger.requested, ledger.completed, ledger.lost, ledger.duplicated) == (8, 8, 0, 0)
    taken_over = [r for r, by in ledger.started_by.items() if by[0] == "doomed"]
    assert len(taken_over) == 4, ledger.started_by
    for run_id in taken_over:  # run again on the survivor, same run id and attempt
        assert ledger.started_by[run_id] == ["doomed", "survivor"], ledger.started_by
        run = await RunLog(state_redis, PARTITIONS).get_run(run_id)
        events = [
            (
                type(e).__name__,
                getattr(e, "attempt", 0),
                getattr(e, "reason", ""),
                getattr(e, "worker", ""),
            )
            for e in await run_events(state_redis, run_id)
        ]
        assert run is not None and run.attempt == 1, events
    assert await _pending(state_redis) == 0


@pytest.mark.slow
async def test_recovery_sigterm_lets_a_slow_scrape_finish_within_the_grace_period(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    pages.routes["/slow"] = Route(body=PAGE.encode(), delay_s=1.5)
    worker = _worker(state_url, lock_urls, "graceful", SCRAPER_SHUTDOWN_GRACE_S="20")
    try:
        await _request(state_redis, "r-grace", pages.url("/slow"))
        await eventually(lambda: _hits_at_least(pages, "/slow", 1), what="the scrape going on")
        assert worker.terminate(timeout_s=30) == 0, worker.logs()
        run = await RunLog(state_redis, PARTITIONS).get_run("r-grace")
    finally:
        worker.close()
    assert run is not None and run.state is RunState.SUCCEEDED and run.attempt == 1
    ledger = await _ledger(state_redis, ["r-grace"])
    assert (ledger.completed, ledger.lost, ledger.duplicated) == (1, 0, 0)
    assert await _pending(state_redis) == 0


@pytest.mark.slow
async def test_recovery_sigterm_past_the_grace_period_hands_the_run_back(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    pages.routes["/stuck"] = Route(body=PAGE.encode(), hang=True)
    # Reclaiming by idle time would take 60 s: only the hand-back can be this quick.
    slow_reclaim = {"SCRAPER_RECLAIM_IDLE_MS": "60000"}
    leaving = _worker(
        state_url, lock_urls, "leaving", SCRAPER_SHUTDOWN_GRACE_S="0.2", **slow_reclaim
    )
    staying: ServiceProcess | None = None
    try:
        await _request(state_redis, "r-handed", pages.url("/stuck"))
        await eventually(lambda: _hits_at_least(pages, "/stuck", 1), what="the scrape going on")
        staying = _worker(state_url, lock_urls, "staying", **slow_reclaim)
        assert leaving.terminate(timeout_s=30) == 0, leaving.logs()
        assert "handed back 1 pending runs entries" in leaving.logs(), leaving.logs()
        pages.release.set()
        run = await finished_run(state_redis, "r-handed", timeout_s=20)
        assert run.state is RunState.SUCCEEDED, staying.logs()
        ledger = await _ledger(state_redis, ["r-handed"])
    finally:
        leaving.close()
        if staying is not None:
            staying.close()
    assert ledger.started_by["r-handed"] == ["leaving", "staying"]
    assert (ledger.completed, ledger.lost, ledger.duplicated) == (1, 0, 0)
    assert await _pending(state_redis) == 0


async def _hits_at_least(pages: PageServer, path: str, count: int) -> bool:
    return pages.hits.get(path, 0) >= count


async def _in_state(redis: Redis, run_id: str, state: RunState) -> object:
    run = await RunLog(redis, PARTITIONS).get_run(run_id)
    return run if run is not None and run.state is state else None


def _is(body: object, name: str) -> bool:
    return type(body).__name__ == name


async def test_recovery_reclaimed_entries_get_their_exact_delivery_counts(
    state_redis: Redis,
) -> None:
    # "old" read three entries and went quiet on the first and last; this worker ("me") owns
    # the middle one already. A count read over the claimed range must not let the middle
    # entry push the last one out (it would default to 1 delivery).
    from scraper_svc.store import ScraperStore

    campaigns = campaigns_in(0, 3)  # three campaigns of one partition: one stream
    for n, campaign in enumerate(campaigns):
        await _request(state_redis, f"r-{n}", "http://127.0.0.1:1/", campaign=campaign)
    store = ScraperStore(state_redis, PARTITIONS, consumer="me", results_cap=10)
    await store.ensure_group()
    first, middle, last = [
        entry for entry, _, _ in await store.read("old", 0, after=">", count=3, block_ms=None)
    ]
    stream = PARTITIONS[0].runs_stream
    await state_redis.xclaim(stream, SCRAPER_GROUP, "me", 0, [middle])
    await state_redis.xclaim(
        stream, SCRAPER_GROUP, "old", 0, [first, last], idle=60_000, justid=True
    )

    _, claimed = await store.claim_stale("me", 0, min_idle_ms=30_000, cursor="0-0", count=10)

    assert {entry: deliveries for entry, _, deliveries in claimed} == {first: 2, last: 2}
