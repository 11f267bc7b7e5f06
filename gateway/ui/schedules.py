"""Schedule pages: the list (filter, search), a schedule with its runs, the commands as
server-side forms (POST, then a redirect); the create and edit forms are in `schedule_forms`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.params import SchedulerDep
from gateway.ui import forms, overview
from gateway.ui.routing import path_part, redirect, render
from gateway.ui.schedule_forms import schedule_form_pages

STATES = ("ACTIVE", "PAUSED", "COMPLETED")


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


def schedule_pages(router: APIRouter) -> None:
    schedule_form_pages(router)  # before /schedules/{schedule_id}: "new" is no schedule id
    _list_pages(router)
    _command_pages(router)
