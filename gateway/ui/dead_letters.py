"""Dead-letter pages: the list, retry (a new attempt; then the run's page), purge (confirmed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.params import SchedulerDep
from gateway.ui.routing import path_part, redirect, render

LIST_SIZE = 100


def dead_letter_pages(router: APIRouter) -> None:
    @router.get("/dead-letters")
    async def dead_letter_list(
        request: Request, scheduler: SchedulerDep, page: Annotated[str, Query()] = ""
    ) -> Response:
        request_page = api.ListDeadLettersRequest(page_size=LIST_SIZE, page_token=page)
        listed = await scheduler.call("ListDeadLetters", request_page)
        letters = [convert.dead_letter_to_json(d) for d in listed.dead_letters]
        context = {"letters": letters, "next_page": listed.next_page_token}
        return render(request, "dead_letters.html", context)

    @router.post("/dead-letters/{letter_id}/retry")
    async def retry(letter_id: str, scheduler: SchedulerDep) -> Response:
        retried = await scheduler.call("RetryDeadLetter", api.RetryDeadLetterRequest(id=letter_id))
        return redirect(f"/runs/{path_part(retried.run_id)}", done="retried")

    @router.get("/dead-letters/{letter_id}/purge")
    async def confirm_purge(request: Request, letter_id: str) -> Response:
        context = {
            "title": f"Purge dead letter {letter_id}?",
            "question": "The run is dropped for good; it cannot be retried afterwards.",
            "action": f"/dead-letters/{path_part(letter_id)}/purge",
            "button": "Purge dead letter",
            "back": "/dead-letters",
        }
        return render(request, "confirm.html", context)

    @router.post("/dead-letters/{letter_id}/purge")
    async def purge(letter_id: str, scheduler: SchedulerDep) -> Response:
        await scheduler.call("PurgeDeadLetter", api.PurgeDeadLetterRequest(id=letter_id))
        return redirect("/dead-letters", done="purged")
