"""Request parameters shared by the route modules: the scheduler client and paging."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

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
PageToken = Annotated[str, Query(alias="pageToken", description="nextPageToken of a page")]
