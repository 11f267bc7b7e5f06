"""Run path benchmark: our side (the stack, schedules created over gRPC, probes of the
servers, a filled stream drained, MONITOR)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import redis
from redis.asyncio import Redis

from bench.run_path_common import FINALS, SCRAPER_SETTINGS, Monitor, Probe, Result, settle, snapshot
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.redis_conn import make_client
from campaign_common.redis_topology import RedisTopology, make_state_client
from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.timeutil import ms_to_timestamp, now_ms, timestamp_to_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as service_pb2
from campaigns.v1 import scheduler_service_pb2_grpc as service_grpc
from tests.local_topologies import LocalCluster
from tests.support import (
    PARTITIONS,
    ServiceProcess,
    descendants,
    run_event_bodies,
    scraper_process,
    start_scheduler_process,
)


@dataclass
class StateTarget:
    """The state Redis of a variant: the single node of the stack, or a local cluster."""

    url: str  # what the services get
    node_urls: list[str]  # every state server
    pids: dict[str, int]
    mode: str = "standalone"
    partition_urls: list[str] = field(default_factory=list)  # the server of each partition

    @classmethod
    def single(cls, stack: EmbeddedStack) -> StateTarget:
        assert stack.state.pid is not None
        url = stack.state.url
        pids = {"state redis": stack.state.pid}
        return cls(url, [url], pids, "standalone", [url] * len(PARTITIONS))

    @classmethod
    def cluster(cls, cluster: LocalCluster) -> StateTarget:
        nodes = cluster.nodes
        pids = {f"state node {n}": node.pid for n, node in enumerate(nodes) if node.pid}
        homes = [cluster.node_of(f"{{{p.tag}}}").url for p in PARTITIONS]
        return cls(cluster.url, [node.url for node in nodes], pids, "cluster", homes)

    @property
    def runs_url(self) -> str:
        """The server of partition 0 (where the command monitor watches)."""
        return self.partition_urls[0]

    def client(self) -> Redis:
        return make_state_client(RedisTopology(self.url, mode=self.mode), 10.0)

    def env(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}_STATE_REDIS_MODE": self.mode}


def server_pids(stack: EmbeddedStack, state: StateTarget | None = None) -> dict[str, int]:
    pids = dict(state.pids) if state else {"state redis": stack.state.pid}
    pids |= {f"lock {n}": server.pid for n, server in enumerate(stack.locks)}
    return {name: pid for name, pid in pids.items() if pid is not None}


# -- ours --------------------------------------------------------------------------------------


def wait_consumers(url: str, count: int, timeout_s: float = 60.0) -> None:
    """Until ``count`` scrapers read partition 0 (on its server ``url``): each reads all."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                stream = PARTITIONS[0].runs_stream
                if len(client.xinfo_consumers(stream, SCRAPER_GROUP)) >= count:
                    return
            except redis.ResponseError:
                pass  # the group does not exist yet
            time.sleep(0.1)
    finally:
        client.close()
    raise SystemExit(f"{count} scrapers did not join the consumer group in {timeout_s:.0f} s")


