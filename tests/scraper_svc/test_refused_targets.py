"""A scrape the SSRF guard refuses, seen by API clients through the gateway: the run's error
says which host was refused and why, never the internal address it resolved to; the worker's
log has that address."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.gateway.conftest import running_gateway
from tests.scraper_svc.conftest import PageServer, StartScraper
from tests.support import eventually

PAGE = "<html><body><h1>internal</h1></body></html>"
RESOLVED = ("127.0.0.1", "::1")  # what localhost resolves to


async def test_refused_target_error_names_the_host_not_its_resolved_address(
    scheduler_target: str,
    start_scraper: StartScraper,
    pages: PageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start_scraper(allow_private_targets=False)
    port = pages.page("/inner", PAGE).rsplit(":", 1)[1].split("/")[0]
    url = f"http://localhost:{port}/inner"
    body = {
        "name": "Internal",
        "schedule": {"intervalSeconds": 3600},
        "scrape": {"urls": [url], "selectors": {"t": "h1"}},
    }
    with caplog.at_level(logging.WARNING, logger="scraper_svc.fetcher"):
        async with running_gateway(scheduler_target=scheduler_target) as client:
            created = (await client.post("/campaign/addScheduledCampaign", json=body)).json()
            sid = created["scheduleId"]
            run_id = (await client.post(f"/v1/schedules/{sid}:trigger")).json()["runId"]

            async def failed() -> httpx.Response | None:
                got = await client.get(f"/v1/runs/{run_id}")
                return got if got.json().get("state") == "FAILED" else None

            run = (await eventually(failed, what="the refused run failed")).json()
            listed = (await client.get("/v1/runs", params={"scheduleId": sid})).text
    assert run["error"].startswith(f"GET {url}: refused: localhost resolves to a loopback")
    for shown in (json.dumps(run), listed):
        assert not any(address in shown for address in RESOLVED), shown
    assert pages.hits == {}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "SSRF guard refused localhost" in logged
    assert any(f"resolves to {address}" in logged for address in RESOLVED)
