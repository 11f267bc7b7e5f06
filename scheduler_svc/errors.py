"""The scheduler's errors: one root, each mapped to its gRPC status code here and only here."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from scheduler_svc.validation import FieldViolation


class SchedulerError(Exception):
    """Root of every error the scheduler reports to a caller."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(SchedulerError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        fields = ", ".join(v.field for v in violations)
        super().__init__(f"invalid request: fix {fields} (see field violations)")
        self.violations = violations


class NotFound(SchedulerError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SchedulerError):
    code = grpc.StatusCode.ALREADY_EXISTS


class VersionConflict(SchedulerError):
    """The schedule changed since the caller read it (optimistic concurrency)."""

    code = grpc.StatusCode.ABORTED


class Unavailable(SchedulerError):
    """State Redis unreachable or not caught up in time: safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


def to_grpc_status(error: SchedulerError) -> grpc.Status:
    """The rich status for ``error``: code, message and BadRequest field violations."""
    status = status_pb2.Status(code=error.code.value[0], message=str(error))
    if isinstance(error, InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT


class StartupError(SchedulerError):
    """The scheduler cannot start (state Redis unreachable or refusing the credentials)."""

    code = grpc.StatusCode.UNAVAILABLE
