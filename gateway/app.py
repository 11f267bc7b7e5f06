"""The REST API: FastAPI routes translated into SchedulerService gRPC calls.

``create_app(settings)`` builds the app. Its lifespan opens one gRPC channel to the scheduler
and closes it on shutdown; calls go through `SchedulerClient` (deadline, trace context, error
translation). Each request gets a server span from FastAPI's own OpenTelemetry support
(continuing the caller's ``traceparent``; health probes are not traced). Every error,
including validation, routing and authentication errors, leaves as the JSON error body of
`gateway.errors`. API keys (Bearer) guard every route except health and docs.

``:trigger`` answers ``202 Accepted`` with ``{"runId"}`` and a ``Location`` of the run: the
run is requested, not finished. Create answers ``201`` with the schedule and its ``Location``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException

from campaign_common.grpc_tls import aio_channel
from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.api_docs import install_docs
from gateway.auth import api_key_guard
from gateway.body_limit import BodyLimit
from gateway.config import GatewaySettings
from gateway.dead_letters import dead_letter_routes
from gateway.errors import (
    GatewayError,
    from_http_status,
    from_validation_errors,
    internal,
)
from gateway.etags import IdempotencyKey, IfMatch, expected_version, request_id, set_etag
from gateway.metrics import install_metrics
from gateway.models import AddScheduledCampaignBody, PauseBody, UpdateScheduleBody
from gateway.openapi_doc import install_openapi
from gateway.params import (
    CampaignIdFilter,
    PageSize,
    PageToken,
    ResourceId,
    ScheduleIdFilter,
    SchedulerDep,
)
from gateway.responses import (
    ErrorOut,
    HealthOut,
    ResultList,
    RunList,
    RunOut,
    ScheduleList,
    ScheduleOut,
    TriggerOut,
)
from gateway.run_watch import watch_routes
from gateway.scheduler_client import SchedulerClient
from gateway.ui import ui_router

log = logging.getLogger(__name__)
CHANNEL_CLOSE_GRACE_S = 1.0
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Requests are capped by the body limit long before 4 MiB; answers (pages) may be larger.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "the request is wrong; see code and fields"},
    "5XX": {"model": ErrorOut, "description": "the gateway or the scheduler failed"},
}


LOCATION = {
    "Location": {"description": "path of the created resource", "schema": {"type": "string"}}
}
ETAG = {"ETag": {"description": 'the schedule\'s version, e.g. "1"', "schema": {"type": "string"}}}

SCHEDULE_200: dict[int | str, dict[str, Any]] = {
    200: {"description": "the schedule", "headers": ETAG}
}


def operation_id(route: APIRoute) -> str:
    """Stable operationIds for client generators: the route function's name in camelCase
    (``add_scheduled_campaign`` -> ``addScheduledCampaign``)."""
    return to_camel(route.name)


# --- routes --------------------------------------------------------------------------------------


def _schedule_routes(router: APIRouter) -> None:
    @router.post(
        "/campaign/addScheduledCampaign",
        status_code=201,
        response_model=ScheduleOut,
        summary="Create a scheduled campaign (or preview it: validateOnly)",
        responses={
            201: {"description": "created", "headers": {**LOCATION, **ETAG}},
            200: {"description": "validateOnly: the schedule it would create, not created"},
        },
    )
    async def add_scheduled_campaign(
        body: AddScheduledCampaignBody,
        scheduler: SchedulerDep,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        key = request_id(idempotency_key, body.request_id)
        request = convert.add_request_to_proto(body, key)
        created = await scheduler.call("AddScheduledCampaign", request)
        if body.validate_only:
            response.status_code = 200
            return convert.schedule_to_json(created)
        response.headers["Location"] = f"/v1/schedules/{created.schedule_id}"
        set_etag(response, created.version)
        return convert.schedule_to_json(created)

    @router.get("/v1/schedules/{scheduleId:id}", response_model=ScheduleOut, responses=SCHEDULE_200)
    async def get_schedule(
        scheduleId: ResourceId, scheduler: SchedulerDep, response: Response
    ) -> dict[str, Any]:
        found = await scheduler.call("GetSchedule", api.GetScheduleRequest(schedule_id=scheduleId))
        set_etag(response, found.version)
        return convert.schedule_to_json(found)

    @router.put(
        "/v1/schedules/{scheduleId:id}",
        response_model=ScheduleOut,
        summary="Replace what a schedule does and when (If-Match: its ETag)",
        responses=SCHEDULE_200,
    )
    async def update_schedule(
        scheduleId: ResourceId,
        body: UpdateScheduleBody,
        scheduler: SchedulerDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        request = convert.update_request_to_proto(scheduleId, body, expected_version(if_match))
        updated = await scheduler.call("UpdateSchedule", request)
        set_etag(response, updated.version)
        return convert.schedule_to_json(updated)

    @router.get("/v1/schedules", response_model=ScheduleList)
    async def list_schedules(
        scheduler: SchedulerDep, page_size: PageSize = 0, page_token: PageToken = ""
    ) -> dict[str, Any]:
        request = api.ListSchedulesRequest(page_size=page_size, page_token=page_token)
        page = await scheduler.call("ListSchedules", request)
        return {
            "schedules": [convert.schedule_to_json(s) for s in page.schedules],
            "nextPageToken": page.next_page_token,
        }

    @router.delete("/v1/schedules/{scheduleId:id}", status_code=204, response_class=Response)
    async def delete_schedule(
        scheduleId: ResourceId, scheduler: SchedulerDep, if_match: IfMatch = None
    ) -> Response:
        request = api.DeleteScheduleRequest(
            schedule_id=scheduleId, expected_version=expected_version(if_match)
        )
        await scheduler.call("DeleteSchedule", request)
        return Response(status_code=204)


def _command_routes(router: APIRouter) -> None:
    @router.post(
        "/v1/schedules/{scheduleId:id}:pause", response_model=ScheduleOut, responses=SCHEDULE_200
    )
    async def pause_schedule(
        scheduleId: ResourceId,
        scheduler: SchedulerDep,
        response: Response,
        body: Annotated[PauseBody | None, Body()] = None,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        note = body.note if body is not None and body.note is not None else ""
        request = api.PauseScheduleRequest(
            schedule_id=scheduleId, note=note, expected_version=expected_version(if_match)
        )
        paused = await scheduler.call("PauseSchedule", request)
        set_etag(response, paused.version)
        return convert.schedule_to_json(paused)

    @router.post(
        "/v1/schedules/{scheduleId:id}:resume", response_model=ScheduleOut, responses=SCHEDULE_200
    )
    async def resume_schedule(
        scheduleId: ResourceId,
        scheduler: SchedulerDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        request = api.ResumeScheduleRequest(
            schedule_id=scheduleId, expected_version=expected_version(if_match)
        )
        resumed = await scheduler.call("ResumeSchedule", request)
        set_etag(response, resumed.version)
        return convert.schedule_to_json(resumed)

    @router.post(
        "/v1/schedules/{scheduleId:id}:trigger",
        status_code=202,
        response_model=TriggerOut,
        summary="Run the campaign now (asynchronously; follow the run's Location)",
        responses={202: {"description": "the run is requested", "headers": LOCATION}},
    )
    async def trigger_campaign(
        scheduleId: ResourceId, scheduler: SchedulerDep, response: Response
    ) -> dict[str, Any]:
        request = api.TriggerCampaignRequest(schedule_id=scheduleId)
        triggered = await scheduler.call("TriggerCampaign", request)
        response.headers["Location"] = f"/v1/runs/{triggered.run_id}"
        return {"runId": triggered.run_id}


def _run_routes(router: APIRouter) -> None:
    @router.get("/v1/runs", response_model=RunList, summary="List runs, newest first")
    async def list_runs(
        scheduler: SchedulerDep,
        schedule_id: ScheduleIdFilter = "",
        campaign_id: CampaignIdFilter = "",
        page_size: PageSize = 0,
        page_token: PageToken = "",
    ) -> dict[str, Any]:
        request = api.ListRunsRequest(
            schedule_id=schedule_id,
            campaign_id=campaign_id,
            page_size=page_size,
            page_token=page_token,
        )
        page = await scheduler.call("ListRuns", request)
        return {
            "runs": [convert.run_to_json(r) for r in page.runs],
            "nextPageToken": page.next_page_token,
        }

    @router.get("/v1/runs/{runId}", response_model=RunOut)
    async def get_run(runId: ResourceId, scheduler: SchedulerDep) -> dict[str, Any]:
        run = await scheduler.call("GetRun", api.GetRunRequest(run_id=runId))
        return convert.run_to_json(run)

    @router.get(
        "/v1/campaigns/{campaignId}/results",
        response_model=ResultList,
        summary="Latest scrape results of a campaign, newest first",
    )
    async def list_results(
        campaignId: ResourceId,
        scheduler: SchedulerDep,
        page_size: PageSize = 0,
        page_token: PageToken = "",
    ) -> dict[str, Any]:
        request = api.ListResultsRequest(
            campaign_id=campaignId, page_size=page_size, page_token=page_token
        )
        page = await scheduler.call("ListResults", request)
        return {
            "results": [convert.result_to_json(r) for r in page.results],
            "nextPageToken": page.next_page_token,
        }


def _health_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=HealthOut, tags=["health"])
    async def healthz() -> dict[str, str]:
        """The gateway process is alive."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=HealthOut,
        tags=["health"],
        responses={503: {"model": ErrorOut, "description": "the scheduler is not serving"}},
    )
    async def readyz(scheduler: SchedulerDep) -> dict[str, str]:
        """Ready when the scheduler's gRPC health service answers SERVING."""
        status = await scheduler.serving_status()
        if status != "SERVING":
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE, f"the scheduler is not serving: {status}"
            )
        return {"status": "ready"}


