"""Test support: real service processes and polling under deadlines (never bare sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

import grpc
import httpx
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.envelope import Envelope, decode_body
from campaign_common.localstack.embedded import free_port
from campaign_common.runs.keys import DEFAULT_PARTITIONS, SCRAPER_GROUP, Partition, Partitions
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
# The run partitions of the services the tests start (their default partition count).
PARTITIONS = Partitions(DEFAULT_PARTITIONS)


def part(campaign_id: str) -> Partition:
    """The run partition of a campaign (where its runs, fence and results are)."""
    return PARTITIONS.of(campaign_id)


def campaigns_in(partition: int, count: int, prefix: str = "camp") -> list[str]:
    """``count`` campaign ids of one partition (their runs share one stream)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        campaign = f"{prefix}-{n}"
        if PARTITIONS.of(campaign).index == partition:
            found.append(campaign)
        n += 1
    return found


async def leased_by(redis: Redis, replica: str) -> set[int]:
    """The partitions whose lease the scheduler replica ``replica`` holds."""
    from scheduler_svc.leases import lease_key

    holders = [await redis.get(lease_key(p.index)) for p in PARTITIONS]
    return {
        p.index for p, holder in zip(PARTITIONS, holders, strict=True) if holder == replica.encode()
    }


async def xrange_all(
    redis: Redis, stream: Callable[[Partition], str], partitions: Partitions = PARTITIONS
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of one stream family (e.g. ``lambda p: p.runs_stream``) over every
    partition, oldest first by entry id."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    for partition in partitions:
        entries += await redis.xrange(stream(partition))
    return sorted(entries, key=lambda entry: tuple(int(x) for x in entry[0].split(b"-")))


async def xlen_all(
    redis: Redis, stream: Callable[[Partition], str], partitions: Partitions = PARTITIONS
) -> int:
    """Entries of one stream family over every partition."""
    return sum([int(await redis.xlen(stream(p))) for p in partitions])


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval, not synchronisation


class ServiceProcess:
    """``python -m <module>`` as a real child process with its own environment and log file."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = {**os.environ, **env}
        fd, path = tempfile.mkstemp(prefix=f"{module}-", suffix=".log")
        os.close(fd)
        self._log_path = Path(path)
        self._log = self._log_path.open("wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *args],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (SIGTERM) and wait; returns the exit code (killed after ``timeout_s``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def logs(self) -> str:
        return self._log_path.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self._log.close()
        self._log_path.unlink(missing_ok=True)


async def grpc_serving(target: str) -> bool:
    """True once the gRPC health service at ``target`` answers SERVING."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def start_scheduler_process(state_url: str, **extra: str) -> tuple[ServiceProcess, str]:
    """A scheduler as a real process on a free port, once it reports SERVING."""
    port = free_port()
    env = {
        "SCHEDULER_STATE_REDIS_URL": state_url,
        "SCHEDULER_PORT": str(port),
        "SCHEDULER_LOG_BLOCK_MS": "200",
        **extra,
    }
    process = ServiceProcess("scheduler_svc", env).start()
    target = f"127.0.0.1:{port}"

    async def ready() -> bool:
        if process.proc is not None and process.proc.poll() is not None:
            raise AssertionError(f"scheduler exited early:\n{process.logs()}")
        return await grpc_serving(target)

    await eventually(ready, timeout_s=30, what="scheduler SERVING")
    return process, target


class LocalHttpServer:
    """A real threaded HTTP server on 127.0.0.1 (a free port) for the handler class given."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class PageServer(LocalHttpServer):
    """Serves fixed pages: path -> (status, body)."""

    def __init__(self, pages: dict[str, tuple[int, str]]) -> None:
        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                status, body = pages.get(self.path, (404, "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class WebhookReceiver(LocalHttpServer):
    """Records the JSON bodies POSTed to it; the first ``fail_first`` get a 503 (retries)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, object]] = []
        self.requests = 0
        receiver = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests += 1
                if receiver.requests <= fail_first:
                    self.send_response(503)
                else:
                    receiver.received.append(json.loads(body))
                    self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        super().__init__(Handler)

    @property
    def hook_url(self) -> str:
        return self.url("/hook")


def scraper_process(
    state_url: str, lock_urls: list[str], name: str, **extra: str
) -> ServiceProcess:
    """``python -m scraper_svc`` named ``name``, allowed to fetch 127.0.0.1, reading in 100 ms
    blocks; ``extra`` are further SCRAPER_* settings."""
    env = {
        "SCRAPER_STATE_REDIS_URL": state_url,
        "SCRAPER_LOCK_REDIS_URLS": json.dumps(lock_urls),
        "SCRAPER_ALLOW_PRIVATE_TARGETS": "true",
        "SCRAPER_CONSUMER_NAME": name,
        "SCRAPER_BLOCK_MS": "100",
        "SCRAPER_LOCK_NODE_TIMEOUT_S": "0.2",
        "SCRAPER_PROCESSES": "1",  # one process to kill in fault tests
        **extra,
    }
    return ServiceProcess("scraper_svc", env).start()


