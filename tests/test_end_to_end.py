"""The whole product as `make run` starts it: REST -> schedule -> fire -> scrape -> results.

Runs `python -m campaign_common.cli up` (what `make run` runs) as a real process tree on free
ports, drives it through real HTTP only, then stops it with SIGINT (Ctrl-C) and checks that
no process it started is left.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ROOT, LocalStack, PageServer, eventually, local_stack

pytestmark = pytest.mark.slow

PAGE = "<html><body><h1>Spring sale</h1><span class='price'>9.99</span></body></html>"


@pytest.fixture
def pages() -> Iterator[PageServer]:
    with PageServer({"/offer": (200, PAGE)}) as server:
        yield server


async def test_end_to_end_scheduled_campaign_succeeds_and_stack_stops_clean(
    pages: PageServer,
) -> None:
    async with local_stack(GATEWAY_API_KEYS="") as stack:  # `make run` as is: it makes a key
        http, env = stack.http, stack.env
        await _the_made_key_opens_every_door_and_nothing_opens_without_it(stack)
        body = {
            "campaignId": "spring-leads",
            "name": "Spring leads",
            "schedule": {"intervalSeconds": 1, "timezone": "Europe/Berlin"},
            "scrape": {
                "urls": [pages.url("/offer")],
                "selectors": {"title": "h1", "price": ".price", "missing": ".nothing"},
            },
        }
        created = await http.post("/campaign/addScheduledCampaign", json=body)
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert schedule["version"] == 1 and schedule["state"] == "ACTIVE"
        assert len(schedule["nextFireTimes"]) == 5

        async def succeeded() -> dict[str, object] | None:
            runs = await http.get("/v1/runs", params={"scheduleId": schedule["scheduleId"]})
            done = [r for r in runs.json()["runs"] if r["state"] == "SUCCEEDED"]
            return done[0] if done else None

        run = await eventually(succeeded, timeout_s=30, what="a SUCCEEDED run")
        assert run["campaignId"] == "spring-leads" and run["attempt"] == 1
        assert str(run["runId"]).startswith(schedule["scheduleId"] + ":")
        results = await http.get("/v1/campaigns/spring-leads/results", params={"pageSize": 5})
        latest = results.json()["results"][0]
        assert latest["url"] == pages.url("/offer") and latest["statusCode"] == 200
        assert latest["fields"] == {"title": "Spring sale", "price": "9.99", "missing": None}
        assert "campaigns_gateway_requests_total" in (await http.get("/metrics")).text
        scheduler_metrics = f"http://127.0.0.1:{env['SCHEDULER_METRICS_PORT']}/metrics"
        assert "campaigns_scheduler_fires_total" in (await http.get(scheduler_metrics)).text
        scraper_metrics = f"http://127.0.0.1:{env['SCRAPER_METRICS_PORT']}/metrics"
        scraped = (await http.get(scraper_metrics)).text
        assert 'campaigns_scraper_runs_total{outcome="succeeded"}' in scraped


async def _cli(stack: LocalStack, token: str) -> tuple[int, str]:
    target = f"127.0.0.1:{stack.env['SCHEDULER_PORT']}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "campaign_common.cli", "schedules", "list", "--target", target,
        cwd=ROOT, env={**os.environ, "CAMPAIGNS_TOKEN": token},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, err.decode()


async def _the_made_key_opens_every_door_and_nothing_opens_without_it(stack: LocalStack) -> None:
    """The banner shows the key and a curl with it; REST, the dashboard login and the
    scheduler's gRPC API (the CLI) take it, and refuse callers without it."""
    key, banner = stack.api_key, stack.logs()
    assert len(key) >= 32, "a random key, long enough"
    assert f"export KEY='{key}' CAMPAIGNS_TOKEN='{key}'" in banner
    assert (
        '-H "authorization: Bearer $KEY"' in banner and "/campaign/addScheduledCampaign" in banner
    )
    async with httpx.AsyncClient(base_url=stack.http.base_url, timeout=5.0) as anonymous:
        refused = await anonymous.get("/v1/schedules")
        assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
        assert (await anonymous.post("/ui/login", data={"key": "wrong"})).status_code == 401
        login = await anonymous.post("/ui/login", data={"key": key, "next": "/ui/schedules"})
        assert login.status_code == 303 and "set-cookie" in login.headers
    assert (await stack.http.get("/v1/schedules")).status_code == 200  # gateway -> scheduler
    code, err = await _cli(stack, key)
    assert code == 0, err
    code, err = await _cli(stack, "not-the-key")
    assert code == 7 and "UNAUTHENTICATED" in err, err
