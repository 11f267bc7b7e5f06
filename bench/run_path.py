"""Run path benchmark: N one-shot runs due at one instant, ours side by side with arq.

    .venv/bin/python bench/run_path.py [--runs 2000] [--scrapers 1,2,4] [--only ...]

Every variant gets a fresh embedded stack (`EmbeddedStack`: state Valkey + 3 lock masters on
loopback) and uses the same page server (a separate process, `bench/run_path.py pages`): each
run fetches one page and extracts one field (``.price``) from it.

- ``ours-e2e-K``: one ``python -m scheduler_svc`` and K ``python -m scraper_svc`` processes;
  N schedules are created over gRPC (AddScheduledCampaign, one-shot ``run_at``, one campaign
  each) all due at the same instant, a few seconds ahead; the scheduler fires them.
- ``ours-e2e-processes``: one scheduler and one ``python -m scraper_svc`` running P worker
  processes (``SCRAPER_PROCESSES=P``, ``--processes``, default 2); every other variant runs
  one worker process per scraper command.
- ``ours-e2e-cluster-K``: the same on a local 3-master Redis Cluster as the state Redis
  (`tests.local_topologies.LocalCluster`, ``*_STATE_REDIS_MODE=cluster``; its masters have
  append-only files synced on every write, the single node of ``ours-e2e`` has none), with
  the ratio cluster / single node.
- ``ours-drain``: 1 scraper alone draining a filled stream: the scraper is started and
  SIGSTOPped once it is in the consumer group, the N RunRequested entries are appended with
  `RunLog.request_run`, and the clock starts when the scraper is SIGCONTed.
- ``arq-fetch`` / ``arq-noop``: one arq worker (``max_jobs=50``, arq 0.28 on redis-py 5 from
  the peers venv `.venv-peers`, see bench/arq_peer.py) on the same kind of Valkey; the N jobs
  are enqueued with ``_defer_until`` the same instant ahead, doing the same httpx fetch +
  selectolax extraction, or nothing.

Measured between the due instant (the SIGCONT for ``ours-drain``) and the moment every process
has gone quiet after the last run finished: runs/s (N over due -> last finish), the last
start after the due instant, CPU ms per run of every process (utime+stime from /proc, Valkey
servers included), and commands per run on the state Redis and on each lock master (INFO
commandstats deltas, with the bench's own polling taken out; commands run inside scripts are
counted there too). ``--split-runs`` adds a short pass per side under MONITOR (which slows the
server, so it is a separate pass) to split the state Redis commands into top-level commands
(round trips) and calls made inside scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import redis
from redis.asyncio import Redis

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

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
ARQ_PEER = ROOT / "bench" / "arq_peer.py"
PAGE = (
    "<!doctype html><html><head><title>Bench product</title></head><body>"
    "<nav><a href='/a'>A</a> <a href='/b'>B</a></nav><h1>Bench product</h1>"
    "<p class='price'>19.99</p><p class='desc'>" + "A product description. " * 40 + "</p>"
    "</body></html>"
)
# Ours with the same concurrency as arq's max_jobs; the per-host politeness limit is raised to
# it because every run fetches the same local host (the defaults, 2 per host, are for real sites).
SCRAPER_SETTINGS = {
    "SCRAPER_LOG_LEVEL": "WARNING",
    "SCRAPER_CONCURRENCY": "50",
    "SCRAPER_READ_BATCH": "50",
    "SCRAPER_PER_HOST_CONCURRENCY": "50",
    "SCRAPER_PROCESSES": "1",  # one worker process per command unless a variant says more
}
OWN_COMMANDS = {b"info", b"config", b"client", b"hello"}
MACHINE = "whole machine"
WINDOW = "window"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FINALS = (
    events_pb2.RunSucceeded,
    events_pb2.RunFailed,
    events_pb2.RunSkipped,
    events_pb2.RunDeadLettered,
)


# -- page server (its own process, shared by every variant) --------------------------------------


class _Page(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real site would allow
    body = PAGE.encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


def serve_pages() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def page_server() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "pages"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/product", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- measuring ---------------------------------------------------------------------------------


def cpu_ms(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def machine_busy_ms() -> float:
    """CPU time every core of the machine spent busy (not idle or waiting), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) * 1000 / CLK_TCK


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU ms of each process with its live child processes (a service that runs several
    workers), and of the whole machine under ``MACHINE``."""
    stamp = {MACHINE: machine_busy_ms(), WINDOW: time.monotonic() * 1000}
    return {
        k: cpu_ms(pid) + sum(cpu_ms(child) for child in descendants(pid)) for k, pid in pids.items()
    } | stamp


def settle(pids: dict[str, int], quiet_ms: float = 10.0, limit_s: float = 10.0) -> None:
    """Wait until the processes together use less than ``quiet_ms`` CPU per 0.25 s."""
    deadline = time.monotonic() + limit_s
    before = sum(cpu_ms(pid) for pid in pids.values())
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = sum(cpu_ms(pid) for pid in pids.values())
        if now - before < quiet_ms:
            return
        before = now


@dataclass
class Result:
    name: str
    runs: int
    ok: int
    seconds: float  # due instant -> last finish
    last_start_s: float  # due instant -> last start
    cpu_ms: dict[str, float]  # per process, whole measured window
    state_cmds: Counter[str]
    lock_cmds: list[int] = field(default_factory=list)
    note: str = ""
    page_cpu_ms: float = 0.0
    attempts: int = 1
    lock_split: Counter[str] = field(default_factory=Counter)
    state_reads: int = 0
    lock_reads: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.machine_ms = self.cpu_ms.pop(MACHINE, 0.0)
        self.window_ms = self.cpu_ms.pop(WINDOW, 0.0)

    @property
    def other_ms(self) -> float:
        """Busy CPU of the machine in the window that none of the measured processes used."""
        return max(0.0, self.machine_ms - sum(self.cpu_ms.values()) - self.page_cpu_ms)

    @property
    def other_share(self) -> float:
        """``other_ms`` as a share of one core over the window."""
        return self.other_ms / self.window_ms if self.window_ms else 0.0

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds > 0 else 0.0

    def per_run(self, value: float) -> float:
        return value / self.runs


class Probe:
    """One connection to one server for the bench's own calls, counted to be taken out."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.client.ping()  # connected before the counters are reset
        self.sent: Counter[str] = Counter()

    def reset(self) -> None:
        self.client.config_resetstat()
        self.sent = Counter()

    def xlen(self, stream: str) -> int:
        self.sent["xlen"] += 1
        return int(self.client.xlen(stream))

    def zcard(self, key: str) -> int:
        self.sent["zcard"] += 1
        return int(self.client.zcard(key))

    def stats(self) -> tuple[Counter[str], int]:
        """Commands by name and socket reads (about one per round trip) since `reset`."""
        info = self.client.info("commandstats")  # not counted in its own answer
        commands = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})
        commands -= self.sent
        commands.pop("config|resetstat", None)
        self.sent["info"] += 2
        reads = int(self.client.info("stats")["total_reads_processed"])
        return commands, reads - sum(self.sent.values())

    def close(self) -> None:
        self.client.close()


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


