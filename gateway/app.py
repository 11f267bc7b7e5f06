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
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.auth import api_key_guard
from gateway.config import GatewaySettings
from gateway.dead_letters import dead_letter_routes
from gateway.errors import (
    GatewayError,
    from_http_status,
    from_validation_errors,
    internal,
)
from gateway.metrics import install_metrics
from gateway.models import (
    AddScheduledCampaignBody,
    ErrorOut,
    HealthOut,
    PauseBody,
    ResultList,
    RunList,
    RunOut,
    ScheduleList,
    ScheduleOut,
    TriggerOut,
)
from gateway.params import PageSize, PageToken, SchedulerDep
from gateway.scheduler_client import SchedulerClient

log = logging.getLogger(__name__)
CHANNEL_CLOSE_GRACE_S = 1.0
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "the request is wrong; see code and fields"},
    "5XX": {"model": ErrorOut, "description": "the gateway or the scheduler failed"},
}


# --- routes --------------------------------------------------------------------------------------


def _schedule_routes(router: APIRouter) -> None:
    @router.post(
        "/campaign/addScheduledCampaign",
        status_code=201,
        response_model=ScheduleOut,
        summary="Create a scheduled campaign",
    )
    async def add_scheduled_campaign(
        body: AddScheduledCampaignBody, scheduler: SchedulerDep, response: Response
    ) -> dict[str, Any]:
        created = await scheduler.call("AddScheduledCampaign", convert.add_request_to_proto(body))
        response.headers["Location"] = f"/v1/schedules/{created.schedule_id}"
        return convert.schedule_to_json(created)

    @router.get("/v1/schedules/{scheduleId}", response_model=ScheduleOut)
    async def get_schedule(scheduleId: str, scheduler: SchedulerDep) -> dict[str, Any]:
        found = await scheduler.call("GetSchedule", api.GetScheduleRequest(schedule_id=scheduleId))
        return convert.schedule_to_json(found)

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

    @router.delete("/v1/schedules/{scheduleId}", status_code=204, response_class=Response)
    async def delete_schedule(scheduleId: str, scheduler: SchedulerDep) -> Response:
        await scheduler.call("DeleteSchedule", api.DeleteScheduleRequest(schedule_id=scheduleId))
        return Response(status_code=204)


def _command_routes(router: APIRouter) -> None:
    @router.post("/v1/schedules/{scheduleId}:pause", response_model=ScheduleOut)
    async def pause_schedule(
        scheduleId: str,
        scheduler: SchedulerDep,
        body: Annotated[PauseBody | None, Body()] = None,
    ) -> dict[str, Any]:
        note = body.note if body is not None and body.note is not None else ""
        request = api.PauseScheduleRequest(schedule_id=scheduleId, note=note)
        return convert.schedule_to_json(await scheduler.call("PauseSchedule", request))

    @router.post("/v1/schedules/{scheduleId}:resume", response_model=ScheduleOut)
    async def resume_schedule(scheduleId: str, scheduler: SchedulerDep) -> dict[str, Any]:
        request = api.ResumeScheduleRequest(schedule_id=scheduleId)
        return convert.schedule_to_json(await scheduler.call("ResumeSchedule", request))

    @router.post(
        "/v1/schedules/{scheduleId}:trigger",
        status_code=202,
        response_model=TriggerOut,
        summary="Run the campaign now (asynchronously; follow the run's Location)",
    )
    async def trigger_campaign(
        scheduleId: str, scheduler: SchedulerDep, response: Response
    ) -> dict[str, Any]:
        request = api.TriggerCampaignRequest(schedule_id=scheduleId)
        triggered = await scheduler.call("TriggerCampaign", request)
        response.headers["Location"] = f"/v1/runs/{triggered.run_id}"
        return {"runId": triggered.run_id}


def _run_routes(router: APIRouter) -> None:
    @router.get("/v1/runs", response_model=RunList, summary="List runs, newest first")
    async def list_runs(
        scheduler: SchedulerDep,
        schedule_id: Annotated[str, Query(alias="scheduleId")] = "",
        campaign_id: Annotated[str, Query(alias="campaignId")] = "",
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
    async def get_run(runId: str, scheduler: SchedulerDep) -> dict[str, Any]:
        run = await scheduler.call("GetRun", api.GetRunRequest(run_id=runId))
        return convert.run_to_json(run)

    @router.get(
        "/v1/campaigns/{campaignId}/results",
        response_model=ResultList,
        summary="Latest scrape results of a campaign, newest first",
    )
    async def list_results(
        campaignId: str, scheduler: SchedulerDep, page_size: PageSize = 0
    ) -> dict[str, Any]:
        request = api.ListResultsRequest(campaign_id=campaignId, page_size=page_size)
        page = await scheduler.call("ListResults", request)
        return {"results": [convert.result_to_json(r) for r in page.results]}


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
        channel = grpc.aio.insecure_channel(settings.scheduler_target)
        app.state.scheduler = SchedulerClient(channel, settings.grpc_timeout_s)
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
        responses=ERROR_RESPONSES,
        # Spans use the provider of `campaign_common.telemetry`; exporters are configured there.
        telemetry=TelemetryConfig(operation_spans=False, auto_configure=False, exclude=_untraced),
    )
    guard = [Depends(api_key_guard(settings.api_keys))] if settings.api_keys else []
    router = APIRouter(dependencies=guard)
    _schedule_routes(router)
    _command_routes(router)
    _run_routes(router)
    dead_letter_routes(router)
    app.include_router(router, tags=["campaigns"])
    _health_routes(app)
    install_metrics(app)
    _install_error_handlers(app)
    return app
