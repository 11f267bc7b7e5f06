"""Every string field of every SchedulerService request passes one check over real gRPC:
control characters and oversized values are INVALID_ARGUMENT naming the field, never UNKNOWN,
a huge error text, or a stored value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2, status_pb2

from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.request_strings import string_violations

SERVICE = api.DESCRIPTOR.services_by_name["SchedulerService"]


@pytest.fixture
async def stub(scheduler_target: str) -> AsyncIterator[api_grpc.SchedulerServiceStub]:
    async with grpc.aio.insecure_channel(scheduler_target) as channel:
        yield api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]


def _string_fields() -> list[tuple[str, str]]:
    """(method, field) for every top-level string field of every request."""
    found = []
    for method in SERVICE.methods:
        for field in method.input_type.fields:
            if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
                found.append((method.name, field.name))
    return found


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            bad = error_details_pb2.BadRequest()
            status.details[0].Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


@pytest.mark.parametrize(("method", "field"), _string_fields())
@pytest.mark.parametrize("value", ["x" * 16_000, "a\x00b", "a\x1bb", "a\x85b"])
async def test_every_string_field_is_checked(
    stub: api_grpc.SchedulerServiceStub, method: str, field: str, value: str
) -> None:
    request: Any = getattr(api, SERVICE.methods_by_name[method].input_type.name)()
    setattr(request, field, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        call = getattr(stub, method)(request, timeout=5)
        await (call.read() if SERVICE.methods_by_name[method].server_streaming else call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert field in _violations(info.value)
    assert len(info.value.details() or "") < 500


def test_nested_repeated_and_map_strings_are_named_by_path() -> None:
    request = api.AddScheduledCampaignRequest(name="ok")
    request.schedule.cron = "0 9 * * *\x00"
    request.scrape.urls.extend(["http://a.test/", "http://b.test/\x01"])
    request.scrape.selectors["price"] = ".p\x7f"
    request.scrape.selectors["bad\x02key"] = "h1"
    fields = [v.field for v in string_violations(request)]
    assert sorted(fields) == sorted(
        ["schedule.cron", "scrape.urls[1]", "scrape.selectors.price", "scrape.selectors"]
    )


def test_pause_note_may_hold_newlines_and_tabs() -> None:
    assert string_violations(api.PauseScheduleRequest(schedule_id="s", note="a\n\tb")) == []
    assert string_violations(api.PauseScheduleRequest(schedule_id="s", note="a\x00b"))
