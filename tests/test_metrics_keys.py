"""``/metrics`` behind a key (``*_METRICS_KEYS``) on every service that serves metrics, over real
HTTP: refused without the Bearer key or with another one (the API keys included), served with
it, /healthz still open; and the dashboard's health page reads keyed endpoints with its token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.gateway.conftest import running_gateway
from tests.scraper_svc.conftest import StartScraper, start_scraper  # noqa: F401 (fixture)

METRICS_KEY = "metrics-key-0123456789abcdef"
API_KEY = "api-key-0123456789abcdef"


async def _assert_keyed(http: httpx.AsyncClient, family: str) -> None:
    """Refused without the key, with a wrong one and with an API key; served with it."""
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {API_KEY}"},
                    {"authorization": METRICS_KEY}):  # fmt: skip
        refused = await http.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert family not in refused.text
    served = await http.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})
    assert served.status_code == 200 and family in served.text


@pytest.fixture
async def keyed_scheduler(state_url: str) -> AsyncIterator[SchedulerServer]:
    server = SchedulerServer(
        SchedulerSettings(
            state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200,
            metrics_port=0, metrics_keys=[METRICS_KEY], api_keys=[API_KEY],  # type: ignore[list-item]
        )
    )  # fmt: skip
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _metrics_url(server: SchedulerServer) -> str:
    assert server.metrics is not None
    return f"http://127.0.0.1:{server.metrics.port}"


async def test_scheduler_metrics_need_the_metrics_key_and_healthz_stays_open(
    keyed_scheduler: SchedulerServer,
) -> None:
    async with httpx.AsyncClient(base_url=_metrics_url(keyed_scheduler)) as http:
        await _assert_keyed(http, "campaigns_scheduler_schedules")
        assert (await http.get("/healthz")).status_code == 200


async def test_scraper_metrics_need_the_metrics_key_and_healthz_stays_open(
    start_scraper: StartScraper,  # noqa: F811 (the fixture)
) -> None:
    server = await start_scraper(metrics_port=0, metrics_keys=[METRICS_KEY])
    assert server.metrics is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.metrics.port}") as http:
        await _assert_keyed(http, "campaigns_scraper_")
        assert (await http.get("/healthz")).status_code == 200


async def test_gateway_metrics_need_the_metrics_key_apart_from_the_api_keys(
    keyed_scheduler: SchedulerServer,
) -> None:
    target = f"127.0.0.1:{keyed_scheduler.port}"
    async with running_gateway(
        scheduler_target=target, scheduler_token=API_KEY, api_keys=[API_KEY],
        metrics_keys=[METRICS_KEY],
    ) as client:  # fmt: skip
        await _assert_keyed(client, "campaigns_gateway_requests_total")
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    async with running_gateway(scheduler_target=target, scheduler_token=API_KEY) as client:
        assert (await client.get("/metrics")).status_code == 200  # no metrics keys: open


async def test_dashboard_health_reads_keyed_metrics_with_its_token(
    keyed_scheduler: SchedulerServer,
) -> None:
    target = f"127.0.0.1:{keyed_scheduler.port}"
    url = f"{_metrics_url(keyed_scheduler)}/metrics"
    settings = {"scheduler_target": target, "scheduler_token": API_KEY}
    async with running_gateway(**settings, ui_scheduler_metrics_url=url) as client:
        page = (await client.get("/ui/health")).text
        assert "not readable" in page and "401" in page
    async with running_gateway(
        **settings, ui_scheduler_metrics_url=url, ui_metrics_token=METRICS_KEY
    ) as client:
        page = (await client.get("/ui/health")).text
        assert "not readable" not in page and "Dead letters" in page