# -- arq ---------------------------------------------------------------------------------------


def peer(*args: str) -> str:
    done = subprocess.run(
        [str(PEERS_PYTHON), str(ARQ_PEER), *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"arq_peer {args[0]} failed:\n{done.stderr}")
    return done.stdout


def arq(
    runs: int,
    page: str,
    function: str,
    lead_s: float,
    monitor: bool = False,
    poll_delay_s: float = 0.5,
    around: Callable[[dict[str, int]], AbstractContextManager[object]] = lambda _: nullcontext(),
) -> Result:
    """One arq worker on jobs deferred to one instant; ``around(procs)`` wraps the window."""
    stack = EmbeddedStack(lock_masters=0).start()
    worker = subprocess.Popen(
        [str(PEERS_PYTHON), str(ARQ_PEER), "worker", stack.state.url, str(poll_delay_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = Probe(stack.state.url)
    try:
        due_ms = now_ms() + int(lead_s * 1000)
        peer("enqueue", stack.state.url, str(runs), str(due_ms), page, function)
        if now_ms() > due_ms - 300:
            print("  WARNING: enqueueing ran past the due instant; raise --lead", file=sys.stderr)
        time.sleep(max(0.0, (due_ms - now_ms()) / 1000 - 0.3))
        pids = {"arq worker": worker.pid} | server_pids(stack)
        with Monitor(stack.state.url, monitor) as counted, around({"arq worker": worker.pid}):
            probe.reset()
            before = snapshot(pids)
            deadline = time.monotonic() + 120 + runs / 10
            # arq removes a job from its queue (a sorted set) when the job finishes.
            while probe.zcard("arq:queue") and time.monotonic() < deadline:
                time.sleep(0.05)
            settle(pids)
            after = snapshot(pids)
            state, reads = probe.stats()
        done = json.loads(peer("collect", stack.state.url, str(runs)))
        name = f"arq, {'the same fetch + extract' if function == 'fetch' else 'no-op jobs'}"
        if poll_delay_s != 0.5:
            name += f" (poll_delay {poll_delay_s:g} s)"
        return Result(
            name,
            runs,
            done["ok"],
            (done["last_finish"] - due_ms) / 1000,
            (done["last_start"] - due_ms) / 1000,
            {k: after[k] - before[k] for k in after},
            counted.result(probe) or state,
            state_reads=reads,
            note="" if done["found"] == runs else f"{done['found']} results for {runs} jobs",
        )
    finally:
        probe.close()
        worker.terminate()
        worker.wait(timeout=15)
        stack.stop()


# -- MONITOR: top-level commands vs calls inside scripts ----------------------------------------


class Monitor:
    """Counts the commands a server runs, split into top-level ones and those inside scripts."""

    def __init__(self, url: str, enabled: bool) -> None:
        self.url, self.enabled = url, enabled
        self.split: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Monitor:
        if self.enabled:
            host, port = self.url.removeprefix("redis://").split("/")[0].split(":")
            self._sock = socket.create_connection((host, int(port)))
            self._sock.sendall(b"MONITOR\r\n")
            self._sock.settimeout(0.2)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                if not line.startswith(b"+") or b"] " not in line:
                    continue
                command = line.split(b"] ", 1)[1].split(b" ", 1)[0].strip(b'"').lower()
                if command in OWN_COMMANDS:
                    continue  # the bench's INFO/CONFIG and every connection's CLIENT SETINFO
                kind = "in scripts" if b" lua] " in line else "top-level"
                self.split[kind] += 1

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            time.sleep(0.3)
            self._stop.set()
            self._thread.join(timeout=5)
            self._sock.close()

    def result(self, probe: Probe) -> Counter[str]:
        """The split with the bench's own polling taken out (empty when not enabled)."""
        if self.split:
            self.split["top-level"] -= sum(probe.sent.values()) - probe.sent["info"]
        return self.split


# -- report ------------------------------------------------------------------------------------


def cpu_breakdown(result: Result) -> str:
    parts = []
    locks = sum(v for k, v in result.cpu_ms.items() if k.startswith("lock"))
    for name, value in result.cpu_ms.items():
        if not name.startswith("lock"):
            parts.append(f"{name} {result.per_run(value):.2f}")
    if any(k.startswith("lock") for k in result.cpu_ms):
        parts.append(f"lock masters {result.per_run(locks):.2f}")
    return ", ".join(parts)


def commands(result: Result) -> str:
    split = result.state_cmds
    if "top-level" in split or "in scripts" in split:
        text = (
            f"{result.per_run(split['top-level']):.1f} top-level + "
            f"{result.per_run(split['in scripts']):.1f} in scripts"
        )
        if result.lock_split:
            lock = result.lock_split
            text += (
                f"; lock master 0: {result.per_run(lock['top-level']):.1f} top-level + "
                f"{result.per_run(lock['in scripts']):.1f} in scripts"
            )
        return text
    total = sum(split.values())
    scripts = split["evalsha"] + split["eval"] + split["fcall"]
    text = f"{result.per_run(total):.1f} (of which {result.per_run(scripts):.1f} EVALSHA)"
    if result.lock_cmds:
        text += "; per lock master " + " / ".join(
            f"{result.per_run(n):.1f}" for n in result.lock_cmds
        )
    return text


def round_trips(result: Result) -> str:
    text = f"state {result.per_run(result.state_reads):.1f}"
    if result.lock_reads:
        each = " / ".join(f"{result.per_run(n):.1f}" for n in result.lock_reads)
        text += f"; lock masters {each}"
    return text


def print_table(results: list[Result]) -> None:
    print(
        "| variant | runs/s | last start after due | ok | CPU ms per run (all) "
        "| CPU ms per run per process | state Redis commands per run "
        "| round trips per run (server socket reads) |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    for r in results:
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.name}{note} | {r.rate:,.0f} | {r.last_start_s:.2f} s | {r.ok} "
            f"| {r.per_run(sum(r.cpu_ms.values())):.2f} | {cpu_breakdown(r)} | {commands(r)} "
            f"| {round_trips(r)} |"
        )
    print()
    print(
        "| variant | window | page server CPU per run (not above) "
        "| CPU of other processes in the window | passes |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.window_ms / 1000:.1f} s | {r.per_run(r.page_cpu_ms):.2f} ms "
            f"| {r.other_ms:,.0f} ms ({100 * r.other_share:.0f} % of a core) | {r.attempts} |"
        )


def print_ratios(results: list[Result]) -> None:
    """Ours against each arq variant doing the same fetch + extract."""
    peers = [r for r in results if r.name.startswith("arq, the same fetch")]
    if not any(r.name.startswith("ours") for r in results):
        return
    for peer in peers:
        print()
        print(f"| ours / {peer.name} | runs/s | last start, ours - arq | CPU per run |")
        print("|---|---:|---:|---:|")
        peer_cpu = peer.per_run(sum(peer.cpu_ms.values()))
        for r in results:
            if not r.name.startswith("ours"):
                continue
            cpu = r.per_run(sum(r.cpu_ms.values()))
            print(
                f"| {r.name} | {r.rate / peer.rate:.2f}x "
                f"| {r.last_start_s - peer.last_start_s:+.2f} s | {cpu / peer_cpu:.2f}x |"
            )


def print_cluster_ratios(results: list[Result]) -> None:
    """Each cluster variant against the single-node variant with as many scrapers."""
    pairs = [
        (single, clustered)
        for clustered in results
        if clustered.name.endswith(", 3-master cluster")
        for single in results
        if single.name == clustered.name.removesuffix(", 3-master cluster")
    ]
    if not pairs:
        return
    print("\n| cluster / single node | runs/s | last start, cluster - single | CPU per run |")
    print("|---|---:|---:|---:|")
    for single, clustered in pairs:
        single_cpu = single.per_run(sum(single.cpu_ms.values()))
        cpu = clustered.per_run(sum(clustered.cpu_ms.values()))
        print(
            f"| {clustered.name} | {clustered.rate / single.rate:.2f}x "
            f"| {clustered.last_start_s - single.last_start_s:+.2f} s | {cpu / single_cpu:.2f}x |"
        )


def machine() -> str:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    peers = (
        subprocess.run(
            [str(PEERS_PYTHON), "-c", "import arq, redis; print(arq.VERSION, redis.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if PEERS_PYTHON.exists()
        else []
    )
    load = os.getloadavg()
    return (
        f"cores {os.cpu_count()}, {cpu}, Python {platform.python_version()}, "
        f"redis-py {redis.__version__}; arq {' on redis-py '.join(peers) or 'missing'}; "
        f"load average before {load[0]:.2f}"
    )


def least_disturbed(
    variant: Callable[[], Result], page_pid: int, passes: int, max_other: float
) -> Result:
    """The variant measured again (up to ``passes`` times) while other processes on the
    machine used more than ``max_other`` of a core in its window; the least disturbed pass."""
    best: Result | None = None
    for attempt in range(1, passes + 1):
        before = cpu_ms(page_pid)
        result = variant()
        result.page_cpu_ms = cpu_ms(page_pid) - before
        result.attempts = attempt
        if best is None or result.other_share < best.other_share:
            best = result
        share = f"{100 * result.other_share:.0f} % of a core"
        print(f"  measured {result.name}: other processes {share}", file=sys.stderr)
        if result.other_share <= max_other:
            break
    assert best is not None
    return best


def measure_all(args: argparse.Namespace, only: set[str]) -> tuple[list[Result], list[Result]]:
    """Every variant asked for, then the MONITOR passes; one page server for all of them."""
    lead = args.lead or 3.0 + args.runs / 150
    results: list[Result] = []
    split: list[Result] = []
    with page_server() as (page, page_pid):
        variants = []
        if "ours-e2e" in only:
            variants += [
                partial(ours_e2e, args.runs, int(n), page, lead)
                for n in args.scrapers.split(",")
                if n.strip()
            ]
        if "ours-e2e-processes" in only:
            variants += [
                partial(ours_e2e, args.runs, 1, page, lead, processes=int(n))
                for n in args.processes.split(",")
                if n.strip()
            ]
        if "ours-e2e-cluster" in only:
            variants += [
                partial(ours_e2e, args.runs, int(n), page, lead, cluster=True)
                for n in args.scrapers.split(",")
                if n.strip()
            ]
        if "ours-drain" in only:
            variants.append(partial(ours_drain, args.runs, page))
        for function in ("fetch", "noop"):
            if f"arq-{function}" in only:
                variants.append(partial(arq, args.runs, page, function, lead))
        if "arq-fetch-fast" in only:  # arq polls its queue every 0.5 s by default
            variants.append(partial(arq, args.runs, page, "fetch", lead, poll_delay_s=0.05))
        for variant in variants:
            results.append(least_disturbed(variant, page_pid, args.passes, args.max_other))
        if args.split_runs and "ours-e2e" in only:
            split.append(ours_e2e(args.split_runs, 1, page, 3.0, monitor=True))
        if args.split_runs and "ours-drain" in only:
            split.append(ours_drain(args.split_runs, page, monitor=True))
        if args.split_runs and "arq-fetch" in only:
            split.append(arq(args.split_runs, page, "fetch", 3.0, monitor=True))
    return results, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--scrapers", default="1,2,4", help="scraper counts of the e2e variant")
    parser.add_argument(
        "--processes", default="2", help="SCRAPER_PROCESSES of the e2e-processes variant"
    )
    parser.add_argument(
        "--only",
        default="ours-e2e,ours-e2e-processes,ours-e2e-cluster,ours-drain,arq-fetch,arq-noop,"
        "arq-fetch-fast",
    )
    parser.add_argument("--lead", type=float, default=0.0, help="s from creation to due (0: auto)")
    parser.add_argument("--passes", type=int, default=3, help="max passes of a disturbed variant")
    parser.add_argument(
        "--max-other", type=float, default=0.1, help="share of a core others may use in a pass"
    )
    parser.add_argument("--split-runs", type=int, default=200, help="MONITOR pass size (0: off)")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",")}
    if not PEERS_PYTHON.exists() and any(name.startswith("arq") for name in only):
        raise SystemExit("no .venv-peers: run `make bench-peers` first")
    print(machine())
    results, split = measure_all(args, only)
    load = os.getloadavg()
    print(f"\n{args.runs} runs per variant, due at one instant; load average after {load[0]:.2f}\n")
    print_table(results)
    print_ratios(results)
    print_cluster_ratios(results)
    print("\nState Redis commands per run by name (INFO commandstats; script calls included):\n")
    for r in results:
        top = ", ".join(
            f"{name} {r.per_run(n):.2f}"
            for name, n in r.state_cmds.most_common()
            if n >= r.runs / 20
        )
        print(f"- {r.name}: {top}")
    if split:
        print(f"\nState Redis commands per run under MONITOR ({args.split_runs} runs):\n")
        print("| variant | commands per run |")
        print("|---|---|")
        for r in split:
            print(f"| {r.name} | {commands(r)} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pages"]:
        serve_pages()
    else:
        main()
