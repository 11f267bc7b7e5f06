"""Mutual exclusion of campaign runs across real scraper processes, with failures injected.

The page server is the observer: every run fetches ``/h/<campaign>/<run_id>``, and the server
records, per campaign, each request's start and end and how many requests of the campaign were
in flight (more than one is a violation). The fence each execution held is read from its
RunStarted event, whose ``worker`` field reads ``<worker> fence=<token>``.
"""

from __future__ import annotations

import http.server
import itertools
import os
import random
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaigns.v1 import events_pb2, schedule_pb2
from tests.scraper_svc.conftest import (
    HttpThread,
    PageServer,
    Route,
    finished_run,
    lock_holders,
    retry_reasons,
    run_request,
)
from tests.support import PARTITIONS, ServiceProcess, eventually, scraper_process

pytestmark = pytest.mark.slow

# 20 campaigns per run partition: a worker reads each partition's stream in order, so runs in
# flight together come from few campaigns; with fewer, BUFFER_ONE skips most of them.
CAMPAIGNS = 20 * len(PARTITIONS)
RUNS = 1000
FINAL_EVENTS = (events_pb2.RunSucceeded, events_pb2.RunFailed, events_pb2.RunSkipped)
FENCE = re.compile(r" fence=(\d+)$")


@dataclass
class Execution:
    run_id: str
    start: float
    end: float


