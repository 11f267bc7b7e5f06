"""The operator dashboard served by the gateway at ``/ui``: server-rendered HTML pages over the
same scheduler client and conversions as the REST API, behind a login with an API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gateway.config import GatewaySettings
from gateway.ui.dead_letters import dead_letter_pages
from gateway.ui.health import health_pages
from gateway.ui.login import login_pages
from gateway.ui.routing import PREFIX, UiRoute
from gateway.ui.run_events import run_event_pages
from gateway.ui.runs import run_pages
from gateway.ui.schedules import schedule_pages
from gateway.ui.session import Sessions
from gateway.ui.static_files import static_routes

__all__ = ["ui_router"]


def ui_router(settings: GatewaySettings) -> APIRouter:
    """Every dashboard route under ``/ui`` (not part of the OpenAPI document)."""
    sessions = Sessions(settings)
    ui = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
    login_pages(ui, sessions)
    static_routes(ui)
    pages = APIRouter(route_class=UiRoute, dependencies=[Depends(sessions.guard())])
    schedule_pages(pages)
    run_event_pages(pages)  # before /runs/{run_id}
    run_pages(pages, settings)
    dead_letter_pages(pages)
    health_pages(pages, settings)
    ui.include_router(pages)
    return ui
