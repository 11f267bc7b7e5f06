"""The health page: the scheduler's gRPC health, and the gauges the services already export
on their Prometheus endpoints (queue lag, pending entries, dead letters, retries waiting,
schedules by state, background loops up, runs in flight, scraper workers seen recently), read
when the page is shown.

Which endpoints are read is configuration (``GATEWAY_UI_SCHEDULER_METRICS_URL``,
``GATEWAY_UI_SCRAPER_METRICS_URL``, read with ``GATEWAY_UI_METRICS_TOKEN`` as the Bearer key
when those endpoints ask for one); every ``campaigns_*`` gauge found there is shown, so the
page grows with the services' metrics without changes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import APIRouter, Request, Response
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewaySettings
from gateway.params import SchedulerDep
from gateway.ui.routing import render

READ_TIMEOUT_S = 2.0
PREFIX = "campaigns_"
SKIPPED_SUFFIXES = ("_created", "_info")
# Shown first, in this order, when the scheduler exports them.
HEADLINE = (
    ("campaigns_runs_lag", "Queue lag (run requests not yet delivered)"),
    ("campaigns_runs_pending", "Pending (delivered, not yet acknowledged)"),
    ("campaigns_dead_letters", "Dead letters"),
    ("campaigns_retry_queue_waiting", "Retries waiting"),
    ("campaigns_scraper_workers_seen", "Scraper workers seen in the last minute"),
    ("campaigns_scheduler_replicas_seen", "Scheduler replicas alive (last 30 s)"),
)


@dataclass(frozen=True)
class Gauge:
    name: str
    labels: str
    value: float
    help: str


@dataclass
class Source:
    """One Prometheus endpoint: its gauges, or why they could not be read."""

    title: str
    url: str
    gauges: list[Gauge] = field(default_factory=list)
    problem: str = ""


def gauges(text: str) -> list[Gauge]:
    """Every ``campaigns_*`` gauge sample of a Prometheus text exposition."""
    found: list[Gauge] = []
    for family in text_string_to_metric_families(text):
        if family.type != "gauge" or not family.name.startswith(PREFIX):
            continue
        if family.name.endswith(SKIPPED_SUFFIXES):  # when a counter was created, build info
            continue
        for sample in family.samples:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found.append(Gauge(sample.name, labels, sample.value, family.documentation))
    return found


async def read_source(client: httpx.AsyncClient, title: str, url: str) -> Source:
    source = Source(title, url)
    try:
        response = await client.get(url)
        response.raise_for_status()
        source.gauges = gauges(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        source.problem = f"not readable: {exc}"
    return source


def headline(sources: list[Source]) -> list[tuple[str, float]]:
    values = {g.name: g.value for s in sources for g in s.gauges if not g.labels}
    return [(label, values[name]) for name, label in HEADLINE if name in values]


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
        context = {"serving": serving, "sources": sources, "headline": headline(sources)}
        return render(request, "health.html", context)
