"""The batcher of emissions: a burst of fires leaves in a few script calls, each run answered
as if alone."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from campaign_common.runs.emission import Emission, EmissionGuard, EmissionGuards
from campaign_common.runs.log import RunLog
from scheduler_svc.batcher import Batcher
from tests.support import PARTITIONS, part, runs_stream, scheduled_request, xlen_all


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_batcher_a_burst_is_a_few_calls_and_each_run_gets_its_own_answer(
    state_redis: Redis,
) -> None:
    runs = RunLog(state_redis, PARTITIONS)
    await EmissionGuards(state_redis, PARTITIONS).raise_all(
        [EmissionGuard("s1", "c1", 1, active=True)]
    )
    assert await runs.request_run(scheduled_request("s1:0"), dedupe=True, schedule_version=1)
    emitter = Batcher(runs.emit_all, max_batch=100, max_calls=2)
    calls = [
        runs.request_call(scheduled_request(f"s1:{n}"), dedupe=True, schedule_version=1)
        for n in range(300)  # s1:0 was emitted before: a duplicate
    ]
    calls.append(runs.request_call(scheduled_request("s1:stale"), dedupe=True, schedule_version=2))
    before = await _script_calls(state_redis)

    answers = await asyncio.gather(*(emitter.submit(call) for call in calls))

    assert answers[0] is Emission.DUPLICATE
    assert answers[1:300] == [Emission.EMITTED] * 299
    assert answers[300] is Emission.STALE
    assert await xlen_all(state_redis, runs_stream) == 300  # s1:0 once, and 299 more
    assert await _script_calls(state_redis) - before <= 5  # 301 runs in ceil(301 / 100) calls


async def test_batcher_a_failed_call_fails_each_run_in_it_and_the_next_call_works(
    state_redis: Redis,
) -> None:
    runs = RunLog(state_redis, PARTITIONS)
    emitter = Batcher(runs.emit_all)
    await state_redis.set(
        part("c1").runs_stream, "not a stream"
    )  # the XADD fails inside the script
    failed = await asyncio.gather(
        *(
            emitter.submit(runs.request_call(scheduled_request(f"m:{n}"), dedupe=False))
            for n in range(3)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(answer, Exception) for answer in failed)
    await state_redis.delete(part("c1").runs_stream)
    again = await emitter.submit(runs.request_call(scheduled_request("m:9"), dedupe=False))
    assert again is Emission.EMITTED