async def create_schedules(target: str, runs: int, due_ms: int, page: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_grpc.SchedulerServiceStub(channel)
        pending = iter(range(runs))

        async def creator() -> None:
            for n in pending:
                await stub.AddScheduledCampaign(
                    service_pb2.AddScheduledCampaignRequest(
                        campaign_id=f"bench-{n}",
                        name=f"bench {n}",
                        schedule=schedule_pb2.ScheduleSpec(run_at=ms_to_timestamp(due_ms)),
                        scrape=schedule_pb2.ScrapeSpec(urls=[page], selectors={"price": ".price"}),
                    ),
                    timeout=30,
                )

        await asyncio.gather(*(creator() for _ in range(16)))


def wait_finals(probes: dict[str, Probe], runs: int, timeout_s: float, target: StateTarget) -> None:
    """Until the run events streams hold at least a start and a final event per run, and
    then (a run deferred by a RetryScheduled note adds an event) a final event per run."""
    deadline = time.monotonic() + timeout_s
    while _events(probes, target) < 2 * runs:
        if time.monotonic() > deadline:
            print(f"  timed out after {timeout_s:.0f} s", file=sys.stderr)
            return
        time.sleep(0.05)
    while asyncio.run(run_events(target))[0] < runs:  # rare: reads the streams, counted
        if time.monotonic() > deadline:
            print(f"  timed out after {timeout_s:.0f} s waiting for final events", file=sys.stderr)
            return
        time.sleep(0.25)


def _events(probes: dict[str, Probe], target: StateTarget) -> int:
    """Run events over every partition, each read on its server."""
    return sum(
        probes[url].xlen(p.events_stream)
        for p, url in zip(PARTITIONS, target.partition_urls, strict=True)
    )


async def run_events(target: StateTarget) -> tuple[int, int, float, float]:
    """Final events, successes, latest start and latest finish (unix ms)."""
    client = target.client()
    try:
        bodies = await run_event_bodies(client)
    finally:
        await client.aclose()
    finals = [b for b in bodies if isinstance(b, FINALS)]
    starts = [timestamp_to_ms(b.started_at) for b in bodies if isinstance(b, events_pb2.RunStarted)]
    finishes = [timestamp_to_ms(b.finished_at) for b in finals if b.HasField("finished_at")]
    ok = sum(isinstance(b, events_pb2.RunSucceeded) for b in finals)
    return len(finals), ok, max(starts, default=0), max(finishes, default=0)


def measure_ours(
    name: str,
    stack: EmbeddedStack,
    procs: dict[str, int],
    start: Callable[[], float],
    runs: int,
    monitor: bool,
    target: StateTarget | None = None,
) -> Result:
    """From ``start()`` (returns the zero instant, unix ms) until every run is final."""
    target = target or StateTarget.single(stack)
    state_probes = [Probe(url) for url in target.node_urls]
    by_url = dict(zip(target.node_urls, state_probes, strict=True))
    probe = by_url[target.runs_url]  # partition 0's server, the one the monitor watches
    lock_probes = [Probe(url) for url in stack.lock_urls]
    pids = procs | server_pids(stack, target)
    try:
        with (
            Monitor(target.runs_url, monitor) as counted,
            Monitor(stack.lock_urls[0], monitor) as lock_counted,
        ):
            for each in (*state_probes, *lock_probes):
                each.reset()
            before = snapshot(pids)
            zero_ms = start()
            wait_finals(by_url, runs, timeout_s=120 + runs / 10, target=target)
            settle(pids)
            after = snapshot(pids)
            state, reads = Counter[str](), 0
            for each in state_probes:  # summed over a cluster's masters
                node_commands, node_reads = each.stats()
                state, reads = state + node_commands, reads + node_reads
            locks = [each.stats() for each in lock_probes]
    finally:
        for each in (*state_probes, *lock_probes):
            each.close()
    finals, ok, last_start, last_finish = asyncio.run(run_events(target))
    return Result(
        name,
        runs,
        ok,
        (last_finish - zero_ms) / 1000,
        (last_start - zero_ms) / 1000,
        {k: after[k] - before[k] for k in after},
        counted.result(probe) or state,
        [sum(commands.values()) for commands, _ in locks],
        "" if finals == runs else f"{finals} final events for {runs} runs",
        lock_split=lock_counted.split,
        state_reads=reads,
        lock_reads=[lock_reads for _, lock_reads in locks],
    )


def ours_e2e(
    runs: int,
    scrapers: int,
    page: str,
    lead_s: float,
    monitor: bool = False,
    around: Callable[[dict[str, int]], AbstractContextManager[object]] = lambda _: nullcontext(),
    cluster: bool = False,
    processes: int = 1,
) -> Result:
    """Scheduler + ``scrapers`` scraper commands of ``processes`` worker processes each;
    ``around(procs)`` wraps the measured window; with ``cluster`` the state Redis is a local
    3-master cluster."""
    stack = EmbeddedStack(lock_masters=3).start()
    tmp = tempfile.TemporaryDirectory(prefix="bench-cluster-")
    local = LocalCluster(Path(tmp.name)).start() if cluster else None
    state = StateTarget.cluster(local) if local else StateTarget.single(stack)
    started: list[ServiceProcess] = []
    try:
        scheduler, target = asyncio.run(
            start_scheduler_process(
                state.url, SCHEDULER_LOG_LEVEL="WARNING", **state.env("SCHEDULER")
            )
        )
        started.append(scheduler)
        scraper_env = SCRAPER_SETTINGS | state.env("SCRAPER")
        scraper_env["SCRAPER_PROCESSES"] = str(processes)
        for n in range(scrapers):
            started.append(scraper_process(state.url, stack.lock_urls, f"w{n}", **scraper_env))
        wait_consumers(state.runs_url, scrapers * processes)
        due_ms = now_ms() + int(lead_s * 1000)
        created = time.monotonic()
        asyncio.run(create_schedules(target, runs, due_ms, page))
        print(f"  created {runs} schedules in {time.monotonic() - created:.1f} s", file=sys.stderr)
        wait_s = (due_ms - now_ms()) / 1000 - 0.3
        if wait_s < 0:
            print("  WARNING: creation ran past the due instant; raise --lead", file=sys.stderr)
        time.sleep(max(0.0, wait_s))
        procs = {"scheduler": scheduler.pid}
        procs |= {f"scraper {n}": p.pid for n, p in enumerate(started[1:])}
        name = f"ours, scheduler + {scrapers} scraper{'s' if scrapers > 1 else ''}"
        name += f" of {processes} processes" if processes > 1 else ""
        name += ", end to end"
        name += ", 3-master cluster" if cluster else ""
        with around(procs):
            return measure_ours(name, stack, procs, lambda: due_ms, runs, monitor, state)
    finally:
        for process in started:
            stop_with_children(process)
        if local:
            local.stop()
        tmp.cleanup()
        stack.stop()


def stop_with_children(process: ServiceProcess) -> None:
    """SIGTERM (a scraper command forwards it to its worker processes and waits for them),
    then SIGKILL whatever is left below it: a killed parent would orphan its workers, which
    would go on retrying a stopped Redis and use the CPU of the next variants."""
    children = descendants(process.pid)
    process.terminate(timeout_s=15)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.close()


def _request(n: int, page: str) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=f"bench-{n}:1",
        schedule_id=f"bench-{n}",
        campaign_id=f"bench-{n}",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
        scrape=schedule_pb2.ScrapeSpec(urls=[page], selectors={"price": ".price"}),
    )


async def fill_runs(url: str, runs: int, page: str) -> None:
    client = make_client(url, 10.0)
    try:
        log = RunLog(client, PARTITIONS)
        for n in range(runs):
            await log.request_run(_request(n, page), dedupe=False)
    finally:
        await client.aclose()


def ours_drain(runs: int, page: str, monitor: bool = False) -> Result:
    stack = EmbeddedStack(lock_masters=3).start()
    worker = scraper_process(stack.state.url, stack.lock_urls, "w0", **SCRAPER_SETTINGS)
    try:
        wait_consumers(stack.state.url, 1)
        time.sleep(0.5)  # let its first blocking read start
        os.kill(worker.pid, signal.SIGSTOP)
        asyncio.run(fill_runs(stack.state.url, runs, page))

        def resume() -> float:
            zero_ms = now_ms()
            os.kill(worker.pid, signal.SIGCONT)
            return zero_ms

        name = "ours, 1 scraper alone draining a filled stream"
        return measure_ours(name, stack, {"scraper 0": worker.pid}, resume, runs, monitor)
    finally:
        worker.close()
        stack.stop()
