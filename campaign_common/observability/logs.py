"""Process logging: JSON lines (production) or a human format (`make run` on a terminal).

Every JSON line carries ``ts``, ``level``, ``service``, ``logger``, ``msg``, the current
``trace_id``/``span_id`` when a span is active, ``run_id`` inside `run_logging` (a fire, a
run's processing), and the ``extra`` fields of the call (``schedule_id`` ...) as fields of
their own. URL credentials (``user:secret@``) never reach a line in either format
(`campaign_common.redaction`). Terminal colour codes never reach a
JSON line (uvicorn's ``color_message`` is dropped, escape sequences are stripped). Access log
lines of probes (``/healthz``, ``/readyz``, ``/metrics``) are dropped unless asked for.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

from campaign_common.redaction import redact

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
    "taskName",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_ACCESS_LOGGER = "uvicorn.access"
_RUN_ID: ContextVar[str] = ContextVar("run_id", default="")


@contextmanager
def run_logging(run_id: str) -> Iterator[None]:
    """Every log line of the block (and of the tasks it starts) carries ``run_id``."""
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


def _run_id(record: logging.LogRecord) -> str:
    return str(getattr(record, "run_id", "") or _RUN_ID.get())


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": redact(strip_ansi(record.getMessage())),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = f"{ctx.trace_id:032x}"
            entry["span_id"] = f"{ctx.span_id:016x}"
        run_id = _RUN_ID.get()
        if run_id:
            entry["run_id"] = run_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                text = value if isinstance(value, int | float | bool) else redact(str(value))
                entry[key] = text
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


class HumanFormatter(logging.Formatter):
    """``12:00:01.234 scheduler INFO  logger: message [run_id=...]`` for a terminal."""

    def __init__(self, service: str) -> None:
        fmt = f"%(asctime)s.%(msecs)03d {service} %(levelname)-5s %(name)s: %(message)s"
        super().__init__(fmt, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        run_id = _run_id(record)
        return f"{line} [run_id={run_id}]" if run_id and run_id not in line else line


class ProbeFilter(logging.Filter):
    """Drops uvicorn access lines of health and metrics probes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            path = str(args[2]).split("?", 1)[0]
            return path not in PROBE_PATHS
        return True


def setup_logging(
    service: str, level: str = "INFO", json_lines: bool = True, *, probe_access_logs: bool = False
) -> None:
    """Configure the root logger once per process; logs go to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(service) if json_lines else HumanFormatter(service)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job at INFO; the scheduler logs the fires that matter itself.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
    # httpx logs every request at INFO, query string included; fetches are logged by the
    # scraper itself at DEBUG, without query strings.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    access = logging.getLogger(_ACCESS_LOGGER)
    access.filters[:] = [] if probe_access_logs else [ProbeFilter()]
