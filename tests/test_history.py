"""The proof: a history of 1,000+ runs under injected faults, checked end to end.

Real processes: 3 scrapers, 2 schedulers, the state Redis and 3 lock masters. 20 campaigns
fire every second (half SKIP, half BUFFER_ONE; every 7th fetch of a campaign answers 503, so
attempts fail, retry and dead-letter). While they run, faults are injected on a plan paced by
the number of runs emitted so far (so a slow machine sees the same history, only later):
workers SIGKILLed and SIGSTOPped past their lease, a scheduler replica SIGKILLed and one
SIGSTOPped while a schedule is paused through the other, one worker's state Redis traffic
black-holed (a TCP proxy), one then two lock masters down, all lock masters killed and back
empty (their data lost), and replies of one worker's scripts dropped after they ran. At the
end every schedule is paused, the backlog drains, and `tests.history.check` judges what
happened; on a failure it prints the offending histories.

The size is set by HISTORY_RUNS and HISTORY_CAMPAIGNS (see docs/benchmarks.md for a longer run).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import grpc
import pytest
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.runs.log import RunLog
from campaign_common.timeutil import now_ms
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.faults import TcpProxy
from tests.history import FetchRecorder, check, read_history, summary
from tests.support import (
    PARTITIONS,
    ServiceProcess,
    delayed_all,
    eventually,
    runs_stream,
    scraper_process,
    start_scheduler_process,
    xlen_all,
)

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("HISTORY_RUNS", "1000"))
CAMPAIGNS = int(os.environ.get("HISTORY_CAMPAIGNS", "20"))
INTERVAL_MS = 1000
WORKER = {
    "SCRAPER_LOG_LEVEL": "WARNING",
    "SCRAPER_LOCK_TTL_MS": "1000",
    "SCRAPER_RECLAIM_IDLE_MS": "2000",
    "SCRAPER_RECLAIM_INTERVAL_S": "0.2",
    "SCRAPER_RETRY_DELAY_S": "0.1",
    "SCRAPER_RETRY_MAX_DELAY_S": "0.5",
    "SCRAPER_CONCURRENCY": "4",
    "SCRAPER_PER_HOST_CONCURRENCY": "16",  # every page is on 127.0.0.1
    "SCRAPER_REDIS_TIMEOUT_S": "1.0",
}


class Cluster:
    """The processes under test, and the moves the fault plan makes on them."""

    def __init__(self, state_url: str, lock_urls: list[str], stack: EmbeddedStack) -> None:
        self.state_url = state_url
        self.lock_urls = lock_urls
        self.stack = stack
        self.proxy = TcpProxy.to_url(state_url)  # worker w2 reaches the state Redis through it
        self.workers: dict[str, ServiceProcess] = {}
        self.schedulers: dict[str, tuple[ServiceProcess, str]] = {}
        self.faults: list[str] = []

    def start_worker(self, name: str) -> None:
        if name in self.workers:
            self.workers[name].close()  # the killed one
        state = self.proxy.url if name == "w2" else self.state_url
        self.workers[name] = scraper_process(state, self.lock_urls, name, **WORKER)

    async def start_scheduler(self, name: str) -> None:
        if name in self.schedulers:
            self.schedulers[name][0].close()  # the killed one
        self.schedulers[name] = await start_scheduler_process(
            self.state_url, SCHEDULER_LOG_LEVEL="WARNING"
        )

    def target(self, avoid: str = "") -> str:
        """A scheduler that is up (not ``avoid``)."""
        return next(t for name, (_, t) in self.schedulers.items() if name != avoid)

    def note(self, fault: str) -> None:
        self.faults.append(fault)

    def close(self) -> None:
        for process in self.workers.values():
            with_cont(process)
            process.close()
        for process, _ in self.schedulers.values():
            with_cont(process)
            process.close()
        self.proxy.close()


def with_cont(process: ServiceProcess) -> None:
    if process.proc is not None and process.proc.poll() is None:
        os.kill(process.pid, signal.SIGCONT)


async def _emitted(redis: Redis) -> int:
    return int(await xlen_all(redis, runs_stream))


async def _rpc(
    target: str, call: Callable[[api_grpc.SchedulerServiceStub], Awaitable[object]]
) -> object:
    async with grpc.aio.insecure_channel(target) as channel:
        return await call(api_grpc.SchedulerServiceStub(channel))


async def _create_schedules(cluster: Cluster, recorder: FetchRecorder) -> list[str]:
    ids = []
    for n in range(CAMPAIGNS):
        overlap = (
            schedule_pb2.OVERLAP_POLICY_BUFFER_ONE if n % 2 else schedule_pb2.OVERLAP_POLICY_SKIP
        )
        request = api.AddScheduledCampaignRequest(
            campaign_id=f"c{n}",
            name=f"history {n}",
            schedule=schedule_pb2.ScheduleSpec(interval_seconds=INTERVAL_MS // 1000),
            scrape=schedule_pb2.ScrapeSpec(urls=[recorder.url(f"c{n}")]),
            limits=schedule_pb2.RunLimits(overlap=overlap),
            retry_policy=schedule_pb2.RetryPolicy(
                max_attempts=3, initial_delay_seconds=0.2, jitter=0
            ),
        )
        created: object = await _rpc(
            cluster.target(), lambda s, r=request: s.AddScheduledCampaign(r, timeout=10)
        )
        ids.append(created.schedule_id)  # type: ignore[attr-defined]
    return ids


class Plan:
    """Runs each step once the runs stream has grown by its share of RUNS (progress, not time)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def at(self, share: float) -> None:
        # Retries and skipped fires ride the same stream: aim past RUNS so that many runs exist.
        target = int(RUNS * 1.2 * share)

        async def reached() -> bool:
            return await _emitted(self.redis) >= target

        await eventually(reached, timeout_s=120 + RUNS / 10, what=f"{target} runs emitted")