# --- errors --------------------------------------------------------------------------------------


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return _error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error_response(from_validation_errors(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        allow = (exc.headers or {}).get("Allow", "")
        error = from_http_status(exc.status_code, request.method, request.url.path, allow)
        return _error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this response is sent; uvicorn logs the traceback once.
        return _error_response(internal())

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


# --- the app -------------------------------------------------------------------------------------


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app; the scheduler channel opens and closes with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tls = settings.scheduler_client_tls()
        channel = aio_channel(settings.scheduler_target, tls, CHANNEL_OPTIONS)
        token = settings.scheduler_token.get_secret_value()
        app.state.scheduler = SchedulerClient(channel, settings.grpc_timeout_s, token)
        if not settings.api_keys:
            log.warning("no GATEWAY_API_KEYS configured: the API is open to every caller")
        try:
            yield
        finally:
            await channel.close(grace=CHANNEL_CLOSE_GRACE_S)

    app = FastAPI(
        title="Campaign platform gateway",
        version="1",
        description="REST front of the campaign scheduler (gRPC campaigns.v1.SchedulerService).",
        lifespan=lifespan,
        docs_url=None,  # served from the package by `gateway.api_docs` (no CDN)
        redoc_url=None,
        responses=ERROR_RESPONSES,
        generate_unique_id_function=operation_id,
        # Spans use the provider of `campaign_common.observability.telemetry`; exporters are
        # configured there.
        telemetry=TelemetryConfig(operation_spans=False, auto_configure=False, exclude=_untraced),
    )
    guard = [Depends(api_key_guard(settings.api_keys))] if settings.api_keys else []
    router = APIRouter(dependencies=guard)
    _schedule_routes(router)
    _command_routes(router)
    _run_routes(router)
    dead_letter_routes(router)
    watch_routes(router)
    app.include_router(router, tags=["campaigns"])
    app.include_router(ui_router(settings))  # the operator dashboard at /ui
    _health_routes(app)
    install_docs(app)
    install_openapi(app)
    install_metrics(app, settings.metrics_keys)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
