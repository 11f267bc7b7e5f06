"""Schedule pages: the list (filter, search), a schedule with its runs, the commands as
server-side forms (POST, then a redirect), and the create form with the API's field errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.errors import GatewayError, from_validation_errors
from gateway.models import AddScheduledCampaignBody
from gateway.params import SchedulerDep
from gateway.ui import forms, overview
from gateway.ui.routing import path_part, redirect, render

STATES = ("ACTIVE", "PAUSED", "COMPLETED")
OVERLAPS = ("SKIP", "BUFFER_ONE", "ALLOW_ALL")


def _list_pages(router: APIRouter) -> None:
    @router.get("/")
    async def home() -> Response:
        return redirect("/schedules")

    @router.get("/schedules")
    async def schedule_list(
        request: Request,
        scheduler: SchedulerDep,
        state: Annotated[str, Query()] = "",
        q: Annotated[str, Query()] = "",
    ) -> Response:
        found = [
            s for s in await overview.all_schedules(scheduler) if overview.matches(s, state, q)
        ]
        shown = found[: overview.SHOWN_SCHEDULES]
        outcomes = await overview.outcomes(scheduler, shown)
        context = {
            "schedules": shown,
            "total": len(found),
            "outcomes": outcomes,
            "state": state,
            "q": q,
            "states": STATES,
        }
        return render(request, "schedules.html", context)

    @router.get("/schedules/{schedule_id}")
    async def schedule_detail(
        request: Request, schedule_id: str, scheduler: SchedulerDep
    ) -> Response:
        found = await scheduler.call("GetSchedule", api.GetScheduleRequest(schedule_id=schedule_id))
        schedule = convert.schedule_to_json(found)
        runs = await overview.runs(scheduler, schedule_id, size=overview.RECENT_RUNS)
        context = {"schedule": schedule, "runs": runs, "outcome": overview.outcome_of(runs)}
        return render(request, "schedule.html", context)


def _command_pages(router: APIRouter) -> None:
    @router.post("/schedules/{schedule_id}/pause")
    async def pause(request: Request, schedule_id: str, scheduler: SchedulerDep) -> Response:
        note = (await forms.read_form(request)).get("note", "").strip()
        await scheduler.call(
            "PauseSchedule", api.PauseScheduleRequest(schedule_id=schedule_id, note=note)
        )
        return redirect(f"/schedules/{path_part(schedule_id)}", done="paused")

    @router.post("/schedules/{schedule_id}/resume")
    async def resume(schedule_id: str, scheduler: SchedulerDep) -> Response:
        await scheduler.call("ResumeSchedule", api.ResumeScheduleRequest(schedule_id=schedule_id))
        return redirect(f"/schedules/{path_part(schedule_id)}", done="resumed")

    @router.post("/schedules/{schedule_id}/trigger")
    async def trigger(schedule_id: str, scheduler: SchedulerDep) -> Response:
        request = api.TriggerCampaignRequest(schedule_id=schedule_id)
        triggered = await scheduler.call("TriggerCampaign", request)
        return redirect(f"/runs/{path_part(triggered.run_id)}", done="triggered")

    @router.get("/schedules/{schedule_id}/delete")
    async def confirm_delete(
        request: Request, schedule_id: str, scheduler: SchedulerDep
    ) -> Response:
        found = await scheduler.call("GetSchedule", api.GetScheduleRequest(schedule_id=schedule_id))
        schedule = convert.schedule_to_json(found)
        context = {
            "title": f"Delete schedule {schedule['name']}?",
            "question": "The schedule stops firing and is removed. Its past runs stay listed.",
            "action": f"/schedules/{path_part(schedule_id)}/delete",
            "button": "Delete schedule",
            "back": f"/schedules/{path_part(schedule_id)}",
        }
        return render(request, "confirm.html", context)

    @router.post("/schedules/{schedule_id}/delete")
    async def delete(schedule_id: str, scheduler: SchedulerDep) -> Response:
        await scheduler.call("DeleteSchedule", api.DeleteScheduleRequest(schedule_id=schedule_id))
        return redirect("/schedules", done="deleted")


def _create_form(
    request: Request, form: dict[str, str], errors: dict[str, list[str]], status: int = 200
) -> Response:
    context = {"form": form, "errors": errors, "overlaps": OVERLAPS}
    return render(request, "create.html", context, status=status)


def _create_pages(router: APIRouter) -> None:
    @router.get("/schedules/new")
    async def new_schedule(request: Request) -> Response:
        return _create_form(request, {"schedule.timezone": "UTC"}, {})

    @router.post("/schedules/new")
    async def create_schedule(request: Request, scheduler: SchedulerDep) -> Response:
        form = await forms.read_form(request)
        try:
            body = AddScheduledCampaignBody.model_validate(forms.create_document(form))
            created = await scheduler.call(
                "AddScheduledCampaign", convert.add_request_to_proto(body)
            )
        except ValidationError as exc:
            error = from_validation_errors(exc.errors())
            return _create_form(request, form, forms.errors_of(error), error.status)
        except GatewayError as exc:
            return _create_form(request, form, forms.errors_of(exc), exc.status)
        return redirect(f"/schedules/{path_part(created.schedule_id)}", done="created")


def schedule_pages(router: APIRouter) -> None:
    _create_pages(router)  # before /schedules/{schedule_id}: "new" is no schedule id
    _list_pages(router)
    _command_pages(router)