async def _inject(
    cluster: Cluster, plan: Plan, schedule_ids: list[str], paused: dict[str, range]
) -> None:
    await plan.at(0.08)
    cluster.workers["w0"].kill()
    cluster.note("SIGKILL worker w0")
    await plan.at(0.12)
    cluster.start_worker("w0")  # same consumer name: it resumes its pending entries
    cluster.schedulers["a"][0].kill()
    cluster.note("SIGKILL scheduler a")
    await plan.at(0.16)
    await cluster.start_scheduler("a")
    os.kill(cluster.workers["w1"].pid, signal.SIGSTOP)
    cluster.note("SIGSTOP worker w1 past its lease and the reclaim idle time")
    await plan.at(0.22)
    os.kill(cluster.workers["w1"].pid, signal.SIGCONT)
    cluster.proxy.partition()
    cluster.note("state Redis partition of worker w2")
    await plan.at(0.28)
    cluster.proxy.heal()
    b_process = cluster.schedulers["b"][0]
    os.kill(b_process.pid, signal.SIGSTOP)
    cluster.note("SIGSTOP scheduler b while schedule 0 is paused through a")
    await _rpc(
        cluster.target("b"),
        lambda s: s.PauseSchedule(
            api.PauseScheduleRequest(schedule_id=schedule_ids[0], note="history"), timeout=10
        ),
    )
    paused_from = now_ms()
    await plan.at(0.34)
    os.kill(b_process.pid, signal.SIGCONT)
    await plan.at(0.38)
    resumed_at = now_ms()
    await _rpc(
        cluster.target(),
        lambda s: s.ResumeSchedule(
            api.ResumeScheduleRequest(schedule_id=schedule_ids[0]), timeout=10
        ),
    )
    paused[schedule_ids[0]] = range(paused_from + 1, resumed_at)
    cluster.stack.locks[0].kill()
    cluster.note("lock master 0 down")
    await plan.at(0.44)
    cluster.stack.locks[1].kill()
    cluster.note("lock masters 0 and 1 down (no quorum)")
    await plan.at(0.50)
    cluster.stack.locks[0].start()  # both come back empty: their data is lost
    cluster.stack.locks[1].start()
    cluster.proxy.drop_replies(b"EVALSHA", 5)
    cluster.note("5 script replies of worker w2 dropped after they ran")
    await plan.at(0.58)
    os.kill(cluster.workers["w0"].pid, signal.SIGSTOP)
    cluster.note("SIGSTOP worker w0 past its lease, not past the reclaim idle time")
    await plan.at(0.60)
    os.kill(cluster.workers["w0"].pid, signal.SIGCONT)
    await plan.at(0.66)
    for master in cluster.stack.locks:
        master.kill()
    cluster.note("every lock master down, then back with no data")
    await plan.at(0.72)
    for master in cluster.stack.locks:
        master.start()
    await plan.at(0.80)
    cluster.workers["w1"].kill()
    cluster.note("SIGKILL worker w1")
    await plan.at(0.86)
    cluster.start_worker("w1")
    await plan.at(1.0)