# Events that end a run attempt for good (a RunRetryScheduled does not).
FINAL_EVENTS = (
    events_pb2.RunSucceeded,
    events_pb2.RunFailed,
    events_pb2.RunSkipped,
    events_pb2.RunDeadLettered,
)


def scheduled_request(
    run_id: str, *, schedule_id: str = "s1", campaign_id: str = "c1", attempt: int = 1
) -> events_pb2.RunRequested:
    """A scheduled RunRequested due now, as the scheduler would emit it."""
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule_id,
        campaign_id=campaign_id,
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=attempt,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
    )


def event_run_id(body: Message) -> str:
    """The run a run event is about (a dead letter carries it in its request)."""
    if isinstance(body, events_pb2.RunDeadLettered):
        return str(body.request.run_id)
    return str(getattr(body, "run_id", ""))


async def run_event_bodies(redis: Redis) -> list[Message]:
    """Every decodable body of the run events stream, oldest first."""
    bodies = [
        decode_body(Envelope.from_fields(fields))
        for _, fields in await xrange_all(redis, lambda p: p.events_stream)
    ]
    return [body for body in bodies if body is not None]


def metric_sample(text: str, series: str) -> float:
    """Value of one exposed Prometheus series (name and labels exactly as exposed), 0 if absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


@dataclass(frozen=True)
class LocalStack:
    http: httpx.AsyncClient  # bound to the gateway, with the API key
    env: dict[str, str]  # the ports chosen, among the rest
    started: set[int]  # every process the launcher started
    api_key: str  # the caller's, or the one the stack made (read from its banner)
    logs: Callable[[], str]  # what the launcher printed so far


STACK_API_KEY = "local-stack-test-key-0123456789"


async def _banner_key(stack: ServiceProcess) -> str:
    """The key the stack made, from the ``API key`` line of its banner."""

    async def printed() -> str | None:
        match = re.search(r"^  API key +(\S+)$", stack.logs(), re.M)
        return match.group(1) if match else None

    return await eventually(printed, timeout_s=30, what="the banner's API key")


@contextlib.asynccontextmanager
async def local_stack(**extra: str) -> AsyncIterator[LocalStack]:
    """``python -m campaign_common.cli up`` (what `make run` runs) on free ports, once ready.

    On the way out it is stopped with SIGINT (what Ctrl-C sends); it must exit 0 and leave no
    process it started behind.
    """
    gateway_port = free_port()
    env = {
        "GATEWAY_API_KEYS": STACK_API_KEY,  # the stack never runs open; tests give the key
        "GATEWAY_PORT": str(gateway_port),
        "SCHEDULER_PORT": str(free_port()),
        "SCHEDULER_METRICS_PORT": str(free_port()),
        "SCRAPER_METRICS_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    stack = ServiceProcess("campaign_common.cli", env)
    launcher = stack.start("up")
    started: set[int] = set()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway_port}", timeout=5.0
        ) as http:

            async def ready() -> bool:
                assert launcher.proc is not None and launcher.proc.poll() is None, stack.logs()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout_s=60, what="local stack ready")
            started = descendants(launcher.pid)
            assert len(started) >= 7, "expected 4 Redis servers and 3 services"
            key = env["GATEWAY_API_KEYS"].split(",")[0] or await _banner_key(stack)
            http.headers["authorization"] = f"Bearer {key}"
            yield LocalStack(http, env, started, key, stack.logs)
    finally:
        code = launcher.terminate(timeout_s=30, sig=signal.SIGINT)
        logs = stack.logs()
        stack.close()
    assert code == 0, logs
    leftover = [pid for pid in started if alive(pid)]
    assert not leftover, f"processes left behind: {leftover}"


def runs_stream(partition: Partition) -> str:
    return partition.runs_stream


def events_stream(partition: Partition) -> str:
    return partition.events_stream


def dead_stream(partition: Partition) -> str:
    return partition.dead_stream


async def pending_all(
    redis: Redis, group: str = SCRAPER_GROUP, stream: Callable[[Partition], str] = runs_stream
) -> int:
    """Entries delivered to ``group`` and not acked yet, over every partition's stream."""
    pending = 0
    for partition in PARTITIONS:
        with contextlib.suppress(ResponseError):  # no stream or group there yet
            pending += int((await redis.xpending(stream(partition), group))["pending"])
    return pending


async def delayed_all(redis: Redis) -> int:
    """Retries waiting in the delay queues of every partition."""
    return sum([int(await redis.zcard(partition.delayed)) for partition in PARTITIONS])
