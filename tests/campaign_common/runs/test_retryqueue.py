"""The retry delay queue against a real state Redis: queue atomically, move each retry once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.redis_conn import make_client
from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.runs.writer import AttemptClosed, EntryLost, Fenced, Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from tests.support import PARTITIONS, delayed_all, pending_all

C1 = PARTITIONS.of("c1")
RUNS_STREAM = C1.runs_stream
RUN_EVENTS_STREAM = C1.events_stream
DELAYED = C1.delayed


def _request(run_id: str, attempt: int = 1) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id="s1",
        campaign_id="c1",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=attempt,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
    )


async def _delivered(redis: Redis) -> str:
    """Read the one new runs entry as a consumer; returns its id (it is pending now)."""
    await redis.xgroup_create(RUNS_STREAM, SCRAPER_GROUP, id="0", mkstream=True)
    [[_, [(entry_id, _)]]] = await redis.xreadgroup(SCRAPER_GROUP, "w1", {RUNS_STREAM: ">"})
    return str(entry_id.decode())


async def test_retryqueue_schedule_records_queues_and_acks_in_one_step(state_redis: Redis) -> None:
    runs, queue = RunLog(state_redis, PARTITIONS), RetryQueue(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:1"), dedupe=False)
    entry_id = await _delivered(state_redis)
    due_ms = now_ms() + 60_000

    await queue.schedule(
        _request("s1:1"), "HTTP 503", due_ms, writer=Writer("c1", 0, "w1", entry_id)
    )

    run = await runs.get_run("s1:1")
    assert run is not None and run.state is RunState.RETRY_SCHEDULED and run.attempt == 1
    assert run.error == "HTTP 503" and run.next_attempt_at_ms == due_ms
    assert await state_redis.zscore(DELAYED, "s1:1") == due_ms and await queue.waiting() == 1
    assert await pending_all(state_redis) == 0
    assert await queue.move_due(C1) == 0  # not due yet
    assert await queue.waiting() == 1


async def test_retryqueue_stale_fence_writes_nothing(state_redis: Redis) -> None:
    runs, queue = RunLog(state_redis, PARTITIONS), RetryQueue(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:2"), dedupe=False)
    entry_id = await _delivered(state_redis)
    await runs.add_results("c1", [run_pb2.ScrapeResult(run_id="newer")], writer=Writer("c1", 50))

    with pytest.raises(Fenced):
        await queue.schedule(
            _request("s1:2"), "boom", now_ms(), writer=Writer("c1", 7, "w1", entry_id)
        )

    assert await queue.waiting() == 0
    run = await runs.get_run("s1:2")
    assert run is not None and run.state is RunState.REQUESTED
    assert await pending_all(state_redis) == 1


async def test_retryqueue_racing_movers_move_each_retry_once(
    state_redis: Redis, state_url: str
) -> None:
    retries = 60
    for n in range(retries):
        await RetryQueue(state_redis, PARTITIONS).schedule(
            _request(f"s1:{n}"), "boom", now_ms(), writer=Writer("c1")
        )
    movers = [make_client(state_url, 2.0) for _ in range(3)]
    try:
        queues = [RetryQueue(client, PARTITIONS) for client in movers]
        moved = await asyncio.gather(*[queue.move_due(C1, limit=7) for queue in queues * 10])
    finally:
        for client in movers:
            await client.aclose()

    assert sum(moved) == retries and await delayed_all(state_redis) == 0
    entries = await state_redis.xrange(RUNS_STREAM)
    bodies = [decode_body(Envelope.from_fields(fields)) for _, fields in entries]
    assert all(isinstance(body, events_pb2.RunRequested) for body in bodies)
    attempts = {body.run_id: body.attempt for body in bodies}  # type: ignore[union-attr]
    assert len(bodies) == retries and attempts == {f"s1:{n}": 2 for n in range(retries)}


async def test_retryqueue_refuses_a_worker_that_lost_its_entry(state_redis: Redis) -> None:
    runs, queue = RunLog(state_redis, PARTITIONS), RetryQueue(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:3"), dedupe=False)
    entry_id = await _delivered(state_redis)  # delivered to w1
    await state_redis.xclaim(RUNS_STREAM, SCRAPER_GROUP, "w2", 0, [entry_id])  # w2 took it over

    with pytest.raises(EntryLost):
        await queue.schedule(
            _request("s1:3"), "boom", now_ms(), writer=Writer("c1", 0, "w1", entry_id)
        )

    assert await queue.waiting() == 0
    run = await runs.get_run("s1:3")
    assert run is not None and run.state is RunState.REQUESTED
    assert await pending_all(state_redis) == 1  # w2's still


async def test_retryqueue_never_turns_a_final_run_back(state_redis: Redis) -> None:
    runs, queue = RunLog(state_redis, PARTITIONS), RetryQueue(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:4"), dedupe=False)
    done = events_pb2.RunSucceeded(run_id="s1:4", attempt=1)
    await runs.append_event(done, state=RunState.SUCCEEDED, writer=Writer("c1"))

    with pytest.raises(AttemptClosed):
        await queue.schedule(_request("s1:4"), "lease lost", now_ms(), writer=Writer("c1"))

    run = await runs.get_run("s1:4")
    assert run is not None and run.state is RunState.SUCCEEDED
    assert await queue.waiting() == 0
