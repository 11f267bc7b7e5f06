"""Log lines: JSON with service, trace and run ids; no colour codes; quiet probes; human form."""

from __future__ import annotations

import json
import logging

from campaign_common.observability.logs import (
    HumanFormatter,
    JsonFormatter,
    ProbeFilter,
    run_logging,
)
from campaign_common.observability.telemetry import tracer


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("scraper_svc.runner", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_carries_service_trace_span_and_run_ids() -> None:
    formatter = JsonFormatter("scraper")
    with tracer("test").start_as_current_span("process") as span:
        line = formatter.format(_record("run %s succeeded", "s1:1", run_id="s1:1", pages=2))
    entry = json.loads(line)
    context = span.get_span_context()
    assert entry["service"] == "scraper"
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert entry["run_id"] == "s1:1" and entry["pages"] == 2
    assert entry["msg"] == "run s1:1 succeeded" and entry["level"] == "INFO"
    assert entry["ts"].endswith("Z")


def test_json_lines_never_carry_terminal_colour_codes() -> None:
    # What uvicorn logs: a plain message plus an ANSI-coloured copy in ``color_message``.
    record = _record(
        "Uvicorn running on %s", "\x1b[1mhttp://0.0.0.0:8080\x1b[0m", color_message="\x1b[32mx"
    )
    line = JsonFormatter("gateway").format(record)
    assert "\x1b" not in line and "\\u001b" not in line
    assert "color_message" not in json.loads(line)


def test_probe_access_lines_are_dropped_and_api_lines_kept() -> None:
    probe_filter = ProbeFilter()

    def access(path: str) -> logging.LogRecord:
        return _record('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5", "GET", path, "1.1", 200)

    assert not probe_filter.filter(access("/healthz"))
    assert not probe_filter.filter(access("/readyz"))
    assert not probe_filter.filter(access("/metrics?name[]=up"))
    assert probe_filter.filter(access("/v1/runs?pageSize=5"))
    assert probe_filter.filter(_record("plain line"))


def test_the_human_format_is_one_readable_line_with_the_run_id() -> None:
    line = HumanFormatter("scheduler").format(_record("fired", run_id="s1:1"))
    assert " scheduler INFO  scraper_svc.runner: fired [run_id=s1:1]" in line
    assert not line.startswith("{")


async def test_lines_inside_a_run_carry_its_run_id_also_from_tasks_it_starts() -> None:
    import asyncio

    formatter = JsonFormatter("scraper")
    with run_logging("s1:42"):
        inside = json.loads(formatter.format(_record("fetching")))
        from_task = await asyncio.create_task(_format_later(formatter))
    outside = json.loads(formatter.format(_record("idle")))
    assert inside["run_id"] == "s1:42" and from_task["run_id"] == "s1:42"
    assert "run_id" not in outside


async def _format_later(formatter: JsonFormatter) -> dict[str, object]:
    line: dict[str, object] = json.loads(formatter.format(_record("in a task")))
    return line
