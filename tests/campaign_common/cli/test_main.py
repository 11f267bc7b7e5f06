"""The `campaigns` operator commands as a real process against a real scheduler."""

from __future__ import annotations

import asyncio
import sys

import grpc

from campaign_common.cli.operator import retry_line, runs_table, watch_line
from campaign_common.timeutil import ms_to_timestamp
from campaigns.v1 import run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.support import ROOT


async def _cli(target: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "campaign_common.cli", *args, "--target", target,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, out.decode()


async def test_cli_lists_pauses_triggers_and_reports_errors(scheduler_target: str) -> None:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        created = await stub.AddScheduledCampaign(
            api.AddScheduledCampaignRequest(
                name="Spring leads",
                schedule=schedule_pb2.ScheduleSpec(cron="0 9 * * 1", timezone="Europe/Berlin"),
                scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
            )
        )
    sid = created.schedule_id
    code, out = await _cli(scheduler_target, "schedules", "list")
    assert code == 0 and sid in out and "ACTIVE" in out and "cron 0 9 * * 1" in out
    code, out = await _cli(scheduler_target, "schedules", "get", sid)
    assert code == 0 and sid in out
    assert "retry: up to 3 attempts; delays 5s x2, at most 300s, jitter 0.2" in out
    code, out = await _cli(scheduler_target, "schedules", "pause", sid, "--note", "holiday")
    assert code == 0 and "PAUSED" in out
    code, out = await _cli(scheduler_target, "schedules", "trigger", sid)
    assert code == 0 and out.startswith(f"requested run {sid}:manual-")
    code, out = await _cli(scheduler_target, "runs", "list", "--schedule", sid)
    assert code == 0 and "REQUESTED" in out.splitlines()[1]
    assert "NEXT ATTEMPT" in out.splitlines()[0]
    code, out = await _cli(scheduler_target, "runs", "watch", "--schedule", sid, "--for", "0.5")
    assert code == 0 and "REQUESTED  attempt 1" in out
    code, out = await _cli(scheduler_target, "dead-letters", "list")
    assert code == 0 and out.split() == ["ID", "RUN", "ATTEMPT", "DELIVERIES", "PARKED", "AT",
                                         "LAST", "ERROR"]  # fmt: skip
    code, out = await _cli(scheduler_target, "schedules", "get", "nope")
    assert code == 4 and "NOT_FOUND" in out  # exit status 4: not found


def test_cli_runs_table_and_watch_show_the_next_attempt_of_a_retry() -> None:
    run = run_pb2.Run(
        run_id="s:1",
        state=run_pb2.RUN_STATE_RETRY_SCHEDULED,
        attempt=1,
        error="HTTP 503",
        next_attempt_at=ms_to_timestamp(1_767_603_600_000),
    )
    assert "2026-01-05T09:00:00.000Z" in runs_table([run]).splitlines()[1]
    assert watch_line(run) == (
        "s:1  RETRY_SCHEDULED  attempt 1  next attempt at 2026-01-05T09:00:00.000Z  HTTP 503"
    )


def test_cli_retry_line_describes_the_effective_policy() -> None:
    assert retry_line(schedule_pb2.RetryPolicy()) == (
        "retry: up to 3 attempts; delays 5s x2, at most 300s, jitter 0.2"
    )
    assert retry_line(schedule_pb2.RetryPolicy(max_attempts=1)) == "retry: never (1 attempt)"
