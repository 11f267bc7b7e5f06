"""ListResults paged like every list, over a real gRPC server and a real state Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.runs.log import RunLog
from campaign_common.runs.writer import Writer
from campaigns.v1 import run_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import PARTITIONS


@pytest.fixture
async def stub(scheduler_target: str) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        yield api_grpc.SchedulerServiceStub(channel)


async def _add(runs: RunLog, *run_ids: str) -> None:
    for run_id in run_ids:
        await runs.add_results(
            "c", [run_pb2.ScrapeResult(run_id=run_id, url="http://x/")], writer=Writer("c")
        )


async def _page(
    stub: api_grpc.SchedulerServiceStub, size: int, token: str = ""
) -> tuple[list[str], str]:
    request = api.ListResultsRequest(campaign_id="c", page_size=size, page_token=token)
    page = await stub.ListResults(request, timeout=5)
    return [r.run_id for r in page.results], page.next_page_token


async def test_results_page_newest_first_to_the_end(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    await _add(RunLog(state_redis, PARTITIONS), *(f"r{i}" for i in range(7)))
    seen, token = await _page(stub, 3)
    pages = 1
    while token:
        more, token = await _page(stub, 3, token)
        seen += more
        pages += 1
    assert seen == [f"r{i}" for i in range(6, -1, -1)] and pages == 3


async def test_results_added_between_pages_neither_repeat_nor_skip(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    runs = RunLog(state_redis, PARTITIONS)
    await _add(runs, "a", "b", "c", "d")
    first, token = await _page(stub, 2)
    await _add(runs, "e", "f", "g")  # pushed in front of everything already listed
    second, token = await _page(stub, 2, token)
    assert (first, second, token) == (["d", "c"], ["b", "a"], "")


async def test_results_page_after_the_cap_dropped_the_last_seen_one_is_the_end(
    stub: api_grpc.SchedulerServiceStub, state_redis: Redis
) -> None:
    runs = RunLog(state_redis, PARTITIONS, results_cap=3)
    await _add(runs, "a", "b", "c")
    first, token = await _page(stub, 2)
    await _add(runs, "d", "e", "f")  # the cap drops a, b, c
    assert first == ["c", "b"] and await _page(stub, 2, token) == ([], "")


@pytest.mark.parametrize("token", ["!!!", "Zm9v", "MTI6eHl6"])
async def test_results_forged_page_token_is_invalid_argument(
    stub: api_grpc.SchedulerServiceStub, token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _page(stub, 2, token)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fix page_token" in (info.value.details() or "")
