"""The health page: the scheduler's gRPC health, and the gauges the services export on their
Prometheus endpoints (queue lag and pending entries per partition, dead letters, retries
waiting, lock masters reachable, scraper workers seen recently, scheduler replicas and the
partitions each owns, background loops up, ...), read when the page is shown and arranged by
`gateway.ui.gauges`.

Which endpoints are read is configuration (``GATEWAY_UI_SCHEDULER_METRICS_URL``,
``GATEWAY_UI_SCRAPER_METRICS_URL``, read with ``GATEWAY_UI_METRICS_TOKEN`` as the Bearer key
when those endpoints ask for one); every ``campaigns_*`` gauge found there is shown, so the
page grows with the services' metrics without changes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import APIRouter, Request, Response

from gateway.config import GatewaySettings
from gateway.params import SchedulerDep
from gateway.ui import gauges
from gateway.ui.gauges import Gauge, LabelTable
from gateway.ui.routing import render

READ_TIMEOUT_S = 2.0


@dataclass
class Source:
    """One Prometheus endpoint: its gauges (arranged in label tables and the rest), or why
    they could not be read."""

    title: str
    url: str
    gauges: list[Gauge] = field(default_factory=list)
    tables: list[LabelTable] = field(default_factory=list)
    others: list[Gauge] = field(default_factory=list)
    problem: str = ""


async def read_source(client: httpx.AsyncClient, title: str, url: str) -> Source:
    source = Source(title, url)
    try:
        response = await client.get(url)
        response.raise_for_status()
        source.gauges = gauges.parse(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        source.problem = f"not readable: {exc}"
        return source
    source.tables, source.others = gauges.arrange(source.gauges)
    return source


def health_pages(router: APIRouter, settings: GatewaySettings) -> None:
    endpoints = [
        ("Scheduler", settings.ui_scheduler_metrics_url),
        ("Scraper", settings.ui_scraper_metrics_url),
    ]

    token = settings.ui_metrics_token.get_secret_value()
    auth = {"Authorization": f"Bearer {token}"} if token else {}

    @router.get("/health")
    async def health(request: Request, scheduler: SchedulerDep) -> Response:
        serving = await scheduler.serving_status()
        async with httpx.AsyncClient(timeout=READ_TIMEOUT_S, headers=auth) as client:
            sources = [await read_source(client, t, url) for t, url in endpoints if url]
        figures = gauges.headline([source.gauges for source in sources])
        context = {"serving": serving, "sources": sources, "headline": figures}
        return render(request, "health.html", context)
