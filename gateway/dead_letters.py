"""REST routes of the dead letters: list, retry (as a new attempt), purge."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.params import PageSize, PageToken, ResourceId, SchedulerDep
from gateway.responses import DeadLetterList, RetryOut


def dead_letter_routes(router: APIRouter) -> None:
    @router.get(
        "/v1/deadLetters", response_model=DeadLetterList, summary="Dead letters, newest first"
    )
    async def list_dead_letters(
        scheduler: SchedulerDep, page_size: PageSize = 0, page_token: PageToken = ""
    ) -> dict[str, Any]:
        request = api.ListDeadLettersRequest(page_size=page_size, page_token=page_token)
        page = await scheduler.call("ListDeadLetters", request)
        return {
            "deadLetters": [convert.dead_letter_to_json(d) for d in page.dead_letters],
            "nextPageToken": page.next_page_token,
        }

    @router.post(
        "/v1/deadLetters/{deadLetterId:id}:retry",
        status_code=202,
        response_model=RetryOut,
        summary="Run a dead-lettered run again as its next attempt",
    )
    async def retry_dead_letter(
        deadLetterId: ResourceId, scheduler: SchedulerDep, response: Response
    ) -> dict[str, Any]:
        request = api.RetryDeadLetterRequest(id=deadLetterId)
        retried = await scheduler.call("RetryDeadLetter", request)
        response.headers["Location"] = f"/v1/runs/{retried.run_id}"
        return {"runId": retried.run_id, "attempt": retried.attempt}

    @router.delete("/v1/deadLetters/{deadLetterId:id}", status_code=204, response_class=Response)
    async def purge_dead_letter(deadLetterId: ResourceId, scheduler: SchedulerDep) -> Response:
        await scheduler.call("PurgeDeadLetter", api.PurgeDeadLetterRequest(id=deadLetterId))
        return Response(status_code=204)
