"""The schedule form pages: create, edit (PUT with the version the page was opened at) and
"Preview" (AIP-163 validate_only: the next fire times of what was typed, nothing saved).

Every answer re-renders the form with what was typed; the API's field violations are shown
next to their fields, a concurrent change of an edited schedule (ABORTED) on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.errors import FieldViolation, GatewayError, from_validation_errors
from gateway.models import AddScheduledCampaignBody, UpdateScheduleBody
from gateway.params import SchedulerDep
from gateway.scheduler_client import SchedulerClient
from gateway.ui import forms
from gateway.ui.routing import path_part, redirect, render

OVERLAPS = ("SKIP", "BUFFER_ONE", "ALLOW_ALL")
CHANGED_MEANWHILE = (
    "This schedule was changed by someone else after you opened this page, so your edits "
    "were not saved (they are kept below). Open the edit page again to start from the "
    "current version."
)


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
    preview: dict[str, Any] | None = None,
) -> Response:
    context = {
        "page": page,
        "form": form,
        "errors": errors or {},
        "overlaps": OVERLAPS,
        "preview": preview,
        "hidden_fields": forms.HIDDEN_FIELDS,
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


async def _preview(scheduler: SchedulerClient, page: FormPage, form: dict[str, str]) -> Any:
    body = AddScheduledCampaignBody.model_validate(_document(page, form))
    request = convert.add_request_to_proto(body)
    request.validate_only = True
    return convert.schedule_to_json(await scheduler.call("AddScheduledCampaign", request))


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
        return render_form(request, FormPage(), {"schedule.timezone": "UTC"})

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
