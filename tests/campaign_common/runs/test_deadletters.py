"""Dead letters against a real state Redis: park, list, retry once, purge."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from campaign_common.runs.deadletters import DeadLetterNotFound, DeadLetters
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from tests.support import PARTITIONS

C1 = PARTITIONS.of("c1")
RUNS_STREAM = C1.runs_stream
RUN_EVENTS_STREAM = C1.events_stream
DELAYED = C1.delayed


def _request(run_id: str, attempt: int = 3) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id="s1",
        campaign_id="c1",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=attempt,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
    )


async def test_deadletters_park_then_retry_once_as_the_next_attempt(state_redis: Redis) -> None:
    runs, dead = RunLog(state_redis, PARTITIONS), DeadLetters(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:1"), dedupe=False)
    dead_id = await dead.add(
        _request("s1:1"), "GET http://x/: HTTP 503", deliveries=4, writer=Writer("c1")
    )
    run = await runs.get_run("s1:1")
    assert run is not None and run.state is RunState.DEAD_LETTERED
    assert run.error == "GET http://x/: HTTP 503"
    (record,), _ = await dead.page(10)
    assert record.id == dead_id and record.deliveries == 4 and record.request.attempt == 3
    before = await state_redis.xlen(RUNS_STREAM)
    retried = await dead.retry(dead_id)
    assert retried.run_id == "s1:1" and retried.attempt == 4
    assert await state_redis.xlen(RUNS_STREAM) == before + 1
    run = await runs.get_run("s1:1")
    assert run is not None and run.state is RunState.REQUESTED and run.attempt == 4
    assert run.error == ""
    with pytest.raises(DeadLetterNotFound):
        await dead.retry(dead_id)
    assert await dead.count() == 0


async def test_deadletters_page_newest_first_and_purge(state_redis: Redis) -> None:
    dead = DeadLetters(state_redis, PARTITIONS)
    ids = [
        await dead.add(_request(f"s1:{i}"), "boom", deliveries=1, writer=Writer("c1"))
        for i in range(5)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page, token = await dead.page(2, token)
        seen += [record.id for record in page]
        if not token:
            break
    assert seen == ids[::-1]
    await dead.purge(ids[0])
    with pytest.raises(DeadLetterNotFound):
        await dead.purge(ids[0])
    with pytest.raises(DeadLetterNotFound):
        await dead.get("not-an-id")
    assert await dead.count() == 4


async def test_deadletters_a_run_attempt_is_parked_once(state_redis: Redis) -> None:
    from campaign_common.runs.writer import AttemptClosed

    runs, dead = RunLog(state_redis, PARTITIONS), DeadLetters(state_redis, PARTITIONS)
    await runs.request_run(_request("s1:9"), dedupe=False)
    await dead.add(_request("s1:9"), "HTTP 503", deliveries=1, writer=Writer("c1"))
    with pytest.raises(AttemptClosed):
        await dead.add(_request("s1:9"), "HTTP 503", deliveries=2, writer=Writer("c1"))
    assert await dead.count() == 1


async def test_deadletters_of_every_partition_page_together_and_act_by_id(
    state_redis: Redis,
) -> None:
    runs, dead = RunLog(state_redis, PARTITIONS), DeadLetters(state_redis, PARTITIONS)
    ids = []
    for n, campaign in enumerate("abcdefgh"):
        request = _request(f"s{campaign}:{n}")
        request.campaign_id = campaign
        await runs.request_run(request, dedupe=False)
        ids.append(await dead.add(request, "boom", deliveries=1, writer=Writer(campaign)))
    assert len({dead_id.split("-")[0] for dead_id in ids}) > 1  # several partitions
    seen: list[str] = []
    token = ""
    while True:
        page, token = await dead.page(3, token)
        seen += [letter.id for letter in page]
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)) == 8
    assert await dead.count() == 8
    other = next(i for i in ids if not i.startswith("0-"))
    letter = await dead.get(other)
    retried = await dead.retry(other)
    assert retried.run_id == letter.request.run_id
    assert retried.attempt == letter.request.attempt + 1 and await dead.count() == 7
    purged = next(i for i in ids if i != other)
    await dead.purge(purged)
    assert await dead.count() == 6
    for gone in (other, purged, f"{len(PARTITIONS)}-1-0", "1-0", "x-1-0"):
        with pytest.raises(DeadLetterNotFound):
            await dead.get(gone)
