"""A burst: N one-shot schedules due at one instant, beside arq enqueuing N jobs.

Ours: an embedded state Valkey and one `python -m scheduler_svc` process (no scrapers: this
measures emission). N one-shot schedules are created through gRPC, all due at one instant T.
Reported: seconds from T until the last run request is in the runs stream (the stream ids are
the server's clock), the CPU seconds of the scheduler and of the state server from T until
the bench saw them all (less disturbed by a loaded machine than the elapsed time), and the
latency of GetSchedule calls made one after another from T until the burst is over (p50, p99,
max, failures): the API during a burst.

Peer (same run, same kind of server, a fresh one): arq's `enqueue_job` of N jobs deferred to
one instant, in the peers venv (`make bench-peers`): seconds from the first to the last.

    .venv/bin/python bench/burst.py [N]        (default 10000)
    .venv/bin/python bench/burst.py N --profile DIR    (ours only, under py-spy: not figures)

With ``--profile`` the scheduler is sampled by py-spy (`make bench-peers`) from just before
the instant until the burst is over, and the functions with the largest share of samples are
printed (collapsed stacks kept in DIR); sampling slows it down, so its times are not the
benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import grpc
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.run_path_profile import recording, summarise
from bench.schedules_scale import IN_FLIGHT, cpu_s, start_scheduler
from campaign_common.localstack.embedded import EmbeddedRedis, free_port
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import PARTITIONS, runs_stream, xlen_all

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


async def _create(stub: api_grpc.SchedulerServiceStub, n: int, due_ms: int) -> list[str]:
    ids: list[str] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            request = api.AddScheduledCampaignRequest(
                name=f"burst {i}",
                schedule=schedule_pb2.ScheduleSpec(run_at=ms_to_timestamp(due_ms)),
                scrape=schedule_pb2.ScrapeSpec(urls=[f"http://shop.example/p/{i}"]),
            )
            ids.append((await stub.AddScheduledCampaign(request, timeout=30)).schedule_id)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return ids


async def _probe(stub: api_grpc.SchedulerServiceStub, schedule_id: str, stop: asyncio.Event):  # type: ignore[no-untyped-def]
    latencies_ms: list[float] = []
    failures = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await stub.GetSchedule(api.GetScheduleRequest(schedule_id=schedule_id), timeout=5)
        except grpc.aio.AioRpcError:
            failures += 1
        latencies_ms.append((time.perf_counter() - started) * 1000)
    return latencies_ms, failures


async def _emitted(redis: Redis) -> tuple[int, int]:
    """(run requests in the streams, server ms of the last one)."""
    count = await xlen_all(redis, runs_stream)
    lasts = [await redis.xrevrange(p.runs_stream, count=1) for p in PARTITIONS]
    return count, max((int(last[0][0].split(b"-")[0]) for last in lasts if last), default=0)


async def ours(n: int, profile: Path | None = None) -> dict[str, float]:
    server = EmbeddedRedis("bench-burst").start()
    port = free_port()
    redis = Redis.from_url(server.url)
    process, _ = await start_scheduler(server.url, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            due_ms = now_ms() + 10_000 + n * 5  # enough to create them all first
            ids = await _create(stub, n, due_ms)
            if now_ms() >= due_ms:
                raise SystemExit("creating took longer than the lead time: raise it")
            await asyncio.sleep(max(0.0, (due_ms - now_ms() - 500) / 1000))
            sampled: AbstractContextManager[None] = (
                nullcontext()
                if profile is None
                else recording(profile, {"scheduler": process.pid}, 250)
            )
            with sampled:
                await asyncio.sleep(max(0.0, (due_ms - now_ms()) / 1000))
                cpu_before_s = cpu_s(process.pid)
                server_before_s = cpu_s(server.pid or 0)
                stop = asyncio.Event()
                probe = asyncio.create_task(_probe(stub, ids[0], stop))
                for _ in range(6000):  # 5 minutes at most
                    if (await _emitted(redis))[0] >= n:
                        break
                    await asyncio.sleep(0.05)
                burst_cpu_s = cpu_s(process.pid) - cpu_before_s
                server_cpu_s = cpu_s(server.pid or 0) - server_before_s
                stop.set()
                latencies, failures = await probe
            count, last_ms = await _emitted(redis)
    finally:
        process.terminate(timeout_s=60)
        process.close()
        await redis.aclose()
        server.stop()
    latencies.sort()
    return {
        "emitted": count,
        "all_emitted_after_s": (last_ms - due_ms) / 1000,
        "scheduler_cpu_s": burst_cpu_s,  # from the instant until all were seen emitted
        "valkey_cpu_s": server_cpu_s,  # the same, of the state server
        "api_calls": len(latencies),
        "api_failures": failures,
        "api_p50_ms": statistics.median(latencies),
        "api_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "api_max_ms": latencies[-1],
    }


def arq_enqueue(n: int) -> dict[str, float]:
    server = EmbeddedRedis("bench-burst-arq").start()
    try:
        done = subprocess.run(
            [
                str(PEERS_PYTHON),
                str(ROOT / "bench" / "arq_peer.py"),
                "enqueue",
                server.url,
                str(n),
                str(now_ms() + 3_600_000),
                "http://127.0.0.1:1/",
                "noop",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.stop()
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000, help="schedules due at once")
    parser.add_argument("--profile", type=Path, help="sample ours with py-spy into this folder")
    args = parser.parse_args()
    n = args.n
    if not PEERS_PYTHON.exists():
        raise SystemExit("no .venv-peers: run `make bench-peers` first")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(ours(n, args.profile))
        print(f"ours under py-spy, {n} due at one instant: {json.dumps(result)}")
        summarise(args.profile / "scheduler.txt", 30)
        return
    print(f"load average before: {os.getloadavg()}", flush=True)
    peer = arq_enqueue(n)
    print(f"arq enqueue_job x {n}: {json.dumps(peer)}", flush=True)
    mine = asyncio.run(ours(n))
    print(f"ours, {n} due at one instant: {json.dumps(mine)}", flush=True)
    ratio = mine["all_emitted_after_s"] / peer["elapsed_s"]
    print(f"ratio: all emitted / arq enqueue = {ratio:.2f} (target <= 0.5)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
