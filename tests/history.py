"""The history checker: what the whole system did, read back and judged.

Two observers, neither part of the product:

- `FetchRecorder`, the page server every run fetches (``/h/<campaign>``): it records each
  request's start and end per campaign, and a violation whenever two requests of one campaign
  are in flight at once. Some requests answer 503 (every ``fail_every``-th per campaign), so
  runs fail, retry and are dead-lettered.
- `read_history`, which reads the run events stream, the runs stream and every stored result
  back from the state Redis.

`check` asserts the invariants and returns the offending histories (empty when all hold):

- no two fetches of one campaign overlap (overlap policies SKIP and BUFFER_ONE);
- the fences the state accepted (each RunStarted's ``fence=<F>``) strictly increase per
  campaign, in stream order;
- every requested run has exactly one final outcome, nothing follows it, and the run's
  stored state is that outcome (it never changed);
- no result is stored twice for one run attempt;
- nothing requested is lost (every run id on the runs stream has its final outcome), and every
  schedule's nominal fire times are gapless (each fire emitted or recorded as missed).
"""

from __future__ import annotations

import http.server
import itertools
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from google.protobuf.message import Message
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaigns.v1 import events_pb2, run_pb2
from tests.scraper_svc.conftest import HttpThread
from tests.support import (
    FINAL_EVENTS,
    PARTITIONS,
    event_run_id,
    events_stream,
    runs_stream,
    xrange_all,
)

FENCE = re.compile(r" fence=(\d+)$")
_FINAL_STATE = {
    "RunSucceeded": RunState.SUCCEEDED,
    "RunFailed": RunState.FAILED,
    "RunSkipped": RunState.SKIPPED,
    "RunDeadLettered": RunState.DEAD_LETTERED,
}


@dataclass
class FetchRecorder:
    """Serves ``/h/<campaign>`` slowly (``delay_s``) and records every request per campaign."""

    delay_s: float = 0.02
    fail_every: int = 7
    intervals: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    violations: list[str] = field(default_factory=list)
    _in_flight: Counter[str] = field(default_factory=Counter)
    _served: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                campaign = self.path.rsplit("/", 1)[-1]
                status = recorder.enter(campaign)
                start = time.monotonic()
                time.sleep(recorder.delay_s)  # the page is slow; not test synchronisation
                recorder.leave(campaign, start)
                body = b"<h1>ok</h1>"
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the worker gave up on the page (killed, stopped)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = HttpThread(Handler)

    def enter(self, campaign: str) -> int:
        with self._lock:
            self._in_flight[campaign] += 1
            self._served[campaign] += 1
            if self._in_flight[campaign] > 1:
                self.violations.append(f"two fetches of {campaign} at once")
            return 503 if self._served[campaign] % self.fail_every == 0 else 200

    def leave(self, campaign: str, start: float) -> None:
        with self._lock:
            self._in_flight[campaign] -= 1
            self.intervals[campaign].append((start, time.monotonic()))

    def fetches(self) -> int:
        with self._lock:
            return sum(self._served.values())

    def url(self, campaign: str) -> str:
        return self._http.url(f"/h/{campaign}")

    def close(self) -> None:
        self._http.close()


@dataclass
class History:
    events: list[tuple[str, Message]]  # (stream id, body), the run events stream in order
    requested: dict[str, int]  # run id -> highest attempt requested on the runs stream
    campaign_of: dict[str, str]
    schedule_of: dict[str, str]
    stored: dict[str, RunState]  # run id -> the run's stored state at the end
    results: dict[str, list[run_pb2.ScrapeResult]]  # campaign -> its stored results


async def read_history(redis: Redis, campaigns: list[str]) -> History:
    events = [
        (entry_id.decode(), body)
        for entry_id, fields in await xrange_all(redis, events_stream)
        if (body := decode_body(Envelope.from_fields(fields))) is not None
    ]
    requested: dict[str, int] = {}
    campaign_of: dict[str, str] = {}
    schedule_of: dict[str, str] = {}
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        assert isinstance(body, events_pb2.RunRequested)
        requested[body.run_id] = max(requested.get(body.run_id, 0), body.attempt)
        campaign_of[body.run_id] = body.campaign_id
        schedule_of[body.run_id] = body.schedule_id
    runs = RunLog(redis, PARTITIONS)
    for _, body in events:  # missed fires have no request: take them from their records
        run_id = event_run_id(body)
        if run_id not in campaign_of and (record := await runs.get_run(run_id)) is not None:
            campaign_of[run_id], schedule_of[run_id] = record.campaign_id, record.schedule_id
    stored = {}
    for run_id in campaign_of:
        record = await runs.get_run(run_id)
        if record is not None:
            stored[run_id] = record.state
    results = {campaign: await runs.list_results(campaign, 100_000) for campaign in campaigns}
    return History(events, requested, campaign_of, schedule_of, stored, results)


