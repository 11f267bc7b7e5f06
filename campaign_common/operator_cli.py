"""Operator commands of the `campaigns` CLI: schedules, runs, dead letters and a live watch,
over the scheduler's gRPC API, printed as readable tables.

Every call has a deadline; an error prints its gRPC code, message and field violations and
exits with status 1. The scheduler address comes from ``--target`` or
``CAMPAIGNS_SCHEDULER_TARGET`` (default ``127.0.0.1:50051``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaign_common import retry_policy
from campaign_common.timeutil import ms_to_rfc3339
from campaigns.v1 import run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", frozen=True, extra="ignore")

    scheduler_target: str = "127.0.0.1:50051"
    timeout_s: float = 5.0
    watch_interval_s: float = 1.0


def _time(message: Any, name: str) -> str:
    if not message.HasField(name):
        return "-"
    return ms_to_rfc3339(getattr(message, name).ToMilliseconds())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns as wide as their widest cell."""
    grid = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in grid) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in grid
    )


def _when(spec: schedule_pb2.ScheduleSpec) -> str:
    if spec.HasField("cron"):
        return f"cron {spec.cron} ({spec.timezone or 'UTC'})"
    if spec.HasField("interval_seconds"):
        return f"every {spec.interval_seconds}s"
    return f"once at {_time(spec, 'run_at')}"


def schedules_table(schedules: Sequence[schedule_pb2.Schedule]) -> str:
    rows = [
        [
            s.schedule_id,
            s.campaign_id,
            schedule_pb2.ScheduleState.Name(s.state).removeprefix("SCHEDULE_STATE_"),
            str(s.version),
            _when(s.spec),
            ms_to_rfc3339(s.next_fire_times[0].ToMilliseconds()) if s.next_fire_times else "-",
            s.name,
        ]
        for s in schedules
    ]
    headers = ["SCHEDULE", "CAMPAIGN", "STATE", "VERSION", "WHEN", "NEXT FIRE", "NAME"]
    return table(headers, rows)


def retry_line(message: schedule_pb2.RetryPolicy) -> str:
    """The schedule's effective retry policy in one line."""
    policy = retry_policy.from_proto(message)
    if policy.max_attempts == 1:
        return "retry: never (1 attempt)"
    return (
        f"retry: up to {policy.max_attempts} attempts; delays {policy.initial_delay_s:g}s"
        f" x{policy.multiplier:g}, at most {policy.max_delay_s:g}s, jitter {policy.jitter:g}"
    )


def _run_state(run: run_pb2.Run) -> str:
    return run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")


def runs_table(runs: Sequence[run_pb2.Run]) -> str:
    rows = [
        [
            r.run_id,
            _run_state(r),
            str(r.attempt),
            _time(r, "scheduled_for"),
            _time(r, "finished_at"),
            _time(r, "next_attempt_at"),  # set while RETRY_SCHEDULED
            r.error,
        ]
        for r in runs
    ]
    headers = ["RUN", "STATE", "ATTEMPT", "SCHEDULED FOR", "FINISHED", "NEXT ATTEMPT", "ERROR"]
    return table(headers, rows)


def watch_line(run: run_pb2.Run) -> str:
    line = f"{run.run_id}  {_run_state(run)}  attempt {run.attempt}"
    if run.HasField("next_attempt_at"):
        line += f"  next attempt at {_time(run, 'next_attempt_at')}"
    return f"{line}  {run.error}"


def dead_letters_table(dead: Sequence[run_pb2.DeadLetter]) -> str:
    rows = [
        [d.id, d.run_id, str(d.attempt), str(d.deliveries), _time(d, "dead_lettered_at"), d.error]
        for d in dead
    ]
    return table(["ID", "RUN", "ATTEMPT", "DELIVERIES", "PARKED AT", "LAST ERROR"], rows)


def describe_error(error: grpc.aio.AioRpcError) -> str:
    lines = [f"error: {error.code().name}: {error.details()}"]
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    return "\n".join(lines)


