"""Every error the gateway answers with, and the one map from gRPC status codes to HTTP statuses.

All errors leave the gateway as ``GatewayError`` and are rendered as
``{"code", "message", "fieldViolations": [{"field", "description"}]}``. gRPC codes map to
HTTP per ``google/rpc/code.proto`` (``HTTP_STATUS``). Errors raised by the HTTP layer itself
(unknown route, wrong method) keep their HTTP status and get the closest canonical code; a wrong
method is the one status outside the table: 405 with code ``UNIMPLEMENTED`` and an ``Allow``
header.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from gateway.convert import json_field_path

log = logging.getLogger(__name__)

DETAILS_KEY = "grpc-status-details-bin"
CLIENT_CLOSED_REQUEST = 499  # nginx's convention, used by google/rpc/code.proto for CANCELLED

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: CLIENT_CLOSED_REQUEST,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# HTTP-layer errors (raised by routing, not by the scheduler) -> the closest canonical code.
_CODE_FOR_HTTP: Mapping[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ABORTED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code (500 for a code this table does not know)."""
    return HTTP_STATUS.get(code, 500)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class GatewayError(Exception):
    """Root of every error the gateway answers with: canonical code, message, bad fields."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)
        self.status = http_status(code) if status is None else status
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code.name,
            "message": printable(self.message),
            "fieldViolations": [
                {"field": printable(v.field), "description": printable(v.description)}
                for v in self.violations
            ],
        }


def printable(text: str) -> str:
    """``text`` as valid Unicode: a lone surrogate echoed from a request becomes ``\\ud800``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_argument(violations: Sequence[FieldViolation], fallback: str) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field (``fallback`` when no field can be named)."""
    named = [v for v in violations if v.field]
    if not named:
        return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, fallback)
    fields = ", ".join(dict.fromkeys(v.field for v in named))
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: fix {fields} (see fieldViolations)",
        named,
    )


# --- gRPC errors from the scheduler ------------------------------------------------------------


def _rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the server attached, if any (and if it agrees with the code)."""
    for key, value in error.trailing_metadata() or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            log.warning("undecodable %s from the scheduler", DETAILS_KEY)
            return None
        return status if status.code == error.code().value[0] else None
    return None


def _violations(status: status_pb2.Status, request: Message) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [
                FieldViolation(json_field_path(v.field, request), v.description)
                for v in bad.field_violations
            ]
    return found


def _transport_error(error: grpc.aio.AioRpcError, timeout_s: float) -> GatewayError:
    """An error without a rich status: the channel, the deadline, or a crash in the server."""
    code = error.code()
    log.warning("scheduler call failed: %s %s", code.name, error.details())
    if code is grpc.StatusCode.UNAVAILABLE:
        message = "the scheduler is unreachable; retry later (the gateway could not connect)"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the scheduler did not answer within {timeout_s:g}s; retry later"
    elif code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        message = "the scheduler failed to handle the request; retry later or report it"
    elif code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _size_limit_error(error)
    else:
        message = error.details() or f"the scheduler answered {code.name}"
    return GatewayError(code, message)


def _size_limit_error(error: grpc.aio.AioRpcError) -> GatewayError:
    """RESOURCE_EXHAUSTED from gRPC itself is a size limit: retrying can never succeed.

    A request over the limit is the caller's (413); an answer over it is the gateway's (500).
    Neither is 429, which clients retry.
    """
    details = error.details() or ""
    if "Sent message larger" in details or "SERVER: Received message larger" in details:
        return GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request is too large for the scheduler; send less",
            status=413,
        )
    return GatewayError(
        grpc.StatusCode.INTERNAL,
        "the scheduler's answer exceeded the gateway's size limit; ask for a smaller page",
    )


def from_rpc_error(error: grpc.aio.AioRpcError, request: Message, timeout_s: float) -> GatewayError:
    """Translate a failed scheduler call; field paths become the REST (camelCase) paths."""
    status = _rich_status(error)
    if status is None:
        return _transport_error(error, timeout_s)
    violations = _violations(status, request)
    if error.code() is grpc.StatusCode.INVALID_ARGUMENT and violations:
        return invalid_argument(violations, status.message)
    return GatewayError(error.code(), status.message or error.details() or "", violations)


# --- request validation (pydantic) and HTTP-layer errors ---------------------------------------

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_DESCRIPTIONS = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request; remove it (field names are camelCase)",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])  # our own validators' message, without a prefix
    return _DESCRIPTIONS.get(kind, str(error.get("msg", "is invalid")))


def _loc_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def from_validation_errors(errors: Sequence[Mapping[str, Any]]) -> GatewayError:
    """Pydantic/FastAPI request validation errors -> INVALID_ARGUMENT with REST field paths."""
    violations: list[FieldViolation] = []
    fallback = "the request body must be a JSON object; see /docs for the expected shape"
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        kind = str(error.get("type", ""))
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            fallback = f"the request body is not valid JSON ({detail}); send a JSON object"
            continue
        violations.append(FieldViolation(_loc_path(loc), _describe(error)))
    return invalid_argument(violations, fallback)


def from_http_status(status: int, method: str, path: str, allow: str = "") -> GatewayError:
    """Errors raised by routing itself (no such route, method not allowed, ...)."""
    code = _CODE_FOR_HTTP.get(status, grpc.StatusCode.INTERNAL)
    path = path if len(path) <= 200 else f"{path[:200]}..."
    if status == 404:
        message = f"no route {method} {path}; see /docs for the API"
    elif status == 405:
        message = f"{method} is not allowed on {path}; use {allow or 'another method'}"
    else:
        message = f"{method} {path} failed with HTTP {status}"
    headers = {"Allow": allow} if allow else {}
    return GatewayError(code, message, status=status, headers=headers)


def unauthenticated() -> GatewayError:
    return GatewayError(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or invalid API key; send the header 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def internal() -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INTERNAL, "the gateway failed to handle the request; see its log"
    )
