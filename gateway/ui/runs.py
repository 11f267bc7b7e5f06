"""Run pages: the live list (the page refreshes it from ``/ui/runs.json`` when the run-watch
stream of `run_events` reports a change), a run with its timeline, results and trace link, and
the run's state as JSON for the page to notice a change."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.config import GatewaySettings
from gateway.params import SchedulerDep
from gateway.ui import overview
from gateway.ui.routing import PREFIX, path_part, render

RUN_STATES = (
    "REQUESTED",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "RETRY_SCHEDULED",
    "DEAD_LETTERED",
)
LIST_SIZE = 50
RESULTS_READ = 100
TRACED_SERVICE = "scraper"  # the service whose span carries the run.id attribute

Json = dict[str, Any]
ScheduleFilter = Annotated[str, Query(alias="scheduleId")]
CampaignFilter = Annotated[str, Query(alias="campaignId")]
StateFilter = Annotated[str, Query()]


async def _filtered(
    scheduler: SchedulerDep, schedule_id: str, campaign_id: str, state: str
) -> list[Json]:
    """The newest LIST_SIZE runs, narrowed to ``state`` here (ListRuns has no state filter)."""
    found = await overview.runs(scheduler, schedule_id, campaign_id, size=LIST_SIZE)
    shown = [run for run in found if not state or run["state"] == state]
    for run in shown:
        run["href"] = f"{PREFIX}/runs/{path_part(run['runId'])}"
    return shown


def timeline(run: Json) -> list[tuple[str, str | None]]:
    """(what happened, when) from the run record, oldest first; unset steps are left out."""
    steps: list[tuple[str, str | None]] = [
        (f"requested ({run['trigger'].lower()})", run["scheduledFor"]),
        (f"attempt {run['attempt']} started", run["startedAt"]),
    ]
    if run["nextAttemptAt"]:
        steps.append((f"attempt {run['attempt']} failed; next attempt due", run["nextAttemptAt"]))
    if run["finishedAt"]:
        steps.append((f"finished: {run['state']}", run["finishedAt"]))
    return [(what, at) for what, at in steps if at]


def trace_link(jaeger_url: str, run_id: str) -> str:
    """Jaeger's search for the run's trace (spans carry ``run.id``); "" when not configured."""
    if not jaeger_url:
        return ""
    query = urlencode({"service": TRACED_SERVICE, "tags": json.dumps({"run.id": run_id})})
    return f"{jaeger_url.rstrip('/')}/search?{query}"


def run_pages(router: APIRouter, settings: GatewaySettings) -> None:
    @router.get("/runs")
    async def run_list(
        request: Request,
        scheduler: SchedulerDep,
        schedule_id: ScheduleFilter = "",
        campaign_id: CampaignFilter = "",
        state: StateFilter = "",
    ) -> Response:
        runs = await _filtered(scheduler, schedule_id, campaign_id, state)
        context = {
            "runs": runs,
            "filters": {"scheduleId": schedule_id, "campaignId": campaign_id, "state": state},
            "states": RUN_STATES,
            "feed": f"{PREFIX}/runs.json?{request.url.query}",
        }
        return render(request, "runs.html", context)

    @router.get("/runs.json")
    async def run_feed(
        scheduler: SchedulerDep,
        schedule_id: ScheduleFilter = "",
        campaign_id: CampaignFilter = "",
        state: StateFilter = "",
    ) -> Response:
        return JSONResponse({"runs": await _filtered(scheduler, schedule_id, campaign_id, state)})

    @router.get("/runs/{run_id}/state.json")
    async def run_state(run_id: str, scheduler: SchedulerDep) -> Response:
        run = await scheduler.call("GetRun", api.GetRunRequest(run_id=run_id))
        return JSONResponse({"state": convert.run_to_json(run)["state"]})

    @router.get("/runs/{run_id}")
    async def run_detail(request: Request, run_id: str, scheduler: SchedulerDep) -> Response:
        run = convert.run_to_json(await scheduler.call("GetRun", api.GetRunRequest(run_id=run_id)))
        listed = await scheduler.call(
            "ListResults",
            api.ListResultsRequest(campaign_id=run["campaignId"], page_size=RESULTS_READ),
        )
        results = [convert.result_to_json(r) for r in listed.results if r.run_id == run_id]
        context = {
            "run": run,
            "results": results,
            "timeline": timeline(run),
            "trace": trace_link(settings.ui_jaeger_url, run_id),
            "final": run["state"] in overview.FINAL_STATES,
            "state_url": f"{PREFIX}/runs/{quote(run_id, safe='')}/state.json",
        }
        return render(request, "run.html", context)