async def _backlog(redis: Redis, cluster: Cluster) -> str:
    """Each partition's entries not acked, by consumer, the delayed retries, and the tail of
    every service's log."""
    lines = [f"faults: {cluster.faults}", f"delayed retries: {await delayed_all(redis)}"]
    for partition in PARTITIONS:
        if not await redis.exists(partition.runs_stream):
            continue
        for group in await redis.xinfo_groups(partition.runs_stream):
            name = group["name"].decode()
            pending = await redis.xpending(partition.runs_stream, name)
            lines.append(f"{partition.runs_stream} {name}: lag {group.get('lag')}, {pending}")
    services = {**cluster.workers, **{n: p for n, (p, _) in cluster.schedulers.items()}}
    for name, process in services.items():
        lines.append(f"--- {name}:\n{process.logs()[-3000:]}")
    return "\n".join(lines)


async def _drained(redis: Redis) -> bool:
    busy = 0
    for partition in PARTITIONS:
        groups = await redis.xinfo_groups(partition.runs_stream)
        busy += sum(int(g.get("pending") or 0) + int(g.get("lag") or 0) for g in groups)
    return busy == 0 and await delayed_all(redis) == 0


# The plan is paced by runs emitted, not by time, so a slow machine runs the same history
# later: the test's own deadlines (emission, drain) bound it, not the suite's 120 s default.
@pytest.mark.timeout(120 + RUNS / 10 + 120 + 60)
async def test_history_under_faults_one_outcome_per_run_no_overlap_nothing_lost(
    state_url: str, lock_urls: list[str], redis_stack: EmbeddedStack, state_redis: Redis
) -> None:
    started = time.monotonic()
    recorder = FetchRecorder()
    cluster = Cluster(state_url, lock_urls, redis_stack)
    paused: dict[str, range] = {}
    async with AsyncExitStack() as stack:
        stack.callback(recorder.close)
        stack.callback(cluster.close)
        await cluster.start_scheduler("a")
        await cluster.start_scheduler("b")
        for name in ("w0", "w1", "w2"):
            cluster.start_worker(name)
        schedule_ids = await _create_schedules(cluster, recorder)
        await _inject(cluster, Plan(state_redis), schedule_ids, paused)
        for schedule_id in schedule_ids:
            await _rpc(
                cluster.target(),
                lambda s, i=schedule_id: s.PauseSchedule(
                    api.PauseScheduleRequest(schedule_id=i, note="done"), timeout=10
                ),
            )
        try:
            await eventually(
                lambda: _drained(state_redis), timeout_s=120, what="every run finished"
            )
        except AssertionError as exc:  # what is still in flight, and where
            raise AssertionError(f"{exc}\n{await _backlog(state_redis, cluster)}") from exc
        for name, process in cluster.workers.items():
            assert process.proc is not None and process.proc.poll() is None, (name, process.logs())

    history = await read_history(state_redis, [f"c{n}" for n in range(CAMPAIGNS)])
    problems = check(recorder, history, INTERVAL_MS, paused)
    counts = summary(history)
    print(
        f"\nhistory: {counts}, fetches {recorder.fetches()}, "
        f"{time.monotonic() - started:.0f} s\nfaults injected: {cluster.faults}\n"
        + "\n".join(f"{kind}: {len(found)}" for kind, found in problems.items())
    )
    offending = [line for found in problems.values() for line in found]
    assert not offending, "\n".join(offending[:50])
    assert counts["runs"] >= RUNS and len(cluster.faults) >= 10
    assert await RunLog(state_redis, PARTITIONS).list_runs(page_size=1)
