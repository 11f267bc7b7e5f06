"""gRPC edge: SchedulerService requests -> domain commands and queries -> responses.

Protobuf lives only here and in `codec`; every error leaves through `errors.to_grpc_status`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from campaign_common.observability.telemetry import (
    context_from_metadata,
    mark_error,
    rpc_attributes,
    tracer,
)
from campaign_common.page_tokens import InvalidPageToken
from campaign_common.runs.deadletters import DeadLetterNotFound, DeadLetters
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunRecord
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
from scheduler_svc.request_strings import string_violations
from scheduler_svc.result_pages import results_page
from scheduler_svc.run_watch import RunWatch
from scheduler_svc.triggers import upcoming_fires
from scheduler_svc.validation import FieldViolation

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
Response = TypeVar("Response")
SERVICE = api.DESCRIPTOR.services_by_name["SchedulerService"].full_name
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]]

DEFAULT_PAGE = 50
MAX_PAGE = 500


def _rpc(method: Handler[Response]) -> Handler[Response]:
    """Map domain and infrastructure errors to gRPC statuses, in one place."""

    name = method.__name__
    attributes = rpc_attributes(SERVICE, name)

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        parent = context_from_metadata(context.invocation_metadata())
        # Named as the client names it (`<package>.<Service>/<Method>`), so the pair matches.
        with _tracer.start_as_current_span(
            f"{SERVICE}/{name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,  # an abort is an answer: `_record_error` judged it
        ) as span:
            try:
                reply = await _handle(method, self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # a bug: the caller gets UNKNOWN
                span.record_exception(exc)
                mark_error(span, type(exc).__name__, str(exc))
                raise
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
            return reply

    return wrapper


async def _handle(
    method: Handler[Response], self: Any, request: Any, context: grpc.aio.ServicerContext
) -> Response:
    try:
        violations = string_violations(request)
        if violations:
            raise InvalidArgument(violations)
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
    _record_error(error)
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


# Codes that mean the server failed; the others (NOT_FOUND, INVALID_ARGUMENT, ABORTED ...)
# answer the caller's request as designed, so they leave the server span's status unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _record_error(error: SchedulerError) -> None:
    span = trace.get_current_span()
    span.set_attribute("rpc.grpc.status_code", error.code.value[0])
    if error.code in _SERVER_ERRORS:
        mark_error(span, error.code.name, str(error))


def _page_size(requested: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(requested or default, maximum)


def _watched(record: RunRecord, request: Any) -> bool:
    if request.schedule_id and record.schedule_id != request.schedule_id:
        return False
    return not request.campaign_id or record.campaign_id == request.campaign_id


async def _abort(context: grpc.aio.ServicerContext, error: SchedulerError) -> None:
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _expected_version(value: int) -> int:
    if value < 0:
        raise InvalidArgument([FieldViolation("expected_version", "must not be negative")])
    return value


class SchedulerServicer(api_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        commands: Commands,
        firing: Firing,
        runs: RunLog,
        dead_letters: DeadLetters,
        preview: int,
        watch: RunWatch | None = None,
    ) -> None:
        self._commands = commands
        self._firing = firing
        self._runs = runs
        self._dead = dead_letters
        self._preview = preview
        self._watch = watch

    def _out(self, schedule: Schedule) -> Any:
        fires: list[int] = []
        if schedule.state is ScheduleState.ACTIVE:
            fires = upcoming_fires(schedule, now_ms(), self._preview)
        return codec.redacted(codec.schedule_to_proto(schedule, fires))

    @_rpc
    async def AddScheduledCampaign(self, request: Any, context: Any) -> Any:
        command = codec.new_schedule_from_proto(request)
        if request.validate_only:
            return self._out(self._commands.preview(command))
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
    async def UpdateSchedule(self, request: Any, context: Any) -> Any:
        command = codec.new_schedule_from_proto(request)
        expected = _expected_version(request.expected_version)
        return self._out(await self._commands.update(request.schedule_id, command, expected))

    @_rpc
    async def DeleteSchedule(self, request: Any, context: Any) -> Any:
        expected = _expected_version(request.expected_version)
        await self._commands.delete(request.schedule_id, expected)
        return api.DeleteScheduleResponse()

    @_rpc
    async def PauseSchedule(self, request: Any, context: Any) -> Any:
        expected = _expected_version(request.expected_version)
        return self._out(await self._commands.pause(request.schedule_id, request.note, expected))

    @_rpc
    async def ResumeSchedule(self, request: Any, context: Any) -> Any:
        expected = _expected_version(request.expected_version)
        return self._out(await self._commands.resume(request.schedule_id, expected))

    @_rpc
    async def TriggerCampaign(self, request: Any, context: Any) -> Any:
        schedule = self._commands.get(request.schedule_id)
        return api.TriggerCampaignResponse(run_id=await self._firing.trigger(schedule))

    @_rpc
    async def ListRuns(self, request: Any, context: Any) -> Any:
        # Filters apply before paging: every run of a schedule has the schedule's (immutable)
        # campaign, so with both filters a page by schedule is either all in or all out.
        # A known schedule's campaign names the one partition its runs are in.
        schedule = self._commands.find(request.schedule_id) if request.schedule_id else None
        if request.schedule_id:
            campaign_id = schedule.campaign_id if schedule is not None else ""
        else:
            campaign_id = request.campaign_id
        runs, token = await self._runs.list_runs(
            schedule_id=request.schedule_id,
            campaign_id=campaign_id,
            page_size=_page_size(request.page_size),
            page_token=request.page_token,
        )
        wanted = request.campaign_id
        if request.schedule_id and wanted and any(r.campaign_id != wanted for r in runs):
            runs, token = [], ""
        return api.ListRunsResponse(
            runs=[codec.run_to_proto(r) for r in runs], next_page_token=token
        )

    @_rpc
    async def GetRun(self, request: Any, context: Any) -> Any:
        record = await self._runs.get_run(request.run_id)
        if record is None:
            raise NotFound(f"run {request.run_id!r} not found (runs are kept 14 days)")
        return codec.run_to_proto(record)

    async def WatchRuns(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Stream run changes; errors end the stream with their status (resume from the last
        position seen)."""
        try:
            after = await self._watch_start(request)
            await context.send_initial_metadata(())  # accepted: the caller may stream now
            while True:
                for change in await self._require_watch().changes(after):
                    record = await self._runs.get_run(change.run_id, within=change.partition)
                    if record is not None and _watched(record, request):
                        run = codec.run_to_proto(record)
                        yield api.WatchRunsResponse(run=run, position=change.position)
        except RedisError as exc:
            log.warning("state Redis error in WatchRuns: %s", exc)
            await _abort(context, Unavailable("state store unreachable; resume from the position"))
        except SchedulerError as exc:
            await _abort(context, exc)

    def _require_watch(self) -> RunWatch:
        if self._watch is None:
            raise SchedulerError("run watching is not configured on this scheduler")
        return self._watch

    async def _watch_start(self, request: Any) -> list[str]:
        violations = string_violations(request)
        if violations:
            raise InvalidArgument(violations)
        try:
            return await self._require_watch().start(request.position)
        except InvalidPageToken as exc:
            raise InvalidArgument([FieldViolation("position", str(exc))]) from exc

    @_rpc
    async def ListResults(self, request: Any, context: Any) -> Any:
        size = _page_size(request.page_size, default=20, maximum=1000)
        results, token = await results_page(
            self._runs, request.campaign_id, size, request.page_token
        )
        return api.ListResultsResponse(results=results, next_page_token=token)

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
