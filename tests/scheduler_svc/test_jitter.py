"""Per-schedule fire jitter and catch-up window (Temporal's jitter and catchup_window)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.runs.limits import RunLimits
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.model import (
    Schedule,
    ScheduleState,
    Scrape,
    Timing,
    TimingKind,
)
from scheduler_svc.triggers import build_trigger, due_ms, jitter_offset_ms, upcoming_fires
from tests.scheduler_svc.test_service import _add, _violations
from tests.support import PARTITIONS, eventually, runs_stream, xrange_all

NOW_MS = 1_800_000_000_000


def _schedule(timing: Timing, schedule_id: str = "s-1", window_s: int = 0) -> Schedule:
    return Schedule(
        schedule_id=schedule_id,
        campaign_id="c",
        name="n",
        timing=timing,
        scrape=Scrape(urls=("http://127.0.0.1:1/",), selectors=()),
        version=1,
        state=ScheduleState.ACTIVE,
        created_at_ms=NOW_MS,
        updated_at_ms=NOW_MS,
        limits=RunLimits(catch_up_window_s=window_s),
    )


def test_jitter_offset_is_deterministic_in_range_and_varies_per_fire() -> None:
    offsets = [jitter_offset_ms("s-1", NOW_MS + k * 60_000, 30) for k in range(200)]
    assert offsets == [jitter_offset_ms("s-1", NOW_MS + k * 60_000, 30) for k in range(200)]
    assert all(0 <= offset < 30_000 for offset in offsets)
    assert len(set(offsets)) > 150  # spread, not one constant offset
    assert offsets != [jitter_offset_ms("s-2", NOW_MS + k * 60_000, 30) for k in range(200)]
    assert jitter_offset_ms("s-1", NOW_MS, 0) == 0


def test_jitter_never_moves_a_fire_to_or_past_the_next_one() -> None:
    schedule = _schedule(Timing(TimingKind.INTERVAL, interval_s=2, jitter_s=3600))
    trigger = build_trigger(schedule.timing, NOW_MS)
    for k in range(1, 50):
        nominal = NOW_MS + 2000 * k
        assert nominal <= due_ms(schedule, trigger, nominal) < nominal + 2000


def test_preview_shows_the_jittered_due_times_in_order() -> None:
    schedule = _schedule(Timing(TimingKind.CRON, cron="*/5 * * * *", jitter_s=120))
    trigger = build_trigger(schedule.timing, NOW_MS)
    preview = upcoming_fires(schedule, NOW_MS, 5)
    assert len(preview) == 5 and preview == sorted(preview)
    nominal = [fire - jitter_offset_ms("s-1", fire - fire % 300_000, 120) for fire in preview]
    assert all(n % 300_000 == 0 for n in nominal)  # on the cron's 5-minute grid
    assert preview == [due_ms(schedule, trigger, n) for n in nominal]
    assert preview != nominal  # the jitter shows


def test_preview_keeps_a_fire_whose_nominal_time_passed_but_is_still_due() -> None:
    schedule = _schedule(Timing(TimingKind.CRON, cron="0 * * * *", jitter_s=1800))
    trigger = build_trigger(schedule.timing, NOW_MS)
    hour = NOW_MS - NOW_MS % 3_600_000
    due = due_ms(schedule, trigger, hour)
    assert due > hour, "pick a seed whose first offset is not 0"
    preview = upcoming_fires(schedule, due - 1, 2)
    assert preview[0] == due  # nominal time passed a moment ago; the run is still to come


@pytest.fixture
async def stub(scheduler_target: str) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        yield api_grpc.SchedulerServiceStub(channel)


async def test_service_jitter_and_catch_up_window_round_trip_and_are_validated(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    request = _add(cron="*/5 * * * *", jitter_seconds=90)
    request.limits.catch_up_window_seconds = 600
    created = await stub.AddScheduledCampaign(request, timeout=5)
    assert created.spec.jitter_seconds == 90 and created.limits.catch_up_window_seconds == 600
    nominal = [t.ToMilliseconds() for t in created.next_fire_times]
    assert any(ms % 300_000 for ms in nominal), "the preview shows jittered times"
    bad = _add(interval_s=60)
    bad.schedule.jitter_seconds = -1
    bad.limits.catch_up_window_seconds = 10**9
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(bad, timeout=5)
    assert set(_violations(info.value)) == {
        "schedule.jitter_seconds",
        "limits.catch_up_window_seconds",
    }


async def test_service_jittered_fire_keeps_its_nominal_run_id_and_runs_after_its_offset(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    created = await stub.AddScheduledCampaign(_add(interval_seconds=2, jitter_seconds=1), timeout=5)

    async def fired() -> list[events_pb2.RunRequested] | None:
        entries: Any = await xrange_all(state_redis, runs_stream)
        bodies = [decode_body(Envelope.from_fields(fields)) for _, fields in entries]
        found = [b for b in bodies if isinstance(b, events_pb2.RunRequested)]
        return found if len(found) >= 2 else None

    requests = await eventually(fired, timeout_s=15, what="two jittered fires")
    created_ms = created.created_at.ToMilliseconds()
    for request in requests:
        nominal = request.scheduled_for.ToMilliseconds()
        assert request.run_id == f"{created.schedule_id}:{nominal}"
        assert (nominal - created_ms) % 2000 == 0  # the nominal grid, not the jittered time
        offset = jitter_offset_ms(created.schedule_id, nominal, 1)
        assert request.requested_at.ToMilliseconds() >= nominal + offset


async def test_restart_applies_each_schedules_own_catch_up_window(state_url: str) -> None:
    """While no scheduler ran, fires of a schedule with a 1 s window are recorded as skipped;
    those of a schedule on the service's 60 s default are all still run."""
    from scheduler_svc.config import SchedulerSettings
    from scheduler_svc.server import SchedulerServer

    settings = SchedulerSettings(
        state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200
    )
    first = SchedulerServer(settings)
    await first.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        short = _add(interval_s=1)
        short.limits.catch_up_window_seconds = 1
        short_id = (await stub.AddScheduledCampaign(short, timeout=5)).schedule_id
        default_id = (await stub.AddScheduledCampaign(_add(interval_s=1), timeout=5)).schedule_id
    await first.stop()
    down_ms = now_ms()

    async def outage_over() -> bool:  # fires pile up while no scheduler runs
        return now_ms() > down_ms + 4000

    await eventually(outage_over, timeout_s=10, what="a 4 s outage")
    second = SchedulerServer(settings)
    await second.start()
    try:
        runs = RunLog(second._redis, PARTITIONS)  # type: ignore[arg-type]

        async def skipped_and_caught_up() -> tuple[list[Any], list[Any]] | None:
            short_runs, _ = await runs.list_runs(schedule_id=short_id, page_size=100)
            default_runs, _ = await runs.list_runs(schedule_id=default_id, page_size=100)
            caught_up = [r for r in default_runs if down_ms < r.scheduled_for_ms < down_ms + 3000]
            skipped = [r for r in short_runs if r.state is RunState.SKIPPED]
            return (skipped, default_runs) if skipped and len(caught_up) >= 3 else None

        skipped, default_runs = await eventually(
            skipped_and_caught_up, timeout_s=15, what="missed fires recorded and caught up"
        )
        assert all(r.error == "missed (scheduler down)" for r in skipped)
        assert all(r.state is not RunState.SKIPPED for r in default_runs)
    finally:
        await second.stop()
