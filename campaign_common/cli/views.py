"""How the `campaigns` operator commands print things: tables, one schedule in full, watch
lines and errors (text; ``--json`` prints the API's own JSON instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from campaign_common import retry_policy
from campaign_common.timeutil import ms_to_rfc3339
from campaigns.v1 import run_pb2, schedule_pb2


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
    jitter = f", jitter {spec.jitter_seconds}s" if spec.jitter_seconds else ""
    if spec.HasField("cron"):
        seconds6 = spec.cron_dialect == schedule_pb2.CRON_DIALECT_SECONDS6
        dialect = " seconds6" if seconds6 else ""
        return f"cron{dialect} {spec.cron} ({spec.timezone or 'UTC'}){jitter}"
    if spec.HasField("interval_seconds"):
        return f"every {spec.interval_seconds}s{jitter}"
    return f"once at {_time(spec, 'run_at')}{jitter}"


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


def _limits_line(limits: schedule_pb2.RunLimits) -> str:
    overlap = schedule_pb2.OverlapPolicy.Name(limits.overlap).removeprefix("OVERLAP_POLICY_")
    numbers = [
        f"{field.name}={getattr(limits, field.name)}"
        for field in limits.DESCRIPTOR.fields
        if field.name != "overlap" and getattr(limits, field.name)
    ]
    return f"limits: overlap {overlap}" + (f"; {', '.join(numbers)}" if numbers else "")


def schedule_details(s: schedule_pb2.Schedule) -> str:
    """Everything about one schedule: the table row, then each part on its own lines."""
    lines = [schedules_table([s]), ""]
    lines.append(f"name: {s.name}")
    lines.append(f"when: {_when(s.spec)}")
    if s.spec.HasField("start_time") or s.spec.HasField("end_time"):
        lines.append(f"bounds: {_time(s.spec, 'start_time')} .. {_time(s.spec, 'end_time')}")
    lines.append("urls:")
    lines += [f"  {url}" for url in s.scrape.urls]
    lines.append("selectors:" + ("" if s.scrape.selectors else " -"))
    lines += [f"  {name}: {css}" for name, css in sorted(s.scrape.selectors.items())]
    lines.append(_limits_line(s.limits))
    lines.append(retry_line(s.retry_policy))
    if s.paused_note:
        lines.append(f"paused note: {s.paused_note}")
    fires = [ms_to_rfc3339(t.ToMilliseconds()) for t in s.next_fire_times]
    lines.append("next fires: " + (", ".join(fires) if fires else "-"))
    lines.append(f"created {_time(s, 'created_at')}, updated {_time(s, 'updated_at')}")
    return "\n".join(lines)
