"""Reads behind the dashboard's lists, through the gateway's scheduler client and conversions.

The scheduler has no search, no state filter and no per-schedule outcome summary, so the
dashboard pages through what it has and derives the rest: the schedules list reads up to
`MAX_SCHEDULES` schedules and filters them here; a schedule's last outcome and failure streak
come from its newest `RECENT_RUNS` runs (read for the shown schedules only, a few at a time).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.scheduler_client import SchedulerClient

PAGE_SIZE = 100
MAX_SCHEDULES = 1000
SHOWN_SCHEDULES = 100
RECENT_RUNS = 20
CONCURRENT_READS = 8
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "DEAD_LETTERED"})
FAILED_STATES = frozenset({"FAILED", "DEAD_LETTERED"})

Json = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    last: str  # the newest final run's state, "" when none finished yet
    streak: int  # consecutive failed runs, newest first (skipped runs do not break it)


def outcome_of(runs: list[Json]) -> Outcome:
    """Last outcome and failure streak from runs listed newest first."""
    final = [run["state"] for run in runs if run["state"] in FINAL_STATES]
    streak = 0
    for state in final:
        if state in FAILED_STATES:
            streak += 1
        elif state != "SKIPPED":
            break
    return Outcome(final[0] if final else "", streak)


async def all_schedules(scheduler: SchedulerClient) -> list[Json]:
    """Every schedule in creation order (at most MAX_SCHEDULES)."""
    found: list[Json] = []
    token = ""
    while len(found) < MAX_SCHEDULES:
        request = api.ListSchedulesRequest(page_size=PAGE_SIZE, page_token=token)
        page = await scheduler.call("ListSchedules", request)
        found += [convert.schedule_to_json(s) for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    return found[:MAX_SCHEDULES]


def matches(schedule: Json, state: str, search: str) -> bool:
    if state and schedule["state"] != state:
        return False
    needle = search.strip().lower()
    haystack = " ".join((schedule["name"], schedule["campaignId"], schedule["scheduleId"]))
    return not needle or needle in haystack.lower()


async def runs(
    scheduler: SchedulerClient, schedule_id: str = "", campaign_id: str = "", size: int = 50
) -> list[Json]:
    """The newest runs (of a schedule or campaign when given), newest first."""
    request = api.ListRunsRequest(schedule_id=schedule_id, campaign_id=campaign_id, page_size=size)
    page = await scheduler.call("ListRuns", request)
    return [convert.run_to_json(run) for run in page.runs]


async def outcomes(scheduler: SchedulerClient, schedules: list[Json]) -> dict[str, Outcome]:
    """Last outcome and failure streak of each schedule, by schedule id."""
    limit = asyncio.Semaphore(CONCURRENT_READS)

    async def one(schedule_id: str) -> Outcome:
        async with limit:
            return outcome_of(await runs(scheduler, schedule_id, size=RECENT_RUNS))

    ids = [schedule["scheduleId"] for schedule in schedules]
    found = await asyncio.gather(*(one(schedule_id) for schedule_id in ids))
    return dict(zip(ids, found, strict=True))
