"""SchedulerService over a real grpc.aio server and a real state Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from redis.asyncio import Redis

from campaign_common.runs.writer import Writer
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import PARTITIONS, eventually, runs_stream, xlen_all, xrange_all


@pytest.fixture
async def stub(scheduler_target: str) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        yield api_grpc.SchedulerServiceStub(channel)


def _add(interval_s: int = 3600, **spec: object) -> api.AddScheduledCampaignRequest:
    schedule = (
        schedule_pb2.ScheduleSpec(**spec)
        if spec
        else schedule_pb2.ScheduleSpec(interval_seconds=interval_s)
    )
    return api.AddScheduledCampaignRequest(
        name="Spring leads",
        campaign_id="spring-leads",
        schedule=schedule,
        scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"], selectors={"t": "h1"}),
    )


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            bad = error_details_pb2.BadRequest()
            status.details[0].Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


async def test_service_create_get_list_pause_resume_delete(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    assert created.version == 1 and created.state == schedule_pb2.SCHEDULE_STATE_ACTIVE
    assert len(created.next_fire_times) == 5
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.spec.interval_seconds == 3600 and got.scrape.selectors["t"] == "h1"
    paused = await stub.PauseSchedule(
        api.PauseScheduleRequest(schedule_id=created.schedule_id, note="holiday")
    )
    assert paused.state == schedule_pb2.SCHEDULE_STATE_PAUSED and paused.version == 2
    assert paused.paused_note == "holiday" and not paused.next_fire_times
    resumed = await stub.ResumeSchedule(api.ResumeScheduleRequest(schedule_id=created.schedule_id))
    assert resumed.state == schedule_pb2.SCHEDULE_STATE_ACTIVE and resumed.version == 3
    await stub.DeleteSchedule(api.DeleteScheduleRequest(schedule_id=created.schedule_id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_service_list_schedules_pages_in_creation_order(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    ids = [(await stub.AddScheduledCampaign(_add(), timeout=5)).schedule_id for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListSchedules(api.ListSchedulesRequest(page_size=2, page_token=token))
        seen += [s.schedule_id for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


async def test_service_invalid_input_names_every_bad_field(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    request = _add(cron="0 25 * * *", timezone="Mars/Olympus")
    request.campaign_id = "Bad_Id"
    request.scrape.urls.append("ftp://example.com/")
    request.scrape.selectors["price"] = "div >"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(info.value)) == {
        "campaign_id",
        "schedule.cron",
        "schedule.timezone",
        "scrape.urls[1]",
        "scrape.selectors.price",
    }
    no_timing = _add()
    no_timing.ClearField("schedule")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(no_timing)
    assert "schedule" in _violations(info.value)


async def _schedule_ids(stub: api_grpc.SchedulerServiceStub) -> list[str]:
    page = await stub.ListSchedules(api.ListSchedulesRequest(page_size=500), timeout=5)
    return [s.schedule_id for s in page.schedules]


async def test_service_validate_only_previews_without_creating(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    before = await _schedule_ids(stub)
    request = _add(cron="30 8 * * 1-5", timezone="Europe/Berlin")
    request.validate_only = True
    request.request_id = "preview-then-create"
    preview = await stub.AddScheduledCampaign(request, timeout=5)
    assert preview.schedule_id == "" and preview.version == 0
    assert preview.campaign_id == "spring-leads" and preview.spec.cron == "30 8 * * 1-5"
    assert len(preview.next_fire_times) == 5
    assert all(t.seconds > now_ms() // 1000 for t in preview.next_fire_times)
    assert await _schedule_ids(stub) == before
    request.validate_only = False  # the preview reserved neither the request id nor anything
    created = await stub.AddScheduledCampaign(request, timeout=5)
    assert created.schedule_id and created.version == 1
    assert list(created.next_fire_times) == list(preview.next_fire_times)
    assert await _schedule_ids(stub) == [*before, created.schedule_id]


async def test_service_validate_only_names_the_bad_fields(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    before = await _schedule_ids(stub)
    request = _add(cron="0 25 * * *", timezone="Mars/Olympus")
    request.validate_only = True
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(info.value)) == {"schedule.cron", "schedule.timezone"}
    assert await _schedule_ids(stub) == before


async def test_service_unknown_ids_are_not_found(stub: api_grpc.SchedulerServiceStub) -> None:
    calls = [
        stub.GetSchedule(api.GetScheduleRequest(schedule_id="nope")),
        stub.PauseSchedule(api.PauseScheduleRequest(schedule_id="nope")),
        stub.TriggerCampaign(api.TriggerCampaignRequest(schedule_id="nope")),
        stub.GetRun(api.GetRunRequest(run_id="nope:1")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_service_interval_fires_emit_deterministic_run_ids(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    created = await stub.AddScheduledCampaign(_add(interval_s=1), timeout=5)

    async def two_runs() -> list[str] | None:
        runs = await stub.ListRuns(api.ListRunsRequest(schedule_id=created.schedule_id))
        return [r.run_id for r in runs.runs] if len(runs.runs) >= 2 else None

    run_ids = await eventually(two_runs, timeout_s=10, what="two fires")
    created_ms = created.created_at.ToMilliseconds()
    for run_id in run_ids:
        schedule_id, fire_ms = run_id.split(":")
        assert schedule_id == created.schedule_id
        assert (int(fire_ms) - created_ms) % 1000 == 0  # on the interval grid from creation
        assert int(fire_ms) <= now_ms()
    assert run_ids == sorted(run_ids, reverse=True)  # newest first
    assert await xlen_all(state_redis, runs_stream) >= 2


async def test_service_manual_trigger_gets_a_unique_run(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    request = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    first = (await stub.TriggerCampaign(request)).run_id
    second = (await stub.TriggerCampaign(request)).run_id
    assert first != second and first.startswith(created.schedule_id + ":manual-")
    run = await stub.GetRun(api.GetRunRequest(run_id=first))
    assert run.trigger == 2 and run.state == 1  # MANUAL, REQUESTED


async def test_service_one_shot_fires_once_then_completes(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    request = _add()
    request.schedule.Clear()
    request.schedule.run_at.FromMilliseconds(now_ms() + 300)
    created = await stub.AddScheduledCampaign(request, timeout=5)

    async def completed() -> bool:
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        return got.state == schedule_pb2.SCHEDULE_STATE_COMPLETED

    await eventually(completed, timeout_s=10, what="one-shot COMPLETED")
    runs = await stub.ListRuns(api.ListRunsRequest(schedule_id=created.schedule_id))
    assert len(runs.runs) == 1


async def test_service_steps_over_unknown_and_malformed_log_entries(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    from campaign_common.envelope import Envelope
    from scheduler_svc.store import SCHEDULE_LOG

    await state_redis.xadd(SCHEDULE_LOG, {"garbage": "1"})
    future = Envelope(type="ScheduleRenamedV9", body=b"\x01", occurred_at_ms=now_ms())
    await state_redis.xadd(SCHEDULE_LOG, future.to_fields())  # type: ignore[arg-type]
    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.version == 1


async def _first_run_envelope(state_redis: Redis) -> object:
    from campaign_common.envelope import Envelope

    async def first() -> object:
        entries = await xrange_all(state_redis, runs_stream)
        return Envelope.from_fields(entries[0][1]) if entries else None

    return await eventually(first, timeout_s=10, what="a run request")


async def test_service_trigger_continues_the_callers_trace(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
    request = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    await stub.TriggerCampaign(request, metadata=metadata)
    envelope = await _first_run_envelope(state_redis)
    assert envelope.traceparent.split("-")[1] == trace_id  # type: ignore[attr-defined]


async def test_service_each_fire_starts_a_trace(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    await stub.AddScheduledCampaign(_add(interval_s=1), timeout=5)
    envelope = await _first_run_envelope(state_redis)
    version, trace_id, span_id, _flags = envelope.traceparent.split("-")  # type: ignore[attr-defined]
    assert version == "00" and int(trace_id, 16) != 0 and int(span_id, 16) != 0


async def test_service_limits_round_trip_and_are_validated(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    request = _add()
    request.limits.CopyFrom(
        schedule_pb2.RunLimits(
            overlap=schedule_pb2.OVERLAP_POLICY_BUFFER_ONE,
            max_runs_per_window=10,
            window_seconds=3600,
            start_deadline_seconds=30,
            run_timeout_seconds=60,
        )
    )
    created = await stub.AddScheduledCampaign(request, timeout=5)
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.limits == request.limits
    bad = _add()
    bad.limits.max_runs_per_window = 5
    bad.limits.run_timeout_seconds = -1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(bad)
    assert set(_violations(info.value)) == {"limits.window_seconds", "limits.run_timeout_seconds"}


async def test_service_max_total_runs_then_completed(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    request = _add(interval_s=1)
    request.limits.max_total_runs = 2
    created = await stub.AddScheduledCampaign(request, timeout=5)

    async def completed() -> bool:
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        return got.state == schedule_pb2.SCHEDULE_STATE_COMPLETED

    await eventually(completed, timeout_s=10, what="COMPLETED after 2 runs")
    runs = await stub.ListRuns(api.ListRunsRequest(schedule_id=created.schedule_id))
    assert len(runs.runs) == 2
    assert await xlen_all(state_redis, runs_stream) == 2


async def test_service_empty_cron_is_reported_on_the_cron_field(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(_add(cron=""))
    assert set(_violations(info.value)) == {"schedule.cron"}


async def test_service_dead_letters_list_retry_purge(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    from campaign_common.runs.deadletters import DeadLetters
    from campaigns.v1 import events_pb2

    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    run_id = (
        await stub.TriggerCampaign(api.TriggerCampaignRequest(schedule_id=created.schedule_id))
    ).run_id
    parked = events_pb2.RunRequested(
        run_id=run_id, schedule_id=created.schedule_id, campaign_id="spring-leads", attempt=3
    )
    dead = DeadLetters(state_redis, PARTITIONS)
    other = events_pb2.RunRequested()
    other.CopyFrom(parked)
    other.run_id = f"{run_id}-other"
    first = await dead.add(parked, "HTTP 503", deliveries=3, writer=Writer(parked.campaign_id))
    second = await dead.add(
        other, "HTTP 503", deliveries=3, writer=Writer(other.campaign_id)
    )  # a run attempt is parked once
    listed = await stub.ListDeadLetters(api.ListDeadLettersRequest(page_size=1))
    assert [d.id for d in listed.dead_letters] == [second] and listed.next_page_token
    assert listed.dead_letters[0].error == "HTTP 503"
    retried = await stub.RetryDeadLetter(api.RetryDeadLetterRequest(id=first))
    assert retried.run_id == run_id and retried.attempt == 4
    run = await stub.GetRun(api.GetRunRequest(run_id=run_id))
    assert run.attempt == 4 and run.state == 1  # REQUESTED again
    await stub.PurgeDeadLetter(api.PurgeDeadLetterRequest(id=second))
    for call in (
        stub.RetryDeadLetter(api.RetryDeadLetterRequest(id=first)),
        stub.PurgeDeadLetter(api.PurgeDeadLetterRequest(id=second)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def _retry(**fields: float) -> schedule_pb2.RetryPolicy:
    return schedule_pb2.RetryPolicy(**fields)  # type: ignore[arg-type]


async def test_service_retry_policy_round_trips(stub: api_grpc.SchedulerServiceStub) -> None:
    request = _add()
    policy = _retry(
        max_attempts=5, initial_delay_seconds=2, max_delay_seconds=60, multiplier=3, jitter=0.5
    )
    request.retry_policy.CopyFrom(policy)
    created = await stub.AddScheduledCampaign(request, timeout=5)
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert created.retry_policy == policy and got.retry_policy == policy


async def test_service_retry_policy_absent_or_zero_shows_the_defaults(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    defaults = _retry(
        max_attempts=3, initial_delay_seconds=5, max_delay_seconds=300, multiplier=2, jitter=0.2
    )
    without = await stub.AddScheduledCampaign(_add(), timeout=5)
    zeros = _add()
    zeros.retry_policy.CopyFrom(_retry(max_attempts=0, multiplier=0))
    with_zeros = await stub.AddScheduledCampaign(zeros, timeout=5)
    for created in (without, with_zeros):
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        assert got.retry_policy == defaults and got.retry_policy.HasField("jitter")


async def test_service_retry_policy_explicit_zero_jitter_is_kept(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    request = _add()
    request.retry_policy.jitter = 0.0
    created = await stub.AddScheduledCampaign(request, timeout=5)
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.retry_policy.HasField("jitter") and got.retry_policy.jitter == 0.0
    assert got.retry_policy.max_attempts == 3  # the rest took the defaults


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"max_attempts": 101}, {"retry_policy.max_attempts"}),
        ({"multiplier": 0.5}, {"retry_policy.multiplier"}),
        ({"jitter": 1.5}, {"retry_policy.jitter"}),
        (
            {"initial_delay_seconds": 60, "max_delay_seconds": 30},
            {"retry_policy.max_delay_seconds"},
        ),
        ({"initial_delay_seconds": float("nan")}, {"retry_policy.initial_delay_seconds"}),
        ({"multiplier": float("nan")}, {"retry_policy.multiplier"}),
        (
            {"max_attempts": -1, "multiplier": 0.5, "jitter": 1.5},
            {"retry_policy.max_attempts", "retry_policy.multiplier", "retry_policy.jitter"},
        ),
    ],
)
async def test_service_retry_policy_invalid_values_are_field_violations(
    stub: api_grpc.SchedulerServiceStub, fields: dict[str, float], violations: set[str]
) -> None:
    request = _add()
    request.retry_policy.CopyFrom(_retry(**fields))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AddScheduledCampaign(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(info.value)) == violations
    listed = await stub.ListSchedules(api.ListSchedulesRequest())
    assert not listed.schedules  # nothing was created


async def _run_requests(state_redis: Redis, count: int) -> list[events_pb2.RunRequested]:
    """The RunRequested bodies on the runs stream, once there are at least ``count``."""
    from campaign_common.envelope import Envelope, decode_body

    async def requests() -> list[events_pb2.RunRequested] | None:
        entries: Any = await xrange_all(state_redis, runs_stream)
        bodies = [decode_body(Envelope.from_fields(fields)) for _, fields in entries]
        found = [body for body in bodies if isinstance(body, events_pb2.RunRequested)]
        return found if len(found) >= count else None

    found: list[events_pb2.RunRequested] = await eventually(
        requests, timeout_s=10, what=f"{count} run requests"
    )
    return found


async def test_service_run_requests_carry_the_retry_policy(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    policy = _retry(
        max_attempts=4, initial_delay_seconds=1, max_delay_seconds=8, multiplier=2, jitter=0
    )
    request = _add(interval_s=1)
    request.retry_policy.CopyFrom(policy)
    created = await stub.AddScheduledCampaign(request, timeout=5)
    await stub.TriggerCampaign(api.TriggerCampaignRequest(schedule_id=created.schedule_id))
    emitted = await _run_requests(state_redis, 2)  # the manual run and at least one fire
    assert all(message.retry_policy == policy for message in emitted)
    triggers = {message.trigger for message in emitted}
    assert {run_pb2.RUN_TRIGGER_MANUAL, run_pb2.RUN_TRIGGER_SCHEDULED} <= triggers


async def test_service_run_requests_of_a_schedule_without_policy_carry_the_defaults(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    from campaign_common.retry_policy import RetryPolicy, from_proto

    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    await stub.TriggerCampaign(api.TriggerCampaignRequest(schedule_id=created.schedule_id))
    [message] = await _run_requests(state_redis, 1)
    assert message.retry_policy.HasField("jitter")  # the effective policy, spelled out
    assert from_proto(message.retry_policy) == RetryPolicy()


async def test_service_schedule_logged_before_retry_policies_reads_the_defaults(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    from campaign_common.envelope import wrap
    from scheduler_svc.store import SCHEDULE_LOG

    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    old = schedule_pb2.Schedule()
    old.CopyFrom(created)
    old.ClearField("retry_policy")
    old.ClearField("next_fire_times")
    old.version = 2
    old.paused_note = "from an older scheduler"
    old.state = schedule_pb2.SCHEDULE_STATE_PAUSED
    event = events_pb2.SchedulePaused(schedule=old, note=old.paused_note)
    await state_redis.xadd(SCHEDULE_LOG, wrap(event).to_fields())  # type: ignore[arg-type]

    async def paused() -> schedule_pb2.Schedule | None:
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        return got if got.version == 2 else None

    got = await eventually(paused, timeout_s=10, what="the old-style event applied")
    assert got.retry_policy == created.retry_policy  # the defaults, filled in
    assert got.retry_policy.max_attempts == 3 and got.retry_policy.jitter == pytest.approx(0.2)


async def test_service_run_shows_next_attempt_at_only_while_the_retry_waits(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    from campaign_common.runs.log import RunLog
    from campaign_common.runs.record import RunState
    from campaign_common.timeutil import ms_to_timestamp

    created = await stub.AddScheduledCampaign(_add(), timeout=5)
    request = api.TriggerCampaignRequest(schedule_id=created.schedule_id)
    run_id = (await stub.TriggerCampaign(request)).run_id
    fresh = await stub.GetRun(api.GetRunRequest(run_id=run_id))
    assert not fresh.HasField("next_attempt_at")
    due_ms = now_ms() + 30_000
    runs = RunLog(state_redis, PARTITIONS)
    waiting = events_pb2.RunRetryScheduled(
        run_id=run_id, attempt=1, reason="HTTP 503", next_attempt_at=ms_to_timestamp(due_ms)
    )
    changes: dict[str, str | int] = {"next_attempt_at_ms": due_ms, "error": "HTTP 503"}
    await runs.append_event(
        waiting,
        state=RunState.RETRY_SCHEDULED,
        changes=changes,
        writer=Writer(fresh.campaign_id),
    )
    run = await stub.GetRun(api.GetRunRequest(run_id=run_id))
    assert run.state == run_pb2.RUN_STATE_RETRY_SCHEDULED
    assert run.next_attempt_at.ToMilliseconds() == due_ms and run.error == "HTTP 503"
    started = events_pb2.RunStarted(run_id=run_id, attempt=2)
    await runs.append_event(
        started,
        state=RunState.RUNNING,
        changes={"started_at_ms": now_ms()},
        writer=Writer(fresh.campaign_id),
    )
    running = await stub.GetRun(api.GetRunRequest(run_id=run_id))
    assert running.state == run_pb2.RUN_STATE_RUNNING and running.attempt == 2
    assert not running.HasField("next_attempt_at")  # a stale due time is not shown
