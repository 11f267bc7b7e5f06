"""The one definition of run limits behind the wire: bounds and proto conversion."""

from __future__ import annotations

from campaign_common.runs.limits import (
    LIMIT_FIELDS,
    Overlap,
    RunLimits,
    limits_from_proto,
    limits_to_proto,
)
from campaigns.v1 import schedule_pb2


def test_limits_every_proto_field_is_defined_once_with_its_bound() -> None:
    proto_fields = {field.name for field in schedule_pb2.RunLimits.DESCRIPTOR.fields}
    assert set(LIMIT_FIELDS) | {"overlap"} == proto_fields
    attributes = [attribute for attribute, _ in LIMIT_FIELDS.values()]
    assert len(set(attributes)) == len(attributes)
    assert all(hasattr(RunLimits(), attribute) for attribute in attributes)


def test_limits_round_trip_through_the_proto() -> None:
    limits = RunLimits(
        overlap=Overlap.BUFFER_ONE,
        max_runs_per_window=2,
        window_s=60,
        max_total_runs=7,
        start_deadline_s=30,
        run_timeout_s=90,
        max_pages=5,
        max_bytes=1024,
        per_host_concurrency=3,
        per_host_delay_ms=250,
        pause_after_failures=4,
    )
    message = limits_to_proto(limits)
    assert message.overlap == schedule_pb2.OVERLAP_POLICY_BUFFER_ONE
    assert message.run_timeout_seconds == 90 and message.pause_after_failures == 4
    assert limits_from_proto(message) == limits


def test_limits_unset_overlap_reads_as_skip() -> None:
    assert limits_from_proto(schedule_pb2.RunLimits()) == RunLimits(overlap=Overlap.SKIP)