def _final(body: Message) -> bool:
    # A RunSkipped without finished_at is a deferral note of older versions, not an outcome.
    if isinstance(body, events_pb2.RunSkipped):
        return body.HasField("finished_at")
    return isinstance(body, FINAL_EVENTS)


def _check_overlaps(recorder: FetchRecorder) -> list[str]:
    problems = list(recorder.violations)
    for campaign, intervals in recorder.intervals.items():
        ordered = sorted(intervals)
        for (start_a, end_a), (start_b, _) in itertools.pairwise(ordered):
            if start_b < end_a:
                problems.append(f"{campaign}: fetch at {start_b:.3f} overlaps {start_a:.3f}")
    return problems


def _check_fences(history: History) -> list[str]:
    fences: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for _, body in history.events:
        if isinstance(body, events_pb2.RunStarted) and (match := FENCE.search(body.worker)):
            campaign = history.campaign_of.get(body.run_id, "?")
            fences[campaign].append((body.run_id, int(match.group(1))))
    problems = []
    for campaign, seen in fences.items():
        for (run_a, fence_a), (run_b, fence_b) in itertools.pairwise(seen):
            if fence_b <= fence_a:
                problems.append(f"{campaign}: {run_b} fence {fence_b} after {run_a} {fence_a}")
    return problems


def _check_outcomes(history: History) -> list[str]:
    timeline: dict[str, list[tuple[str, Message]]] = defaultdict(list)
    for entry_id, body in history.events:
        timeline[event_run_id(body)].append((entry_id, body))
    problems = []
    for run_id in set(history.requested) | set(timeline):
        steps = timeline.get(run_id, [])
        shown = [f"{entry_id} {type(body).__name__}" for entry_id, body in steps]
        finals = [type(body).__name__ for _, body in steps if _final(body)]
        if len(finals) != 1:
            problems.append(f"{run_id}: {len(finals)} final outcomes: {shown}")
        elif not _final(steps[-1][1]):
            problems.append(f"{run_id}: events after its outcome: {shown}")
        elif history.stored.get(run_id) is not _FINAL_STATE[finals[0]]:
            problems.append(f"{run_id}: stored {history.stored.get(run_id)}, events {shown}")
    return problems


def _check_results(history: History) -> list[str]:
    problems = []
    for campaign, results in history.results.items():
        counts = Counter((result.run_id, result.attempt, result.url) for result in results)
        problems += [f"{campaign}: {key} stored {n} times" for key, n in counts.items() if n > 1]
    return problems


def _check_gapless(history: History, interval_ms: int) -> list[str]:
    fires: dict[str, list[int]] = defaultdict(list)
    for run_id, schedule_id in history.schedule_of.items():
        nominal = run_id.rsplit(":", 1)[1]
        if nominal.isdigit():
            fires[schedule_id].append(int(nominal))
    problems = []
    for schedule_id, times in fires.items():
        times.sort()
        gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a != interval_ms]
        if gaps:
            problems.append(f"schedule {schedule_id}: gaps or duplicates between fires {gaps}")
    return problems


def check(
    recorder: FetchRecorder, history: History, interval_ms: int, paused: dict[str, range]
) -> dict[str, list[str]]:
    """Every invariant in the module docstring, by kind; ``paused``: schedule id -> nominal
    times (ms) in which it was paused (no run may exist there). Values are the offending
    histories (all empty when every invariant holds)."""
    in_pause = [
        run_id
        for run_id, schedule_id in history.schedule_of.items()
        if schedule_id in paused and int(run_id.rsplit(":", 1)[1]) in paused[schedule_id]
    ]
    unpaused = History(
        history.events,
        history.requested,
        history.campaign_of,
        {r: s for r, s in history.schedule_of.items() if s not in paused},
        history.stored,
        history.results,
    )
    return {
        "overlapping fetches": _check_overlaps(recorder),
        "fences not increasing": _check_fences(history),
        "runs without exactly one unchanged outcome": _check_outcomes(history),
        "results stored twice": _check_results(history),
        "fired while paused": [f"{run_id}: fired while paused" for run_id in in_pause],
        "lost fires (gaps)": _check_gapless(unpaused, interval_ms),
    }


def summary(history: History) -> dict[str, int]:
    """Counts for the report: runs, outcomes by kind, attempts beyond the first."""
    outcomes = Counter(type(b).__name__ for _, b in history.events if _final(b))
    return {
        "runs": len(history.stored),
        "requested": len(history.requested),
        "retried_attempts": sum(max(0, a - 1) for a in history.requested.values()),
        **{name: outcomes[name] for name in _FINAL_STATE},
    }
