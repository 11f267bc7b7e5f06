"""Request parameters shared by the route modules: the scheduler client and paging."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from gateway.models import INT32_MAX
from gateway.scheduler_client import SchedulerClient


def _scheduler(request: Request) -> SchedulerClient:
    scheduler: SchedulerClient = request.app.state.scheduler
    return scheduler


SchedulerDep = Annotated[SchedulerClient, Depends(_scheduler)]
PageSize = Annotated[
    int,
    Query(alias="pageSize", ge=0, le=INT32_MAX, description="0 = the server's default"),
]
# Shown in OpenAPI (the scheduler refuses the rest, naming the field): no control characters.
PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]*$"
# Page tokens and watch positions are opaque: only a value this API returned is valid, and a
# forged one is 400 naming it. OpenAPI can say their alphabet (base64url), not their validity.
OPAQUE = {"pattern": r"^[A-Za-z0-9_-]*$"}
PageToken = Annotated[
    str,
    Query(
        alias="pageToken",
        max_length=512,
        description="the nextPageToken of the previous page (opaque; any other value is 400)",
        json_schema_extra=OPAQUE,
    ),
]
ScheduleIdFilter = Annotated[
    str,
    Query(alias="scheduleId", max_length=256, json_schema_extra={"pattern": PRINTABLE}),
]
CampaignIdFilter = Annotated[
    str,
    Query(alias="campaignId", max_length=256, json_schema_extra={"pattern": PRINTABLE}),
]


# Ids in paths are bounded: an oversized id is a 400 naming it, never a huge error text.
MAX_ID_CHARS = 128
ResourceId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_CHARS,
        json_schema_extra={"pattern": PRINTABLE.replace("]*$", "]+$")},
    ),
]


class _IdWithoutColon(Convertor[str]):
    """A path segment without ':', so ``/v1/schedules/x:bogus`` is no schedule id: custom
    methods (``:pause``) are matched whole, an unknown one is 404 and ``DELETE`` on a custom
    method's path is 405, never a lookup of the id ``x:trigger``."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# Routes write ``{scheduleId:id}`` for a schedule or dead-letter id (run ids hold ':').
register_url_convertor("id", _IdWithoutColon())
