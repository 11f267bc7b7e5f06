"""The error root: gRPC -> HTTP status table, rich-status decoding, validation error paths."""

from __future__ import annotations

import grpc
import pytest

from campaigns.v1 import scheduler_service_pb2 as api
from gateway.errors import (
    HTTP_STATUS,
    from_http_status,
    from_rpc_error,
    from_validation_errors,
    http_status,
)
from tests.gateway.stub import rich_status

C = grpc.StatusCode

# google/rpc/code.proto, written out independently of the implementation.
CODE_PROTO = [
    (C.OK, 200),
    (C.CANCELLED, 499),
    (C.UNKNOWN, 500),
    (C.INVALID_ARGUMENT, 400),
    (C.DEADLINE_EXCEEDED, 504),
    (C.NOT_FOUND, 404),
    (C.ALREADY_EXISTS, 409),
    (C.PERMISSION_DENIED, 403),
    (C.UNAUTHENTICATED, 401),
    (C.RESOURCE_EXHAUSTED, 429),
    (C.FAILED_PRECONDITION, 400),
    (C.ABORTED, 409),
    (C.OUT_OF_RANGE, 400),
    (C.UNIMPLEMENTED, 501),
    (C.INTERNAL, 500),
    (C.UNAVAILABLE, 503),
    (C.DATA_LOSS, 500),
]


@pytest.mark.parametrize(("code", "status"), CODE_PROTO, ids=[c.name for c, _ in CODE_PROTO])
def test_http_status_follows_code_proto(code: grpc.StatusCode, status: int) -> None:
    assert http_status(code) == status


def test_http_status_table_covers_every_grpc_code() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def _rpc_error(status: grpc.Status) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
    )


def test_from_rpc_error_camel_cases_violation_paths() -> None:
    status = rich_status(
        C.INVALID_ARGUMENT,
        "invalid request",
        {
            "schedule.interval_seconds": "must be between 1 and 31622400",
            "scrape.urls[2]": "must be an absolute http(s) URL",
            "scrape.selectors.my_field": "invalid CSS selector",
            "campaign_id": "must match [a-z0-9][a-z0-9-]{0,62}",
        },
    )
    error = from_rpc_error(_rpc_error(status), api.AddScheduledCampaignRequest(), 5.0)
    assert error.status == 400 and error.code is C.INVALID_ARGUMENT
    fields = [v.field for v in error.violations]
    assert fields == [
        "schedule.intervalSeconds",
        "scrape.urls[2]",
        "scrape.selectors.my_field",
        "campaignId",
    ]
    assert "schedule.intervalSeconds" in error.message
    assert error.body()["fieldViolations"][0] == {
        "field": "schedule.intervalSeconds",
        "description": "must be between 1 and 31622400",
    }


def test_from_rpc_error_keeps_scheduler_message_and_code() -> None:
    status = rich_status(C.NOT_FOUND, "schedule 'x' not found")
    error = from_rpc_error(_rpc_error(status), api.GetScheduleRequest(), 5.0)
    assert (error.status, error.message, error.violations) == (404, "schedule 'x' not found", ())
    assert error.body() == {
        "code": "NOT_FOUND",
        "message": "schedule 'x' not found",
        "fieldViolations": [],
    }


def test_from_rpc_error_without_rich_status_says_scheduler_unreachable() -> None:
    bare = grpc.aio.AioRpcError(
        C.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="connection refused"
    )
    error = from_rpc_error(bare, api.GetScheduleRequest(), 5.0)
    assert error.status == 503 and error.code is C.UNAVAILABLE
    assert "scheduler is unreachable" in error.message


def test_from_rpc_error_deadline_names_the_timeout() -> None:
    bare = grpc.aio.AioRpcError(C.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata())
    error = from_rpc_error(bare, api.GetScheduleRequest(), 2.5)
    assert error.status == 504 and "2.5s" in error.message


def test_from_rpc_error_ignores_details_that_disagree_with_the_code() -> None:
    status = rich_status(C.INVALID_ARGUMENT, "bad", {"name": "required"})
    mismatched = grpc.aio.AioRpcError(
        C.INTERNAL,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        details="boom: Traceback ...",
    )
    error = from_rpc_error(mismatched, api.AddScheduledCampaignRequest(), 5.0)
    assert error.status == 500 and not error.violations and "Traceback" not in error.message


def test_from_validation_errors_builds_rest_paths() -> None:
    error = from_validation_errors(
        [
            {"loc": ("body", "name"), "type": "missing", "msg": "Field required"},
            {"loc": ("body", "scrape", "urls", 1), "type": "string_type", "msg": "not a str"},
            {"loc": ("query", "pageSize"), "type": "int_parsing", "msg": "not an int"},
        ]
    )
    assert error.status == 400 and error.code is C.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in error.violations] == [
        ("name", "is required"),
        ("scrape.urls[1]", "not a str"),
        ("pageSize", "not an int"),
    ]
    fixes = "name, scrape.urls[1], pageSize"
    assert error.message == f"invalid request: fix {fixes} (see fieldViolations)"


def test_from_validation_errors_invalid_json_has_message_and_no_fields() -> None:
    error = from_validation_errors(
        [{"loc": ("body", 3), "type": "json_invalid", "ctx": {"error": "Expecting value"}}]
    )
    assert error.status == 400 and not error.violations
    assert "not valid JSON" in error.message and "Expecting value" in error.message


def test_from_http_status_wrong_method_keeps_405_and_allow() -> None:
    error = from_http_status(405, "GET", "/campaign/addScheduledCampaign", "POST")
    assert (error.status, error.code, error.headers) == (405, C.UNIMPLEMENTED, {"Allow": "POST"})
    assert "use POST" in error.message
