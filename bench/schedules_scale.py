"""Many schedules: creation rate through gRPC, restart to SERVING and RSS, beside APScheduler.

Peer (same run, same machine): APScheduler 3 `AsyncIOScheduler` (in-memory job store) adding
the same N cron jobs, in a process of its own: add rate, time to add all, RSS after.

Ours: an embedded state Valkey and one `python -m scheduler_svc` process. N cron schedules
(60 distinct expressions x 4 zones, one URL each, like a real fleet) are created through the
public gRPC API with 32 calls in flight (one client, one channel: the way a service or the
gateway would call it); the rate of the first and the last 10% is reported (flatness), and the
CPU seconds per create of the scheduler and of this client (the client is not the bottleneck:
it needs a fraction of what the scheduler does). Then the scheduler is stopped (SIGTERM) and
started again: seconds from spawn to gRPC health SERVING, and its RSS once serving.

Both sides do the same work per job: build a cron trigger for one of the same 240 (expression,
zone) pairs, compute its next fire and keep the job; both are timed from the first add to the
last one done, start-up excluded. APScheduler adds in its own memory, one call after another;
ours answers each create only once it is durable in Redis and applied (read-your-writes).

    .venv/bin/python bench/schedules_scale.py [N] [--in-flight K]   (default 100000, 32; minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import EmbeddedRedis
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import ServiceProcess, eventually, free_port, grpc_serving

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
IN_FLIGHT = 32

PEER = """
import json, resource, sys, time
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
import asyncio

ZONES = {zones!r}
n = int(sys.argv[1])

async def main():
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.start()
    started = time.perf_counter()
    for i in range(n):
        trigger = CronTrigger.from_crontab(f"{{i % 60}} 3 * * *", timezone=ZONES[i % 4])
        scheduler.add_job(print, trigger, id=f"job-{{i}}", args=[i])
    elapsed = time.perf_counter() - started
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"elapsed_s": elapsed, "rate": n / elapsed, "rss_mib": rss_kib / 1024}}))

asyncio.run(main())
"""


def apscheduler_peer(n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PEER.format(zones=ZONES), str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _request(i: int) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=f"bench {i}",
        schedule=schedule_pb2.ScheduleSpec(cron=f"{i % 60} 3 * * *", timezone=ZONES[i % 4]),
        scrape=schedule_pb2.ScrapeSpec(urls=[f"http://shop-{i % 100}.example/p/{i}"]),
    )


async def create_all(
    target: str, n: int, in_flight: int = IN_FLIGHT, cpu_marks: list[float] | None = None
) -> list[float]:
    """Create n schedules; returns the completion time of each (seconds from the start).

    ``cpu_marks`` (with a pid as its first element) gets the CPU seconds that process has used
    appended at every tenth of the creates.
    """
    done: list[float] = []
    tenth = max(1, n // 10)
    next_i = 0
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                await stub.AddScheduledCampaign(_request(i), timeout=30)
                done.append(time.perf_counter() - started)
                if cpu_marks is not None and len(done) % tenth == 0:
                    cpu_marks.append(cpu_s(int(cpu_marks[0])))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return sorted(done)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def start_scheduler(url: str, port: int) -> tuple[ServiceProcess, float]:
    env = {
        "SCHEDULER_STATE_REDIS_URL": url,
        "SCHEDULER_PORT": str(port),
        "SCHEDULER_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    process = ServiceProcess("scheduler_svc", env).start()
    await eventually(
        lambda: grpc_serving(f"127.0.0.1:{port}"), timeout_s=900, what="scheduler SERVING"
    )
    return process, time.perf_counter() - started


def _rate(times: list[float], lo: int, hi: int) -> float:
    start = times[lo - 1] if lo > 0 else 0.0
    return (hi - lo) / (times[hi - 1] - start)


async def ours(n: int, in_flight: int) -> dict[str, Any]:
    redis = EmbeddedRedis("bench-scale").start()
    port = free_port()
    try:
        process, _ = await start_scheduler(redis.url, port)
        try:
            server_cpu_s, client_cpu_s = cpu_s(process.pid), time.process_time()
            marks: list[float] = [process.pid, server_cpu_s]
            times = await create_all(f"127.0.0.1:{port}", n, in_flight, marks)
            server_cpu_s, client_cpu_s = (
                cpu_s(process.pid) - server_cpu_s,
                time.process_time() - client_cpu_s,
            )
            tenth = max(1, n // 10)
            result = {
                "create_rate": n / times[-1],
                "first_10pct_rate": _rate(times, 0, tenth),
                "last_10pct_rate": _rate(times, n - tenth, n),
                "scheduler_cpu_us_per_create_per_tenth": [
                    round((b - a) / tenth * 1e6) for a, b in itertools.pairwise(marks[1:])
                ],
                "rate_per_tenth": [
                    round(_rate(times, k * tenth, (k + 1) * tenth)) for k in range(10)
                ],
                "scheduler_cpu_us_per_create": server_cpu_s / n * 1e6,
                "client_cpu_us_per_create": client_cpu_s / n * 1e6,
                "rss_after_create_mib": rss_mib(process.pid),
            }
        finally:
            process.terminate(timeout_s=60)
            process.close()
        process, restart_s = await start_scheduler(redis.url, port)
        try:
            result["restart_to_serving_s"] = restart_s
            result["rss_after_restart_mib"] = rss_mib(process.pid)
        finally:
            process.terminate(timeout_s=60)
            process.close()
        return result
    finally:
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="schedules (jobs)")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="calls in flight")
    args = parser.parse_args()
    n, in_flight = args.n, args.in_flight
    print(f"load average before: {os.getloadavg()}, {in_flight} calls in flight", flush=True)
    peer = apscheduler_peer(n)
    print(f"APScheduler 3, {n} cron jobs: {json.dumps(peer)}", flush=True)
    mine = asyncio.run(ours(n, in_flight))
    print(f"ours, {n} schedules: {json.dumps(mine)}", flush=True)
    cpu = mine["scheduler_cpu_us_per_create_per_tenth"]
    print(
        f"ratios: restart/APScheduler-add {mine['restart_to_serving_s'] / peer['elapsed_s']:.2f}"
        f" (target <= 0.33), RSS {mine['rss_after_restart_mib'] / peer['rss_mib']:.2f}"
        f" (<= 0.8), create rate {mine['create_rate'] / peer['rate']:.2f} (>= 0.5),"
        f" last/first 10% {mine['last_10pct_rate'] / mine['first_10pct_rate']:.2f} (>= 0.8),"
        f" scheduler CPU per create first/last 10% {cpu[0] / cpu[-1]:.2f} (the same flatness,"
        " free of what else the machine ran)"
    )


if __name__ == "__main__":
    main()