class Operator:
    """One command against the scheduler; returns the text to print."""

    def __init__(self, stub: api_grpc.SchedulerServiceStub, settings: CliSettings) -> None:
        self._stub = stub
        self._settings = settings

    async def _call(self, method: str, request: Any) -> Any:
        return await getattr(self._stub, method)(request, timeout=self._settings.timeout_s)

    async def run(self, args: argparse.Namespace) -> str:
        handler = getattr(self, f"_{args.group}_{args.action}".replace("-", "_"))
        text: str = await handler(args)
        return text

    async def _schedules_list(self, args: argparse.Namespace) -> str:
        page = await self._call("ListSchedules", api.ListSchedulesRequest(page_size=args.limit))
        return schedules_table(page.schedules)

    async def _schedules_get(self, args: argparse.Namespace) -> str:
        found = await self._call("GetSchedule", api.GetScheduleRequest(schedule_id=args.id))
        return f"{schedules_table([found])}\n{retry_line(found.retry_policy)}"

    async def _schedules_pause(self, args: argparse.Namespace) -> str:
        request = api.PauseScheduleRequest(schedule_id=args.id, note=args.note)
        return schedules_table([await self._call("PauseSchedule", request)])

    async def _schedules_resume(self, args: argparse.Namespace) -> str:
        request = api.ResumeScheduleRequest(schedule_id=args.id)
        return schedules_table([await self._call("ResumeSchedule", request)])

    async def _schedules_delete(self, args: argparse.Namespace) -> str:
        await self._call("DeleteSchedule", api.DeleteScheduleRequest(schedule_id=args.id))
        return f"deleted {args.id}"

    async def _schedules_trigger(self, args: argparse.Namespace) -> str:
        request = api.TriggerCampaignRequest(schedule_id=args.id)
        return f"requested run {(await self._call('TriggerCampaign', request)).run_id}"

    def _runs_request(self, args: argparse.Namespace) -> api.ListRunsRequest:
        return api.ListRunsRequest(
            schedule_id=args.schedule, campaign_id=args.campaign, page_size=args.limit
        )

    async def _runs_list(self, args: argparse.Namespace) -> str:
        return runs_table((await self._call("ListRuns", self._runs_request(args))).runs)

    async def _runs_get(self, args: argparse.Namespace) -> str:
        return runs_table([await self._call("GetRun", api.GetRunRequest(run_id=args.id))])

    async def _runs_watch(self, args: argparse.Namespace) -> str:
        """Print every state change of recent runs until interrupted (or ``--for`` seconds)."""
        seen: dict[str, tuple[int, int]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.for_s if args.for_s else None
        while deadline is None or loop.time() < deadline:
            runs = (await self._call("ListRuns", self._runs_request(args))).runs
            for run in reversed(runs):
                if seen.get(run.run_id) != (run.attempt, run.state):
                    seen[run.run_id] = (run.attempt, run.state)
                    print(watch_line(run))
            await asyncio.sleep(self._settings.watch_interval_s)  # polling interval
        return ""

    async def _dead_letters_list(self, args: argparse.Namespace) -> str:
        page = await self._call("ListDeadLetters", api.ListDeadLettersRequest(page_size=args.limit))
        return dead_letters_table(page.dead_letters)

    async def _dead_letters_retry(self, args: argparse.Namespace) -> str:
        retried = await self._call("RetryDeadLetter", api.RetryDeadLetterRequest(id=args.id))
        return f"requested run {retried.run_id} attempt {retried.attempt}"

    async def _dead_letters_purge(self, args: argparse.Namespace) -> str:
        await self._call("PurgeDeadLetter", api.PurgeDeadLetterRequest(id=args.id))
        return f"purged {args.id}"


def add_operator_commands(sub: Any) -> None:
    """Register ``schedules``, ``runs`` and ``dead-letters`` on the CLI's subparsers."""
    groups = {
        "schedules": {
            "list": [], "get": ["id"], "pause": ["id", "--note"], "resume": ["id"],
            "delete": ["id"], "trigger": ["id"],
        },
        "runs": {
            "list": ["--schedule", "--campaign"], "get": ["id"],
            "watch": ["--schedule", "--campaign", "--for"],
        },
        "dead-letters": {"list": [], "retry": ["id"], "purge": ["id"]},
    }  # fmt: skip
    for group, actions in groups.items():
        group_parser = sub.add_parser(group, help=f"{group} (over gRPC)")
        group_parser.set_defaults(group=group.replace("-", "_"))
        actions_parser = group_parser.add_subparsers(dest="action", required=True)
        for action, arguments in actions.items():
            parser = actions_parser.add_parser(action)
            parser.add_argument("--target", help="scheduler host:port")
            parser.add_argument("--limit", type=int, default=50)
            for argument in arguments:
                _add_argument(parser, argument)


def _add_argument(parser: argparse.ArgumentParser, argument: str) -> None:
    if argument == "--for":
        parser.add_argument("--for", dest="for_s", type=float, default=0.0, help="seconds")
    elif argument.startswith("--"):
        parser.add_argument(argument, default="")
    else:
        parser.add_argument(argument)


async def run_operator_command(args: argparse.Namespace, settings: CliSettings) -> int:
    target = args.target or settings.scheduler_target
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        operator = Operator(stub, settings)
        try:
            text = await operator.run(args)
        except grpc.aio.AioRpcError as exc:
            print(describe_error(exc))
            return 1
    if text:
        print(text)
    return 0
