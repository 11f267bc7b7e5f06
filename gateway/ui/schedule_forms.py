"""The schedule form pages: create, edit (PUT with the version the page was opened at) and
"Preview" (AIP-163 validate_only: the next fire times of what was typed, nothing saved).

With jitter, a fire runs a fixed delay after its time that is derived from the schedule's id,
which a schedule being typed does not have yet; so the preview shows each fire as the window
it will run in (from its time, for the jitter, and before the next fire), not as an instant
the saved schedule would not keep.

Every answer re-renders the form with what was typed; the API's field violations are shown
next to their fields, a concurrent change of an edited schedule (ABORTED) on top.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from campaign_common.timeutil import ms_to_rfc3339
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.errors import FieldViolation, GatewayError, from_validation_errors
from gateway.models import AddScheduledCampaignBody, UpdateScheduleBody
from gateway.params import SchedulerDep
from gateway.scheduler_client import SchedulerClient
from gateway.ui import form_fields, forms
from gateway.ui.routing import path_part, redirect, render

CHANGED_MEANWHILE = (
    "This schedule was changed by someone else after you opened this page, so your edits "
    "were not saved (they are kept below). Open the edit page again to start from the "
    "current version."
)


@dataclass(frozen=True)
class Fire:
    """One fire of a preview: at ``at`` (RFC 3339), or with jitter at a fixed point from
    ``at`` up to (not including) ``until``."""

    at: str
    until: str = ""


@dataclass(frozen=True)
class Preview:
    spec: dict[str, Any]  # when the schedule would fire (REST ``schedule`` document)
    fires: list[Fire]


@dataclass(frozen=True)
class FormPage:
    """Which form: a create (no schedule id) or the edit of one schedule."""

    schedule_id: str = ""

    @property
    def editing(self) -> bool:
        return bool(self.schedule_id)

    @property
    def action(self) -> str:
        if self.editing:
            return f"/schedules/{path_part(self.schedule_id)}/edit"
        return "/schedules/new"


def render_form(
    request: Request,
    page: FormPage,
    form: dict[str, str],
    errors: dict[str, list[str]] | None = None,
    *,
    status: int = 200,
    preview: Preview | None = None,
) -> Response:
    context = {
        "page": page,
        "form": form,
        "errors": errors or {},
        "preview": preview,
        "sections": form_fields.SECTIONS,
        "name_field": form_fields.NAME,
        "campaign_field": form_fields.CAMPAIGN_ID,
        # A folded section opens when one of its fields holds a value or an error.
        "filled": {name for name, value in form.items() if value.strip()} | set(errors or {}),
    }
    return render(request, "schedule_form.html", context, status=status)


def _document(page: FormPage, form: dict[str, str]) -> dict[str, Any]:
    return forms.update_document(form) if page.editing else forms.create_document(form)


def _version(form: dict[str, str]) -> int:
    text = form.get("version", "").strip()
    if not text.isdigit() or int(text) < 1:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the form lost the version it was opened at; open the edit page again",
            [FieldViolation("version", "must be the schedule's version, a positive integer")],
        )
    return int(text)


def _times_ms(schedule: schedule_pb2.Schedule) -> list[int]:
    return [t.ToMilliseconds() for t in schedule.next_fire_times]


async def _preview(scheduler: SchedulerClient, page: FormPage, form: dict[str, str]) -> Preview:
    body = AddScheduledCampaignBody.model_validate(_document(page, form))
    request = convert.add_request_to_proto(body)
    request.validate_only = True
    answer = await scheduler.call("AddScheduledCampaign", request)
    jitter_ms = request.schedule.jitter_seconds * 1000
    if not jitter_ms:
        fires = [Fire(ms_to_rfc3339(at)) for at in _times_ms(answer)]
        return Preview(convert.spec_to_json(answer.spec), fires)
    request.schedule.jitter_seconds = 0  # the fires' own times: each window starts there
    nominal = _times_ms(await scheduler.call("AddScheduledCampaign", request))
    following: list[int | None] = [*nominal[1:], None]
    fires = [
        Fire(ms_to_rfc3339(at), ms_to_rfc3339(min(at + jitter_ms, after or at + jitter_ms)))
        for at, after in zip(nominal, following, strict=True)
    ]
    return Preview(convert.spec_to_json(answer.spec), fires)


async def _save(scheduler: SchedulerClient, page: FormPage, form: dict[str, str]) -> str:
    """The saved schedule's id."""
    if page.editing:
        body = UpdateScheduleBody.model_validate(_document(page, form))
        update = convert.update_request_to_proto(page.schedule_id, body, _version(form))
        return str((await scheduler.call("UpdateSchedule", update)).schedule_id)
    created = AddScheduledCampaignBody.model_validate(_document(page, form))
    add = convert.add_request_to_proto(created)
    return str((await scheduler.call("AddScheduledCampaign", add)).schedule_id)


def _failed(
    request: Request, page: FormPage, form: dict[str, str], error: GatewayError
) -> Response:
    errors = forms.errors_of(error)
    if error.code == grpc.StatusCode.ABORTED:
        errors = {"": [CHANGED_MEANWHILE]}
    return render_form(request, page, form, errors, status=error.status)


async def submitted(request: Request, scheduler: SchedulerClient, page: FormPage) -> Response:
    form = await forms.read_form(request)
    try:
        if form.get("action") == "preview":
            preview = await _preview(scheduler, page, form)
            return render_form(request, page, form, preview=preview)
        saved = await _save(scheduler, page, form)
    except ValidationError as exc:
        return _failed(request, page, form, from_validation_errors(exc.errors()))
    except GatewayError as exc:
        return _failed(request, page, form, exc)
    done = "updated" if page.editing else "created"
    return redirect(f"/schedules/{path_part(saved)}", done=done)


def schedule_form_pages(router: APIRouter) -> None:
    """Register before ``/schedules/{schedule_id}``: "new" is no schedule id."""

    @router.get("/schedules/new")
    async def new_schedule(request: Request) -> Response:
        # A request id per opened form: the same form sent twice creates one schedule.
        fresh = {"schedule.timezone": "UTC", "requestId": str(uuid.uuid4())}
        return render_form(request, FormPage(), fresh)

    @router.post("/schedules/new")
    async def create_schedule(request: Request, scheduler: SchedulerDep) -> Response:
        return await submitted(request, scheduler, FormPage())

    @router.get("/schedules/{schedule_id}/edit")
    async def edit_schedule(
        request: Request, schedule_id: str, scheduler: SchedulerDep
    ) -> Response:
        found = await scheduler.call("GetSchedule", api.GetScheduleRequest(schedule_id=schedule_id))
        form = forms.schedule_form(convert.schedule_to_json(found))
        return render_form(request, FormPage(schedule_id), form)

    @router.post("/schedules/{schedule_id}/edit")
    async def save_schedule(
        request: Request, schedule_id: str, scheduler: SchedulerDep
    ) -> Response:
        return await submitted(request, scheduler, FormPage(schedule_id))
