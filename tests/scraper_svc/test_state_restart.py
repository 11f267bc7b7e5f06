"""Scrapers and the scheduler ride out a crash and restart of the state Redis.

A durable state server (append-only file, per test), the session lock masters, a real
scheduler process firing an interval schedule every second, and two real `python -m
scraper_svc` workers. Mid-test the state Redis is SIGKILLed and started again on the same
port and data directory. Every process must live on, say in its log that the state Redis was
unreachable, and go on running the fires that come after the restart, each exactly once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from campaign_common.envelope import Envelope, decode_body
from campaign_common.localstack.embedded import EmbeddedRedis
from campaign_common.redis_conn import make_client
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.scraper_svc.conftest import PageServer
from tests.support import (
    FINAL_EVENTS,
    ServiceProcess,
    event_run_id,
    eventually,
    pending_all,
    run_event_bodies,
    runs_stream,
    scraper_process,
    start_scheduler_process,
    xrange_all,
)

pytestmark = pytest.mark.slow

PAGE = "<html><body><h1>Spring sale</h1></body></html>"
INTERVAL_MS = 1000
# What each worker logs while the state Redis is down (consumer loop, retry pump).
UNREACHABLE = ("reading the runs stream failed", "retry delay queue in the state Redis unreachable")


def _worker(state_url: str, lock_urls: list[str], name: str) -> ServiceProcess:
    fast_recovery = {
        "SCRAPER_LOG_LEVEL": "INFO",
        "SCRAPER_LOG_JSON": "false",
        "SCRAPER_LOCK_TTL_MS": "1000",
        "SCRAPER_RECLAIM_IDLE_MS": "2000",
        "SCRAPER_RECLAIM_INTERVAL_S": "0.2",
        "SCRAPER_RETRY_POLL_MS": "50",
        "SCRAPER_RETRY_DELAY_S": "0.2",
        "SCRAPER_RETRY_MAX_DELAY_S": "1",
        "SCRAPER_FETCH_TIMEOUT_S": "5",
    }
    return scraper_process(state_url, lock_urls, name, **fast_recovery)


def _unreachable_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(u in line for u in UNREACHABLE)]


def _fires(schedule_id: str, phase_ms: int, after_ms: int, until_ms: int) -> list[str]:
    """Run ids of the fires due in (after_ms, until_ms] (nominal times phase + k * interval)."""
    first = after_ms + 1 + (phase_ms - after_ms - 1) % INTERVAL_MS
    return [f"{schedule_id}:{ms}" for ms in range(first, until_ms + 1, INTERVAL_MS)]


def _fire_ms(run_id: str) -> int:
    """Nominal fire time of a scheduled run (`{scheduleId}:{nominalFireUnixMs}`)."""
    return int(run_id.rsplit(":", 1)[1])


@dataclass
class Ledger:
    """What became of the fires due in a window, from the runs and run events streams."""

    due: int  # fires the schedule was due to make in the window
    requested: int  # of those, with a RunRequested on the runs stream
    completed: int  # exactly one final event, SUCCEEDED
    overlapped: int  # exactly one final event, SKIPPED because another run held the lock
    lost: int  # no final event (never requested, or requested and never finished)
    duplicated: int  # more than one final event
    finals: dict[str, list[str]]  # run id -> its final events, in order
    started_by: dict[str, list[str]]  # run id -> consumer of each RunStarted, in order


async def _ledger(redis: Redis, run_ids: list[str]) -> Ledger:
    requested: set[str] = set()
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        if isinstance(body, events_pb2.RunRequested):
            requested.add(body.run_id)
    finals: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    started_by: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for body in await run_event_bodies(redis):
        run_id = event_run_id(body)
        if run_id not in finals:
            continue
        if isinstance(body, events_pb2.RunStarted):
            started_by[run_id].append(body.worker.split(" ")[0])
        if isinstance(body, FINAL_EVENTS):
            skipped = isinstance(body, events_pb2.RunSkipped)
            finals[run_id].append(f"RunSkipped({body.reason})" if skipped else type(body).__name__)
    return Ledger(
        due=len(run_ids),
        requested=len(requested.intersection(run_ids)),
        completed=sum(1 for f in finals.values() if f == ["RunSucceeded"]),
        overlapped=sum(1 for f in finals.values() if f == ["RunSkipped(overlap)"]),
        lost=sum(1 for f in finals.values() if not f),
        duplicated=sum(1 for f in finals.values() if len(f) > 1),
        finals=finals,
        started_by=started_by,
    )


async def _succeeded_fires(redis: Redis, schedule_id: str) -> dict[int, str]:
    """Nominal fire ms -> consumer, of the schedule's scheduled runs that SUCCEEDED so far."""
    workers: dict[str, str] = {}
    done: dict[int, str] = {}
    for body in await run_event_bodies(redis):
        run_id = event_run_id(body)
        if not run_id.startswith(f"{schedule_id}:") or "manual" in run_id:
            continue
        if isinstance(body, events_pb2.RunStarted):
            workers[run_id] = body.worker.split(" ")[0]
        elif isinstance(body, events_pb2.RunSucceeded):
            done[_fire_ms(run_id)] = workers.get(run_id, "")
    return done


