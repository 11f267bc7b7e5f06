"""Time conversions: epoch milliseconds, aware datetimes, protobuf Timestamps, RFC 3339."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (for event times, never for measuring durations)."""
    return time.time_ns() // 1_000_000


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: a time zone is required")
    return int(value.timestamp() * 1000)


def ms_to_timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def timestamp_to_ms(ts: Timestamp) -> int:
    return int(ts.ToMilliseconds())


def ms_to_rfc3339(ms: int) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. ``2026-12-01T09:00:00.000Z``."""
    return ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
