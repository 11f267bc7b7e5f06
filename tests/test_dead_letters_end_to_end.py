"""Retries and dead letters through the whole product, as `make run` starts it.

Runs `python -m campaign_common.cli up` as a real process tree on free ports with fast retry
knobs and the scheduler's alert webhook pointing at a receiver in this test, drives it through
REST only, then stops it with SIGINT (Ctrl-C) and checks that no process it started is left.

One manual run against a page that answers 503 is retried once, dead-lettered (listed by
`/v1/deadLetters`, alerted as `run.dead_lettered`), and succeeds as attempt 3 once the page
recovers and an operator retries the dead letter; a run against a 404 page fails at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.scraper_svc.conftest import PageServer
from tests.support import WebhookReceiver, eventually, local_stack

pytestmark = pytest.mark.slow

PAGE = "<html><body><h1>Spring sale</h1></body></html>"
# The delay is long enough for a poller to see RETRY_SCHEDULED on a loaded 2-core machine.
RETRY_DELAY_S = 1.0
RETRY_POLICY = {"maxAttempts": 2, "initialDelaySeconds": RETRY_DELAY_S, "jitter": 0.0}

Json = dict[str, Any]


@pytest.fixture
def target() -> Iterator[PageServer]:
    server = PageServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


async def _schedule(http: httpx.AsyncClient, campaign: str, url: str) -> Json:
    """A schedule that never fires by itself during the test: its runs are triggered by hand."""
    body = {
        "campaignId": campaign,
        "name": campaign,
        "schedule": {"intervalSeconds": 3600},
        "scrape": {"urls": [url], "selectors": {"title": "h1"}},
        "retryPolicy": RETRY_POLICY,
    }
    created = await http.post("/campaign/addScheduledCampaign", json=body)
    assert created.status_code == 201, created.text
    schedule: Json = created.json()
    assert schedule["retryPolicy"] == {
        "maxAttempts": 2,
        "initialDelaySeconds": RETRY_DELAY_S,
        "maxDelaySeconds": 300.0,  # the defaults are filled in
        "multiplier": 2.0,
        "jitter": 0.0,  # an explicit 0 is kept
    }
    return schedule


async def _trigger(http: httpx.AsyncClient, schedule: Json) -> str:
    triggered = await http.post(f"/v1/schedules/{schedule['scheduleId']}:trigger")
    assert triggered.status_code == 202, triggered.text
    run_id: str = triggered.json()["runId"]
    assert triggered.headers["location"] == f"/v1/runs/{run_id}"
    return run_id


async def _run(http: httpx.AsyncClient, run_id: str) -> Json:
    got = await http.get(f"/v1/runs/{run_id}")
    assert got.status_code == 200, got.text
    run: Json = got.json()
    return run


async def _dead_letters(http: httpx.AsyncClient) -> list[Json]:
    listed = await http.get("/v1/deadLetters", params={"pageSize": 50})
    assert listed.status_code == 200, listed.text
    letters: list[Json] = listed.json()["deadLetters"]
    return letters


async def test_dead_letters_end_to_end_503_dead_lettered_alerted_retried_404_fails_at_once(
    target: PageServer, webhook: WebhookReceiver
) -> None:
    down_url = target.page("/down", PAGE, status=503)
    gone_url = target.page("/gone", "not here", status=404)
    fast_retries = {
        "SCHEDULER_ALERT_WEBHOOK_URL": webhook.hook_url,
        "SCRAPER_RETRY_POLL_MS": "50",
        "SCRAPER_BLOCK_MS": "100",
    }
    async with local_stack(**fast_retries) as stack:
        http = stack.http
        down = await _schedule(http, "down-shop", down_url)
        gone = await _schedule(http, "gone-shop", gone_url)
        down_run = await _trigger(http, down)
        gone_run = await _trigger(http, gone)

        async def in_state(run_id: str, state: str) -> Json | None:
            run = await _run(http, run_id)
            return run if run["state"] == state else None

        # The 503 is retryable: attempt 1 failed, attempt 2 is due after the delay.
        waiting = await eventually(
            lambda: in_state(down_run, "RETRY_SCHEDULED"), what="the 503 run RETRY_SCHEDULED"
        )
        assert waiting["attempt"] == 1 and waiting["nextAttemptAt"], waiting
        assert waiting["error"] == f"GET {down_url}: HTTP 503", waiting
        due_ms = _ms(waiting["nextAttemptAt"])
        assert due_ms >= _ms(waiting["startedAt"]) + RETRY_DELAY_S * 1000, waiting

        dead = await eventually(
            lambda: in_state(down_run, "DEAD_LETTERED"), what="the 503 run DEAD_LETTERED"
        )
        assert dead["attempt"] == 2 and dead["error"] == f"GET {down_url}: HTTP 503", dead
        assert dead["nextAttemptAt"] is None and dead["finishedAt"], dead
        assert _ms(dead["startedAt"]) >= due_ms, "attempt 2 ran before it was due"
        assert target.hits["/down"] == 2

        [letter] = await _dead_letters(http)
        assert (letter["runId"], letter["attempt"]) == (down_run, 2), letter
        assert letter["error"] == f"GET {down_url}: HTTP 503", letter
        assert (letter["scheduleId"], letter["campaignId"]) == (down["scheduleId"], "down-shop")

        async def dead_letter_alert() -> Json | None:
            alerts = [a for a in webhook.received if a.get("event") == "run.dead_lettered"]
            return alerts[0] if alerts else None

        alert = await eventually(dead_letter_alert, what="the run.dead_lettered alert")
        assert alert["runId"] == down_run and alert["attempt"] == 2, alert
        assert alert["campaignId"] == "down-shop", alert
        assert alert["error"] == f"GET {down_url}: HTTP 503", alert

        # The 404 cannot be fixed by a retry: FAILED at once, never dead-lettered.
        failed = await eventually(lambda: in_state(gone_run, "FAILED"), what="the 404 run FAILED")
        assert failed["attempt"] == 1 and failed["nextAttemptAt"] is None, failed
        assert failed["error"] == f"GET {gone_url}: HTTP 404", failed

        # The target recovers; an operator retries the dead letter.
        target.page("/down", PAGE)
        retried = await http.post(f"/v1/deadLetters/{letter['id']}:retry")
        assert retried.status_code == 202, retried.text
        assert retried.json() == {"runId": down_run, "attempt": 3}
        done = await eventually(
            lambda: in_state(down_run, "SUCCEEDED"), what="the retried run SUCCEEDED"
        )
        assert done["attempt"] == 3 and done["error"] is None, done
        assert target.hits["/down"] == 3
        assert await _dead_letters(http) == []
        again = await http.post(f"/v1/deadLetters/{letter['id']}:retry")
        assert again.status_code == 404, again.text

        # Meanwhile the 404 run was never retried.
        assert (await _run(http, gone_run))["state"] == "FAILED"
        assert target.hits["/gone"] == 1
    # The scheduler flushed its alerts on the way out: one alert, for the dead letter only.
    assert [a["event"] for a in webhook.received] == ["run.dead_lettered"], webhook.received
