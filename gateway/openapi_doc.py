"""The OpenAPI document as client generators need it, on top of what FastAPI derives.

FastAPI derives paths, parameters, bodies and the 2xx answers from the routes and models. This
module drops the ``null`` of optional parameters (absent is how they are left out) and adds
what only the API's conventions know: the error answers each operation can give
(every one with the JSON error body of `gateway.errors`), and the links between operations
(the schedule a create answered is the one to get, update, pause, resume, trigger or delete;
a trigger's run is the one to get), so clients and stateful testers can follow them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_ERRORS = {
    "400": "INVALID_ARGUMENT (and FAILED_PRECONDITION, OUT_OF_RANGE): fieldViolations name "
    "each bad field",
    "401": "UNAUTHENTICATED: a missing or wrong API key (when the gateway has keys)",
    "404": "NOT_FOUND: no such resource",
    "405": "UNIMPLEMENTED: the method is not allowed here (see Allow)",
    "409": "ABORTED: the If-Match version is not the current one (or ALREADY_EXISTS)",
    "413": "the body is larger than the gateway accepts",
    "500": "INTERNAL: a bug; the body says no more",
    "503": "UNAVAILABLE: the scheduler or its state store is unreachable; retry with backoff",
    "504": "DEADLINE_EXCEEDED: the scheduler did not answer in time; retry with backoff",
}
_SCHEDULE = {"scheduleId": "$response.body#/scheduleId"}
_CREATED_LINKS = {
    "getSchedule": _SCHEDULE,
    "updateSchedule": _SCHEDULE,
    "pauseSchedule": _SCHEDULE,
    "resumeSchedule": _SCHEDULE,
    "triggerCampaign": _SCHEDULE,
    "deleteSchedule": _SCHEDULE,
    "listRuns": _SCHEDULE,
    "listResults": {"campaignId": "$response.body#/campaignId"},
}
_LINKS = {
    ("addScheduledCampaign", "201"): _CREATED_LINKS,
    ("getSchedule", "200"): _CREATED_LINKS,
    ("triggerCampaign", "202"): {"getRun": {"runId": "$response.body#/runId"}},
    ("retryDeadLetter", "202"): {"getRun": {"runId": "$response.body#/runId"}},
}
_UNGUARDED = frozenset({"healthz", "readyz"})


def _error_codes(operation: dict[str, Any], method: str, path: str) -> list[str]:
    codes = ["400", "500", "503", "504"]
    if operation["operationId"] not in _UNGUARDED:
        codes.append("401")
    if "{" in path:
        codes.append("404")
    names = {parameter["name"] for parameter in operation.get("parameters", [])}
    if "If-Match" in names or operation["operationId"] == "addScheduledCampaign":
        codes.append("409")
    if method in ("post", "put"):
        codes.append("413")
    return sorted(codes)


def _without_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is absent, never ``null`` (a header cannot even say null)."""
    schema = parameter["schema"]
    branches = schema.pop("anyOf", None)
    if branches is not None:
        schema.update(next(branch for branch in branches if branch != {"type": "null"}))


def _complete(spec: dict[str, Any]) -> dict[str, Any]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                _without_null(parameter)
            responses = operation["responses"]
            for code in _error_codes(operation, method, path):
                responses.setdefault(code, {"description": _ERRORS[code], "content": _ERROR_BODY})
            for (operation_id, status), links in _LINKS.items():
                if operation["operationId"] == operation_id and status in responses:
                    responses[status]["links"] = {
                        target: {"operationId": target, "parameters": parameters}
                        for target, parameters in links.items()
                    }
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first use)."""
    derive = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(derive())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