@dataclass
class HistoryServer:
    """Pages ``/h/<campaign>/<run_id>`` that take ``delay_s``; records the history."""

    delay_s: float = 0.02
    executions: dict[str, list[Execution]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    _in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        history = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                _, _, campaign, run_id = self.path.split("/", 3)
                history.enter(campaign, run_id)
                start = time.monotonic()
                time.sleep(history.delay_s)  # the page is slow; not test synchronisation
                history.leave(campaign, Execution(run_id, start, time.monotonic()))
                body = b"<h1>ok</h1>"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = HttpThread(Handler)

    def enter(self, campaign: str, run_id: str) -> None:
        with self._lock:
            self._in_flight[campaign] += 1
            if self._in_flight[campaign] > 1:
                self.violations.append(f"{run_id} overlaps another run of {campaign}")

    def leave(self, campaign: str, execution: Execution) -> None:
        with self._lock:
            self._in_flight[campaign] -= 1
            self.executions[campaign].append(execution)

    def count(self) -> int:
        with self._lock:
            return sum(len(runs) for runs in self.executions.values())

    def url(self, campaign: str, run_id: str) -> str:
        return self._http.url(f"/h/{campaign}/{run_id}")

    def close(self) -> None:
        self._http.close()


@pytest.fixture
def history() -> Iterator[HistoryServer]:
    server = HistoryServer()
    try:
        yield server
    finally:
        server.close()


def _scraper(state_url: str, lock_urls: list[str], name: str, **extra: str) -> ServiceProcess:
    quiet_fast_retries = {
        "SCRAPER_LOG_LEVEL": "WARNING",
        "SCRAPER_RETRY_DELAY_S": "0.1",
        "SCRAPER_RETRY_MAX_DELAY_S": "0.5",
    }
    return scraper_process(state_url, lock_urls, name, **{**quiet_fast_retries, **extra})


class EventLog:
    """Reads the run events streams incrementally: final states and RunStarted fences (a
    campaign's events are in one partition, in stream order)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._after = {partition.events_stream: "-" for partition in PARTITIONS}
        self.finished: dict[str, str] = {}
        self.fences: dict[str, list[tuple[str, int]]] = defaultdict(list)  # in stream order
        self.campaign_of: dict[str, str] = {}

    async def catch_up(self) -> int:
        for stream, after in self._after.items():
            while entries := await self._redis.xrange(stream, after, "+", count=500):
                for _entry_id, fields in entries:
                    self._apply(decode_body(Envelope.from_fields(fields)))
                after = self._after[stream] = "(" + entries[-1][0].decode()
        return len(self.finished)

    def _apply(self, body: object) -> None:
        retry_marker = isinstance(body, events_pb2.RunSkipped) and not body.HasField("finished_at")
        if isinstance(body, FINAL_EVENTS) and not retry_marker:
            self.finished[body.run_id] = type(body).__name__
        elif isinstance(body, events_pb2.RunStarted):
            match = FENCE.search(body.worker)
            assert match is not None, f"RunStarted without a fence: {body.worker!r}"
            campaign = self.campaign_of[body.run_id]
            self.fences[campaign].append((body.run_id, int(match.group(1))))


def _assert_history_clean(history: HistoryServer, events: EventLog) -> None:
    assert history.violations == []
    for campaign, runs in history.executions.items():
        ordered = sorted(runs, key=lambda execution: execution.start)
        for earlier, later in itertools.pairwise(ordered):
            assert earlier.end <= later.start, (campaign, earlier, later)
        fence_of = dict(events.fences[campaign])
        fences = [fence_of[execution.run_id] for execution in ordered]
        assert fences == sorted(set(fences)), (campaign, fences)  # strictly increasing
        in_stream_order = [fence for _, fence in events.fences[campaign]]
        assert in_stream_order == sorted(set(in_stream_order)), (campaign, in_stream_order)


async def test_exclusion_history_of_1000_runs_on_three_workers_with_a_master_killed(
    state_url: str,
    lock_urls: list[str],
    state_redis: Redis,
    redis_stack: EmbeddedStack,
    history: HistoryServer,
) -> None:
    workers = [
        _scraper(
            state_url,
            lock_urls,
            f"worker-{n}",
            SCRAPER_CONCURRENCY="4",
            SCRAPER_PER_HOST_CONCURRENCY="4",  # every page is on one host
        )
        for n in range(3)
    ]
    try:
        runs = RunLog(state_redis, PARTITIONS)
        events = EventLog(state_redis)
        order = [n % CAMPAIGNS for n in range(RUNS)]
        random.Random(7).shuffle(order)  # runs of one campaign arrive close together at times
        limits = schedule_pb2.RunLimits(overlap=schedule_pb2.OVERLAP_POLICY_BUFFER_ONE)
        for n, campaign_n in enumerate(order):
            campaign, run_id = f"c{campaign_n}", f"h-{n}"
            events.campaign_of[run_id] = campaign
            request = run_request(run_id, campaign, [history.url(campaign, run_id)], {})
            request.limits.CopyFrom(limits)
            await runs.request_run(request, dedupe=False)

        await eventually(
            lambda: _at_least(history.count, RUNS // 3), timeout_s=30, what="a third executed"
        )
        redis_stack.locks[0].kill()  # one of three masters gone: locks are still granted
        executed_before = history.count()

        async def all_finished() -> bool:
            return await events.catch_up() == RUNS

        await eventually(all_finished, timeout_s=40, what="every run in a final state")
        for worker in workers:
            assert worker.proc is not None and worker.proc.poll() is None, worker.logs()
    finally:
        for worker in workers:
            worker.close()

    assert history.count() > executed_before  # runs kept executing without master 0
    outcomes = list(events.finished.values())
    assert outcomes.count("RunFailed") == 0
    assert outcomes.count("RunSucceeded") == history.count() >= RUNS * 0.7
    _assert_history_clean(history, events)
    page, _ = await runs.list_runs(page_size=RUNS)
    assert len(page) == RUNS
    assert {run.state for run in page} <= {RunState.SUCCEEDED, RunState.SKIPPED}


async def _at_least(count: object, minimum: int) -> bool:
    return bool(count() >= minimum)  # type: ignore[operator]


async def test_exclusion_frozen_worker_is_fenced_off_after_another_takes_over(
    state_url: str, lock_urls: list[str], state_redis: Redis, pages: PageServer
) -> None:
    pages.routes["/hang"] = Route(body=b"<h1>late</h1>", hang=True)
    ok = pages.page("/ok", "<h1>fresh</h1>")
    frozen = _scraper(
        state_url, lock_urls, "frozen", SCRAPER_LOCK_TTL_MS="600", SCRAPER_CONCURRENCY="1"
    )
    healthy: ServiceProcess | None = None
    runs = RunLog(state_redis, PARTITIONS)
    try:
        fast = schedule_pb2.RetryPolicy(initial_delay_seconds=0.2, jitter=0)
        old_request = run_request("r-old", "x", [pages.url("/hang")], {}, retry=fast)
        await runs.request_run(old_request, dedupe=False)

        async def frozen_fetching() -> bool:
            return pages.hits.get("/hang", 0) == 1

        await eventually(frozen_fetching, timeout_s=30, what="the frozen worker fetching")
        os.kill(frozen.pid, signal.SIGSTOP)
        healthy = _scraper(state_url, lock_urls, "healthy")

        async def lease_expired() -> bool:
            return await lock_holders(lock_urls, "x") == 0

        await eventually(lease_expired, what="the frozen lease to expire")
        await runs.request_run(run_request("r-new", "x", [ok], {}), dedupe=False)
        new = await finished_run(state_redis, "r-new", timeout_s=30)
        assert new.state is RunState.SUCCEEDED, healthy.logs()

        pages.release.set()  # the frozen worker's page answers; it reads it once resumed
        os.kill(frozen.pid, signal.SIGCONT)
        old = await finished_run(state_redis, "r-old", timeout_s=30)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.close()
        if healthy is not None:
            healthy.close()

    # The frozen worker woke up past its lease: it stopped without writing anything (no failure,
    # no retry queued), then ran its still-pending attempt again under a newer lease, which
    # wrote the run's only results and its one outcome.
    assert old.state is RunState.SUCCEEDED and old.attempt == 1, old
    assert await retry_reasons(state_redis, "r-old") == []
    assert [result.run_id for result in await runs.list_results("x", 10)] == ["r-old", "r-new"]
    events = EventLog(state_redis)
    events.campaign_of.update({"r-old": "x", "r-new": "x"})
    await events.catch_up()
    assert [run_id for run_id, _ in events.fences["x"]] == ["r-old", "r-new", "r-old"]
    fences = [fence for _, fence in events.fences["x"]]
    assert fences == sorted(fences) and len(set(fences)) == 3