async def test_state_restart_workers_and_scheduler_survive_and_later_fires_run_once(
    durable_state: EmbeddedRedis, lock_urls: list[str], pages: PageServer
) -> None:
    url = pages.page("/offer", PAGE)
    scheduler, target = await start_scheduler_process(durable_state.url)
    workers = [_worker(durable_state.url, lock_urls, name) for name in ("alpha", "beta")]
    redis = make_client(durable_state.url, timeout_s=2.0)
    processes = {"scheduler": scheduler, "alpha": workers[0], "beta": workers[1]}
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            created = await stub.AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    campaign_id="restart-shop",
                    name="restart",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=INTERVAL_MS // 1000),
                    scrape=schedule_pb2.ScrapeSpec(urls=[url], selectors={"title": "h1"}),
                ),
                timeout=5,
            )
        schedule_id = created.schedule_id
        created_ms = created.created_at.ToMilliseconds()

        async def succeeded_after(
            since_ms: int, count: int, *, by: set[str] | None = None
        ) -> dict[int, str] | None:
            """Fires after ``since_ms`` that succeeded, once ``count`` of them (run ``by``)."""
            try:
                done = await _succeeded_fires(redis, schedule_id)
            except RedisError:
                return None  # the state Redis is (still) coming back
            later = {fire: worker for fire, worker in done.items() if fire > since_ms}
            enough = len(later) >= count and (by is None or set(later.values()) == by)
            return later if enough else None

        before = await eventually(
            lambda: succeeded_after(0, 2), timeout_s=30, what="2 runs SUCCEEDED before the restart"
        )
        phase_ms = min(before) % INTERVAL_MS  # every fire is anchor + k * interval
        logs_before = {name: p.logs() for name, p in processes.items()}
        assert not any(_unreachable_lines(log) for log in logs_before.values()), logs_before

        # A restart as `durable_state.restart()` does it (SIGKILL, then the same port and data
        # directory, AOF), but the server stays down until both workers noticed: a restart
        # quicker than the clients' own retries (3, with backoff) is never seen by them at all.
        down_ms = now_ms()
        durable_state.kill()

        async def both_noticed() -> bool:
            return all(_unreachable_lines(w.logs()) for w in workers)

        await eventually(both_noticed, timeout_s=15, what="both workers noticing the outage")
        durable_state.start()
        restarted_ms = now_ms()

        # Only fires nominally after the restart completed count: with `appendfsync everysec`
        # the last second of writes before the SIGKILL may be lost by Redis itself, and fires
        # due while it was down are emitted late (the scheduler retries them). Wait for three
        # such fires to succeed, each worker running at least one of them (neither stopped
        # consuming); every fire due up to the last of them is accounted for below.
        after = await eventually(
            lambda: succeeded_after(restarted_ms, 3, by={"alpha", "beta"}),
            timeout_s=30,
            what="3 runs fired after the restart SUCCEEDED, on both workers",
        )
        due = _fires(schedule_id, phase_ms, restarted_ms, max(after))
        earlier = _fires(schedule_id, phase_ms, created_ms, restarted_ms)

        async def settled() -> bool:
            """Every due fire finished and nothing is pending (no take-over can rerun one)."""
            try:
                ledger = await _ledger(redis, due)
                pending = await pending_all(redis)
            except RedisError:
                return False
            return ledger.lost == 0 and int(pending) == 0

        # A generous deadline before a run without a final event counts as lost (asserted below).
        with contextlib.suppress(AssertionError):
            await eventually(settled, timeout_s=20, what="a final event for every fire")
        ledger = await _ledger(redis, due)
        old = await _ledger(redis, earlier)

        crashed = {
            n: p.logs() for n, p in processes.items() if p.proc and p.proc.poll() is not None
        }
        assert not crashed, f"exited after the state Redis restart: {crashed}"
        logs = {name: p.logs() for name, p in processes.items()}
        print(f"\nstate Redis down for {restarted_ms - down_ms} ms; the workers said:")
        for name in ("alpha", "beta"):
            print(f"  {name}:", *_unreachable_lines(logs[name]), sep="\n    ")
        for what, book in (("after the restart", ledger), ("up to the restart (info)", old)):
            print(
                f"fires {what}: due={book.due} requested={book.requested} "
                f"completed={book.completed} overlapped={book.overlapped} lost={book.lost} "
                f"duplicated={book.duplicated}"
            )
        assert (ledger.lost, ledger.duplicated) == (0, 0), ledger
        assert ledger.requested == ledger.due and ledger.completed >= 3, ledger
        # Fires due while the server was down are emitted late, at once; a fire after the
        # restart that meets one of them running is skipped by the overlap policy (SKIP, the
        # default): that is the policy, not a loss. Every other one succeeded.
        assert ledger.completed + ledger.overlapped == ledger.due, ledger
    finally:
        await redis.aclose()
        for process in processes.values():
            process.close()
