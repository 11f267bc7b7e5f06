"""How soon a command sent to one scheduler replica is visible on another.

Starts an embedded state Redis and two `python -m scheduler_svc` processes, then N times:
create a schedule through replica B and poll replica A's GetSchedule (tight loop) until it
answers; prints the distribution of create-answered -> visible-on-A. Also pauses through A
and waits for B to show it. Stops everything afterwards.

    .venv/bin/python bench/replica_visibility.py [samples]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import EmbeddedRedis
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import start_scheduler_process


async def _until(probe: object, deadline_s: float = 10.0) -> float:
    """Seconds until ``probe()`` is true (polled without pause), or fail."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        if await probe():  # type: ignore[operator]
            return time.perf_counter() - started
    raise SystemExit("not visible within the deadline")


async def _get(
    stub: api_grpc.SchedulerServiceStub, schedule_id: str
) -> schedule_pb2.Schedule | None:
    try:
        return await stub.GetSchedule(api.GetScheduleRequest(schedule_id=schedule_id), timeout=2)
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def main(samples: int) -> None:
    redis = EmbeddedRedis("bench-state").start()
    (proc_a, target_a), (proc_b, target_b) = (
        await start_scheduler_process(redis.url),
        await start_scheduler_process(redis.url),
    )
    created_ms: list[float] = []
    paused_ms: list[float] = []
    try:
        async with (
            grpc.aio.insecure_channel(target_a) as channel_a,
            grpc.aio.insecure_channel(target_b) as channel_b,
        ):
            stub_a = api_grpc.SchedulerServiceStub(channel_a)
            stub_b = api_grpc.SchedulerServiceStub(channel_b)
            for n in range(samples):
                request = api.AddScheduledCampaignRequest(
                    name=f"bench {n}",
                    schedule=schedule_pb2.ScheduleSpec(cron="0 3 * * *"),
                    scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                )
                made = await stub_b.AddScheduledCampaign(request, timeout=5)

                async def created_on_a(schedule_id: str = made.schedule_id) -> bool:
                    return await _get(stub_a, schedule_id) is not None

                created_ms.append(1000 * await _until(created_on_a))
                pause = api.PauseScheduleRequest(schedule_id=made.schedule_id, note="bench")
                await stub_a.PauseSchedule(pause, timeout=5)

                async def paused_on_b(schedule_id: str = made.schedule_id) -> bool:
                    got = await _get(stub_b, schedule_id)
                    return got is not None and got.state == schedule_pb2.SCHEDULE_STATE_PAUSED

                paused_ms.append(1000 * await _until(paused_on_b))
    finally:
        proc_a.close()
        proc_b.close()
        redis.stop()
    for what, values in (
        ("create on B -> visible on A", created_ms),
        ("pause on A -> on B", paused_ms),
    ):
        ordered = sorted(values)
        print(
            f"{what}: n={len(values)} p50={statistics.median(values):.1f} ms "
            f"p95={ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms max={ordered[-1]:.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
