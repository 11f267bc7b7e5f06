"""gRPC edge: SchedulerService requests -> domain commands and queries -> responses.

Protobuf lives only here and in `codec`; every error leaves through `errors.to_grpc_status`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from redis.exceptions import RedisError

from campaign_common.deadletters import DeadLetterNotFound, DeadLetters
from campaign_common.page_tokens import InvalidPageToken
from campaign_common.runlog import RunLog
from campaign_common.telemetry import context_from_metadata, tracer
from campaign_common.timeutil import now_ms
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc import codec
from scheduler_svc.commands import Commands
from scheduler_svc.errors import (
    InvalidArgument,
    NotFound,
    SchedulerError,
    Unavailable,
    to_grpc_status,
)
from scheduler_svc.firing import Firing
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.triggers import upcoming_fires
from scheduler_svc.validation import FieldViolation

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
Response = TypeVar("Response")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]]

DEFAULT_PAGE = 50
MAX_PAGE = 500


def _rpc(method: Handler[Response]) -> Handler[Response]:
    """Map domain and infrastructure errors to gRPC statuses, in one place."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        parent = context_from_metadata(context.invocation_metadata())
        with _tracer.start_as_current_span(
            f"SchedulerService/{method.__name__}", context=parent, kind=SpanKind.SERVER
        ):
            return await _handle(method, self, request, context)

    return wrapper


async def _handle(
    method: Handler[Response], self: Any, request: Any, context: grpc.aio.ServicerContext
) -> Response:
    try:
        return await method(self, request, context)
    except SchedulerError as exc:
        error: SchedulerError = exc
    except InvalidPageToken as exc:
        error = InvalidArgument([FieldViolation("page_token", str(exc))])
    except DeadLetterNotFound as exc:
        error = NotFound(f"{exc}; list dead letters to see the ids")
    except RedisError as exc:
        log.warning("state Redis error in %s: %s", method.__name__, exc)
        error = Unavailable("state store unreachable; retry with backoff")
    trace.get_current_span().set_status(StatusCode.ERROR, str(error))
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


def _page_size(requested: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(requested or default, maximum)


class SchedulerServicer(api_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        commands: Commands,
        firing: Firing,
        runs: RunLog,
        dead_letters: DeadLetters,
        preview: int,
    ) -> None:
        self._commands = commands
        self._firing = firing
        self._runs = runs
        self._dead = dead_letters
        self._preview = preview

    def _out(self, schedule: Schedule) -> Any:
        fires: list[int] = []
        if schedule.state is ScheduleState.ACTIVE:
            fires = upcoming_fires(schedule, now_ms(), self._preview)
        return codec.schedule_to_proto(schedule, fires)

    @_rpc
    async def AddScheduledCampaign(self, request: Any, context: Any) -> Any:
        command = codec.new_schedule_from_proto(request)
        return self._out(await self._commands.create(command))

    @_rpc
    async def GetSchedule(self, request: Any, context: Any) -> Any:
        return self._out(self._commands.get(request.schedule_id))

    @_rpc
    async def ListSchedules(self, request: Any, context: Any) -> Any:
        page, token = self._commands.page(_page_size(request.page_size), request.page_token)
        return api.ListSchedulesResponse(
            schedules=[self._out(s) for s in page], next_page_token=token
        )

    @_rpc
    async def DeleteSchedule(self, request: Any, context: Any) -> Any:
        await self._commands.delete(request.schedule_id)
        return api.DeleteScheduleResponse()

    @_rpc
    async def PauseSchedule(self, request: Any, context: Any) -> Any:
        return self._out(await self._commands.pause(request.schedule_id, request.note))

    @_rpc
    async def ResumeSchedule(self, request: Any, context: Any) -> Any:
        return self._out(await self._commands.resume(request.schedule_id))

    @_rpc
    async def TriggerCampaign(self, request: Any, context: Any) -> Any:
        schedule = self._commands.get(request.schedule_id)
        return api.TriggerCampaignResponse(run_id=await self._firing.trigger(schedule))

    @_rpc
    async def ListRuns(self, request: Any, context: Any) -> Any:
        runs, token = await self._runs.list_runs(
            schedule_id=request.schedule_id,
            campaign_id=request.campaign_id,
            page_size=_page_size(request.page_size),
            page_token=request.page_token,
        )
        return api.ListRunsResponse(
            runs=[codec.run_to_proto(r) for r in runs], next_page_token=token
        )

    @_rpc
    async def GetRun(self, request: Any, context: Any) -> Any:
        record = await self._runs.get_run(request.run_id)
        if record is None:
            raise NotFound(f"run {request.run_id!r} not found (runs are kept 14 days)")
        return codec.run_to_proto(record)

    @_rpc
    async def ListResults(self, request: Any, context: Any) -> Any:
        limit = _page_size(request.page_size, default=20, maximum=1000)
        results = await self._runs.list_results(request.campaign_id, limit)
        return api.ListResultsResponse(results=results)

    @_rpc
    async def ListDeadLetters(self, request: Any, context: Any) -> Any:
        page, token = await self._dead.page(_page_size(request.page_size), request.page_token)
        return api.ListDeadLettersResponse(
            dead_letters=[codec.dead_letter_to_proto(r) for r in page], next_page_token=token
        )

    @_rpc
    async def RetryDeadLetter(self, request: Any, context: Any) -> Any:
        retried = await self._dead.retry(request.id)
        return api.RetryDeadLetterResponse(run_id=retried.run_id, attempt=retried.attempt)

    @_rpc
    async def PurgeDeadLetter(self, request: Any, context: Any) -> Any:
        await self._dead.purge(request.id)
        return api.PurgeDeadLetterResponse()
