"""RunLog against a real state Redis: dedupe, projection ordering, paging, results."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from campaign_common.page_tokens import InvalidPageToken
from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import AttemptClosed, EntryLost, Fenced, Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from tests.support import PARTITIONS, pending_all

C1 = PARTITIONS.of("c1")
RUNS_STREAM = C1.runs_stream
RUN_EVENTS_STREAM = C1.events_stream


def _request(run_id: str, scheduled_ms: int, schedule_id: str = "s1") -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule_id,
        campaign_id="c1",
        scheduled_for=ms_to_timestamp(scheduled_ms),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
    )


async def test_runlog_request_run_emits_once_per_run_id(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    assert await log.request_run(_request("s1:1000", 1000), dedupe=True)
    assert not await log.request_run(_request("s1:1000", 1000), dedupe=True)
    assert await state_redis.xlen(RUNS_STREAM) == 1
    run = await log.get_run("s1:1000")
    assert run is not None and run.state is RunState.REQUESTED and run.scheduled_for_ms == 1000


async def test_runlog_projection_never_goes_back_within_an_attempt(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r", 5), dedupe=False)
    done = events_pb2.RunSucceeded(run_id="r", attempt=1)
    await log.append_event(
        done, state=RunState.SUCCEEDED, changes={"finished_at_ms": 9}, writer=Writer("c1")
    )
    late_start = events_pb2.RunStarted(run_id="r", attempt=1)
    with pytest.raises(AttemptClosed):
        await log.append_event(
            late_start, state=RunState.RUNNING, changes={"started_at_ms": 7}, writer=Writer("c1")
        )
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.SUCCEEDED and run.finished_at_ms == 9
    retry = events_pb2.RunStarted(run_id="r", attempt=2)
    with pytest.raises(AttemptClosed):  # a final run never changes, not even for a new attempt
        await log.append_event(retry, state=RunState.RUNNING, writer=Writer("c1"))
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.SUCCEEDED and run.attempt == 1


async def test_runlog_list_runs_pages_newest_first(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    base = now_ms()
    for ms in range(1, 8):
        await log.request_run(_request(f"s1:{ms}", base + ms), dedupe=True)
    await log.request_run(_request("other:1", base + 100, schedule_id="other"), dedupe=True)
    seen: list[str] = []
    token = ""
    while True:
        runs, token = await log.list_runs(schedule_id="s1", page_size=3, page_token=token)
        seen += [run.run_id for run in runs]
        if not token:
            break
    assert seen == [f"s1:{ms}" for ms in range(7, 0, -1)]
    everything, _ = await log.list_runs(page_size=100)
    assert everything[0].run_id == "other:1"
    ancient = _request("s1:old", 1000)  # older than the retention: pruned from the index
    await log.request_run(ancient, dedupe=True)
    everything, _ = await log.list_runs(page_size=100)
    assert "s1:old" not in [run.run_id for run in everything]
    with pytest.raises(InvalidPageToken):
        await log.list_runs(page_size=1, page_token="!!not-a-token")


async def test_runlog_results_newest_first_and_capped(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS, results_cap=3)
    for i in range(5):
        await log.add_results(
            "c1", [run_pb2.ScrapeResult(run_id=f"r{i}", url="http://x")], writer=Writer("c1")
        )
    results = await log.list_results("c1", limit=10)
    assert [r.run_id for r in results] == ["r4", "r3", "r2"]


async def test_runlog_writes_with_a_stale_fencing_token_are_refused(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r1", now_ms()), dedupe=False)
    await log.add_results("c1", [run_pb2.ScrapeResult(run_id="new")], writer=Writer("c1", 7))
    with pytest.raises(Fenced):
        await log.add_results("c1", [run_pb2.ScrapeResult(run_id="old")], writer=Writer("c1", 6))
    late = events_pb2.RunSucceeded(run_id="r1", attempt=1)
    with pytest.raises(Fenced):
        await log.append_event(late, state=RunState.SUCCEEDED, writer=Writer("c1", 6))
    run = await log.get_run("r1")
    assert run is not None and run.state is RunState.REQUESTED  # the stale write left no trace
    assert [r.run_id for r in await log.list_results("c1", 10)] == ["new"]
    await log.append_event(late, state=RunState.SUCCEEDED, writer=Writer("c1", 7))  # same holder
    await log.add_results("other", [run_pb2.ScrapeResult(run_id="x")], writer=Writer("other", 1))


async def test_runlog_a_retry_scheduled_run_shows_running_when_it_starts_again(
    state_redis: Redis,
) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r", now_ms()), dedupe=False)
    retry = events_pb2.RunRetryScheduled(run_id="r", attempt=1, reason="lock quorum unavailable")
    await log.append_event(
        retry, state=RunState.RETRY_SCHEDULED, changes={"error": retry.reason}, writer=Writer("c1")
    )
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.RETRY_SCHEDULED
    started = events_pb2.RunStarted(run_id="r", attempt=1)
    await log.append_event(
        started, state=RunState.RUNNING, changes={"started_at_ms": 5}, writer=Writer("c1")
    )
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.RUNNING and run.started_at_ms == 5


async def test_runlog_results_of_one_attempt_are_stored_once(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    first = [run_pb2.ScrapeResult(run_id="r1", url="http://x/a")]
    await log.add_results("c1", first, attempt=1, writer=Writer("c1"))
    await log.add_results(
        "c1", first, attempt=1, writer=Writer("c1")
    )  # the attempt re-run after a crash
    await log.add_results(
        "c1", [run_pb2.ScrapeResult(run_id="r1", url="http://x/b")], attempt=2, writer=Writer("c1")
    )
    results = await log.list_results("c1", limit=10)
    assert [(r.run_id, r.url) for r in results] == [("r1", "http://x/b"), ("r1", "http://x/a")]


async def _deliver(redis: Redis, consumer: str) -> str:
    await redis.xgroup_create(RUNS_STREAM, SCRAPER_GROUP, id="0", mkstream=True)
    [[_, [(entry_id, _)]]] = await redis.xreadgroup(SCRAPER_GROUP, consumer, {RUNS_STREAM: ">"})
    return str(entry_id.decode())


async def test_runlog_one_final_outcome_per_attempt_the_first_wins(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r", now_ms()), dedupe=False)
    await log.append_event(
        events_pb2.RunStarted(run_id="r", attempt=1), state=RunState.RUNNING, writer=Writer("c1")
    )
    skipped = events_pb2.RunSkipped(run_id="r", attempt=1, reason="overlap")
    await log.append_event(
        skipped, state=RunState.SKIPPED, changes={"error": "overlap"}, writer=Writer("c1")
    )
    late = events_pb2.RunSucceeded(run_id="r", attempt=1)
    with pytest.raises(AttemptClosed):
        await log.append_event(late, state=RunState.SUCCEEDED, writer=Writer("c1"))
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.SKIPPED and run.error == "overlap"
    events = await state_redis.xrange(RUN_EVENTS_STREAM)
    assert len(events) == 2  # the refused outcome left no event either


async def test_runlog_a_worker_that_lost_its_entry_writes_nothing(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r", now_ms()), dedupe=False)
    entry_id = await _deliver(state_redis, "w1")
    mine = Writer("c1", 0, "w1", entry_id)
    await log.append_event(
        events_pb2.RunStarted(run_id="r", attempt=1), state=RunState.RUNNING, writer=mine
    )
    await state_redis.xclaim(RUNS_STREAM, SCRAPER_GROUP, "w2", 0, [entry_id])
    done = events_pb2.RunSucceeded(run_id="r", attempt=1)
    with pytest.raises(EntryLost):
        await log.append_event(done, state=RunState.SUCCEEDED, writer=mine)
    with pytest.raises(EntryLost):
        await log.add_results("c1", [run_pb2.ScrapeResult(run_id="r")], writer=mine, attempt=1)
    theirs = Writer("c1", 0, "w2", entry_id)
    await log.append_event(done, state=RunState.SUCCEEDED, writer=theirs)
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.SUCCEEDED
    assert await log.list_results("c1", 10) == []


async def test_runlog_workers_seen_counts_consumers_that_read_recently(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    assert await log.workers_seen(60_000) == 0, "no stream or group yet"
    await state_redis.xgroup_create(RUNS_STREAM, SCRAPER_GROUP, id="0", mkstream=True)
    assert await log.workers_seen(60_000) == 0
    for worker in ("worker-a", "worker-b"):
        await state_redis.xreadgroup(SCRAPER_GROUP, worker, {RUNS_STREAM: ">"}, count=1)
    assert await log.workers_seen(60_000) == 2
    assert await log.workers_seen(0) == 0, "idle for at least 0 ms: none within 0 ms"


async def test_runlog_outcome_with_results_and_ack_is_one_write(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    await log.request_run(_request("r", now_ms()), dedupe=False)
    entry_id = await _deliver(state_redis, "w1")
    mine = Writer("c1", 0, "w1", entry_id)
    await log.append_event(
        events_pb2.RunStarted(run_id="r", attempt=1), state=RunState.RUNNING, writer=mine
    )
    page = run_pb2.ScrapeResult(run_id="r", attempt=1, url="http://x/a")
    done = events_pb2.RunSucceeded(run_id="r", attempt=1, pages=1)
    stale = Writer("c1", 0, "w2", entry_id)  # does not own the entry: refused, nothing written
    with pytest.raises(EntryLost):
        await log.append_event(
            done, state=RunState.SUCCEEDED, writer=stale, results=[page], ack=True
        )
    assert await log.list_results("c1", 10) == []
    assert await pending_all(state_redis) == 1
    await log.append_event(done, state=RunState.SUCCEEDED, writer=mine, results=[page], ack=True)
    assert [result.url for result in await log.list_results("c1", 10)] == ["http://x/a"]
    assert await pending_all(state_redis) == 0
    run = await log.get_run("r")
    assert run is not None and run.state is RunState.SUCCEEDED


async def test_runlog_lists_and_finds_runs_over_every_partition(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS)
    base = now_ms()
    campaigns = [PARTITIONS.of(c) for c in ("a", "b", "c", "d", "e", "f")]
    assert len(set(campaigns)) > 1  # the runs below land in several partitions
    for n, campaign in enumerate("abcdef"):
        request = _request(f"s{campaign}:{base + n}", base + n, schedule_id=f"s{campaign}")
        request.campaign_id = campaign
        await log.request_run(request, dedupe=True)
    seen: list[str] = []
    token = ""
    while True:  # merged newest first, paged across partitions without repeats or gaps
        runs, token = await log.list_runs(page_size=4, page_token=token)
        seen += [run.run_id for run in runs]
        if not token:
            break
    assert seen == [f"s{c}:{base + n}" for n, c in reversed(list(enumerate("abcdef")))]
    found = await log.get_run(f"sd:{base + 3}")  # no campaign given: every partition looked in
    assert found is not None and found.campaign_id == "d"
    assert await log.get_run(f"sd:{base + 3}", "d") == found
    by_campaign, _ = await log.list_runs(campaign_id="e", page_size=10)
    assert [run.run_id for run in by_campaign] == [f"se:{base + 4}"]
