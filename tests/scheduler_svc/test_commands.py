"""Commands under concurrency: group commit keeps every guarantee of a command taken alone.

Concurrent API commands leave in shared script calls (`scheduler_svc.commands`); each is still
checked on its own (optimistic concurrency per schedule version, one create per request id),
answered only once appended and applied here, and judged on its own input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.store import SCHEDULE_LOG


@pytest.fixture
async def stub(scheduler_target: str) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        yield api_grpc.SchedulerServiceStub(channel)


def _add(
    name: str, cron: str = "0 3 * * *", request_id: str = ""
) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=name,
        request_id=request_id,
        schedule=schedule_pb2.ScheduleSpec(cron=cron, timezone="Europe/Berlin"),
        scrape=schedule_pb2.ScrapeSpec(urls=[f"http://shop.example/{name.replace(' ', '-')}"]),
    )


async def _created_in_log(redis: Redis) -> int:
    entries = await redis.xrange(SCHEDULE_LOG)
    bodies = [decode_body(Envelope.from_fields(fields)) for _, fields in entries]
    return sum(isinstance(body, events_pb2.ScheduleCreated) for body in bodies)


async def test_commands_concurrent_creates_with_one_request_id_make_one_schedule(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    request = _add("once", request_id="retried-by-many")
    answers = await asyncio.gather(
        *(stub.AddScheduledCampaign(request, timeout=10) for _ in range(24))
    )
    assert len({answer.schedule_id for answer in answers}) == 1
    assert {answer.version for answer in answers} == {1}
    listed = await stub.ListSchedules(api.ListSchedulesRequest(), timeout=5)
    assert [s.schedule_id for s in listed.schedules] == [answers[0].schedule_id]
    assert await _created_in_log(state_redis) == 1


async def test_commands_a_request_id_reused_for_another_create_is_already_exists(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    first, other = _add("first", request_id="shared"), _add("other", request_id="shared")
    answers = await asyncio.gather(
        *(stub.AddScheduledCampaign(r, timeout=10) for r in [first, other] * 4),
        return_exceptions=True,
    )
    created = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(created) + len(refused) == 8 and len(created) >= 1 and len(refused) >= 1
    assert len({a.schedule_id for a in created}) == 1  # whichever came first, only it
    assert {e.code() for e in refused} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_commands_concurrent_creates_are_each_readable_once_answered(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    async def create_then_read(n: int) -> tuple[str, str]:
        created = await stub.AddScheduledCampaign(_add(f"shop {n}", f"{n} 3 * * *"), timeout=10)
        got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
        assert got.version == 1 and got.spec.cron == f"{n} 3 * * *"
        return created.schedule_id, got.name

    read = await asyncio.gather(*(create_then_read(n) for n in range(40)))
    assert sorted(name for _, name in read) == sorted(f"shop {n}" for n in range(40))
    assert len({sid for sid, _ in read}) == 40
    assert await _created_in_log(state_redis) == 40


async def test_commands_concurrent_updates_of_one_version_let_exactly_one_win(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    created = await stub.AddScheduledCampaign(_add("contested"), timeout=5)

    def update(n: int) -> api.UpdateScheduleRequest:
        return api.UpdateScheduleRequest(
            schedule_id=created.schedule_id,
            expected_version=1,
            name=f"writer {n}",
            schedule=created.spec,
            scrape=created.scrape,
        )

    answers = await asyncio.gather(
        *(stub.UpdateSchedule(update(n), timeout=10) for n in range(12)), return_exceptions=True
    )
    won = [a for a in answers if not isinstance(a, BaseException)]
    lost = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 11
    assert {e.code() for e in lost} == {grpc.StatusCode.ABORTED}
    got = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=created.schedule_id))
    assert got.version == 2 and got.name == won[0].name


async def test_commands_a_bad_create_among_concurrent_ones_names_its_field_alone(
    stub: api_grpc.SchedulerServiceStub,
) -> None:
    requests = [_add(f"good {n}") for n in range(9)] + [_add("bad", cron="61 * * * *")]
    answers = await asyncio.gather(
        *(stub.AddScheduledCampaign(r, timeout=10) for r in requests), return_exceptions=True
    )
    bad = answers[-1]
    assert isinstance(bad, grpc.aio.AioRpcError)
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "schedule.cron" in str(bad.details())
    assert all(not isinstance(a, BaseException) and a.version == 1 for a in answers[:-1])
    listed = await stub.ListSchedules(api.ListSchedulesRequest(), timeout=5)
    assert len(listed.schedules) == 9
