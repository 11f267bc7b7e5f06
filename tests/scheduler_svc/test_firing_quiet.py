"""Bookkeeping after a burst's fires waits for the fires still being emitted, never longer
than the cap (a fire whose emission hangs through an outage)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from campaign_common.localstack.embedded import free_port
from campaign_common.runs.emission import Emission
from campaign_common.runs.log import RunLog
from campaign_common.timeutil import now_ms
from scheduler_svc import firing as firing_module
from scheduler_svc.firing import Firing
from scheduler_svc.model import Timing, TimingKind
from tests.scheduler_svc.records import schedule_record
from tests.support import PARTITIONS, eventually


def _one_shots(n: int, at_ms: int) -> list:  # type: ignore[type-arg]
    timing = Timing(TimingKind.RUN_AT, run_at_ms=at_ms)
    return [schedule_record(f"q{i}", timing=timing) for i in range(n)]


async def test_firing_quiet_returns_once_the_fires_in_flight_are_answered(
    state_redis: Redis,
) -> None:
    firing = Firing(RunLog(state_redis, PARTITIONS), retry_window_ms=60_000)
    at_ms = now_ms()
    fires = [asyncio.create_task(firing.fire(s, at_ms)) for s in _one_shots(300, at_ms)]
    quiet = asyncio.create_task(firing.quiet())  # runs after every fire has begun
    try:
        await asyncio.sleep(0)  # one loop turn: every fire began, none was answered yet
        assert firing.emitting == 300 and not quiet.done()
        await quiet
        assert all(fire.done() for fire in fires)
        # No guard was raised for these schedules: each fire was answered (refused).
        assert {fire.result() for fire in fires} == {Emission.STALE}
        await firing.quiet()  # nothing in flight: at once
    finally:
        await firing.close()


async def test_firing_quiet_gives_up_waiting_on_a_hung_fire_at_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(firing_module, "_QUIET_MAX_S", 0.2)
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    firing = Firing(RunLog(unreachable, PARTITIONS), retry_window_ms=60_000)
    at_ms = now_ms()
    hung = asyncio.create_task(firing.fire(_one_shots(1, at_ms)[0], at_ms))
    try:

        async def began() -> bool:
            return firing.emitting == 1

        await eventually(began, what="the fire began")
        await asyncio.wait_for(firing.quiet(), timeout=30)
        assert not hung.done()  # still retrying its emission: the wait ended at the cap
    finally:
        hung.cancel()
        await asyncio.gather(hung, return_exceptions=True)
        await firing.close()
        await unreachable.aclose()
