"""The dashboard in headless Chromium against the whole product as `make run` starts it.

One local stack (`python -m campaign_common.cli up`: Redis servers, scheduler, scraper and
gateway as real processes, API keys on) and one browser serve the module; each test logs in if
it must and makes its own schedules. Pages scraped by the runs come from a real HTTP server in
this test. Every step waits by polling under a deadline; every page visited is saved as a
screenshot under ``build/screenshots/`` for a reviewer.

Skipped, with the reason, where Chromium, its driver or selenium is missing (`.ci/run`
installs them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.gateway.ui.browser import PHONE, Browser, chromium, missing
from tests.scraper_svc.conftest import PageServer
from tests.support import LocalStack, eventually, local_stack

API_KEY = "browser-test-key-0123456789"
PAGE = "<html><head><title>Shop</title></head><body><h1>Spring sale</h1></body></html>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing()), reason=f"browser tests need Chromium: {missing()}"),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]
Json = dict[str, Any]


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    try:
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    settings = {
        "GATEWAY_API_KEYS": API_KEY,
        "GATEWAY_UI_JAEGER_URL": "http://127.0.0.1:16686",
        "SCRAPER_RETRY_POLL_MS": "50",
        "SCRAPER_BLOCK_MS": "100",
    }
    async with local_stack(**settings) as running:
        running.http.headers["authorization"] = f"Bearer {API_KEY}"
        yield running


@pytest.fixture(scope="module")
def browser(stack: LocalStack) -> Iterator[Browser]:
    with chromium(str(stack.http.base_url).rstrip("/")) as window:
        yield window


def log_in(browser: Browser) -> None:
    browser.open("/ui/schedules")
    if browser.find_all("#key"):
        browser.type("#key", API_KEY)
        browser.click("form button.primary")
    browser.wait(lambda: browser.find_all("h1") and "Schedules" in browser.find("h1").text, "list")


async def create(stack: LocalStack, name: str, url: str, **extra: Any) -> Json:
    """A schedule made through the REST API (hourly: its runs are triggered by hand)."""
    body = {
        "name": name,
        "schedule": {"intervalSeconds": 3600},
        "scrape": {"urls": [url], "selectors": {"title": "h1"}},
        **extra,
    }
    created = await stack.http.post("/campaign/addScheduledCampaign", json=body)
    assert created.status_code == 201, created.text
    schedule: Json = created.json()
    return schedule


async def run_state(http: httpx.AsyncClient, run_id: str) -> str:
    got = await http.get(f"/v1/runs/{run_id}")
    assert got.status_code == 200, got.text
    state: str = got.json()["state"]
    return state


def row_state(browser: Browser, run_id: str) -> str:
    rows = browser.find_all(f'tr[data-run-id="{run_id}"] .state')
    return str(rows[0].text) if rows else ""


async def test_browser_login_with_the_api_key(browser: Browser) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.open("/ui/health")
    browser.wait(lambda: browser.find_all("#key"), "the login form")
    browser.shot("01-login")
    browser.type("#key", "not-the-key")
    browser.click("form button.primary")
    browser.wait(lambda: browser.find_all("#key-error"), "the wrong key refused")
    browser.shot("02-login-refused")
    browser.type("#key", API_KEY + Keys.ENTER)  # the keyboard alone submits the form
    browser.wait(lambda: "Health" in browser.find("h1").text, "back on the page asked for")
    assert browser.find_all("form.logout button"), "a logged-in visitor can log out"


async def test_browser_create_form_shows_a_field_error_next_to_its_field(
    browser: Browser, pages: PageServer
) -> None:
    log_in(browser)
    browser.click('nav a[href="/ui/schedules/new"]')
    browser.wait(lambda: browser.find_all("#name"), "the create form")
    browser.type("#name", "Spring leads")
    browser.type("#campaignId", "spring-leads")
    browser.type('[id="schedule.cron"]', "61 8 * * 1-5")
    browser.type('[id="schedule.timezone"]', "Europe/Berlin")
    browser.type('[id="scrape.urls"]', pages.page("/spring", PAGE))
    browser.type('[id="scrape.selectors"]', "title: h1")
    browser.click("form.card button.primary")
    error = browser.wait(lambda: browser.find_all('[id="error-schedule.cron"]'), "the error")[0]
    assert "cron" in error.text, error.text
    cron = browser.find('[id="schedule.cron"]')
    assert cron.get_attribute("aria-describedby") == "error-schedule.cron"
    assert cron.get_attribute("value") == "61 8 * * 1-5", "what was typed is kept"
    assert browser.driver.execute_script(
        "return arguments[0].parentElement === arguments[1].parentElement", cron, error
    ), "the error is shown in the field's own box"
    browser.shot("03-create-field-error")

    browser.type('[id="schedule.cron"]', "30 8 * * 1-5")
    browser.click("#preview-button")
    browser.wait(lambda: browser.find_all("#preview"), "the preview of the next fire times")
    assert "every weekday at 08:30 Europe/Berlin" in browser.find("#preview").text
    assert len(browser.find_all("#preview li time")) == 5
    browser.shot("03b-create-preview")
    browser.click("form.card button.primary")
    browser.wait(lambda: "Schedule created." in browser.text(), "the new schedule's page")
    assert "every weekday at 08:30 Europe/Berlin" in browser.text()
    browser.shot("04-schedule-created")
    browser.open("/ui/schedules")
    assert "every weekday at 08:30 Europe/Berlin" in browser.text()
    browser.shot("05-schedules")
    browser.shot("05-schedules-phone", PHONE)


def same_box(browser: Browser, field: Any, error: Any) -> bool:
    script = "return arguments[0].parentElement === arguments[1].parentElement"
    return bool(browser.driver.execute_script(script, field, error))


async def test_browser_create_with_jitter_in_the_seconds_dialect(
    browser: Browser, stack: LocalStack, pages: PageServer
) -> None:
    log_in(browser)
    browser.open("/ui/schedules/new")
    browser.wait(lambda: browser.find_all("#name"), "the create form")
    browser.type("#name", "Morning sweep")
    browser.type('[id="schedule.cron"]', "30 0 9 * * *")
    browser.choose('[id="schedule.cronDialect"]', "seconds6")
    browser.type('[id="schedule.timezone"]', "UTC")
    browser.type('[id="schedule.jitterSeconds"]', "99999")
    browser.type('[id="limits.catchUpWindowSeconds"]', "300")
    browser.type('[id="scrape.urls"]', pages.page("/sweep", PAGE))
    browser.type('[id="scrape.selectors"]', "title: h1")
    browser.click("form.card button.primary")
    error = browser.wait(
        lambda: browser.find_all('[id="error-schedule.jitterSeconds"]'), "the jitter error"
    )[0]
    assert "43200" in error.text, error.text
    jitter = browser.find('[id="schedule.jitterSeconds"]')
    assert jitter.get_attribute("aria-describedby") == "error-schedule.jitterSeconds"
    assert jitter.get_attribute("value") == "99999", "what was typed is kept"
    assert same_box(browser, jitter, error), "the error is shown in the field's own box"
    dialect = browser.find('[id="schedule.cronDialect"] option:checked')
    assert dialect.get_attribute("value") == "seconds6", "the chosen dialect is kept"
    browser.shot("03c-create-jitter-error")

    browser.type('[id="schedule.jitterSeconds"]', "600")
    browser.click("#preview-button")
    browser.wait(lambda: browser.find_all("#preview"), "the preview")
    preview = browser.find("#preview").text
    assert "every day at 09:00:30 UTC, each fire up to 10 min late (jitter)" in preview
    windows = browser.find_all("#preview li")
    assert len(windows) == 5 and all(" to " in li.text for li in windows), preview
    assert "09:00:30 UTC to" in windows[0].text and windows[0].text.endswith("09:10:30 UTC")
    browser.shot("03d-create-jitter-preview")
    browser.click("form.card button.primary")
    browser.wait(lambda: "Schedule created." in browser.text(), "the new schedule's page")
    schedule_id = browser.driver.current_url.split("/ui/schedules/")[1].split("?")[0]
    got = (await stack.http.get(f"/v1/schedules/{schedule_id}")).json()
    assert got["schedule"]["cronDialect"] == "seconds6" and got["schedule"]["jitterSeconds"] == 600
    assert got["limits"]["catchUpWindowSeconds"] == 300
    browser.shot("04b-schedule-with-jitter")


async def test_browser_a_run_appears_live_and_succeeds(
    browser: Browser, stack: LocalStack, pages: PageServer
) -> None:
    log_in(browser)
    schedule = await create(stack, "Live shop", pages.page("/live", PAGE))
    browser.open(f"/ui/runs?scheduleId={schedule['scheduleId']}")
    browser.wait(lambda: "No runs yet." in browser.text(), "the empty run list")
    live = browser.find("table.runs .live")
    browser.wait(lambda: "streaming" in live.text, "the run-watch stream to be followed")
    browser.driver.execute_script("window.notReloaded = true")
    triggered = await stack.http.post(f"/v1/schedules/{schedule['scheduleId']}:trigger")
    run_id = triggered.json()["runId"]
    browser.wait(lambda: row_state(browser, run_id), "the run to appear without a reload")
    browser.wait(lambda: row_state(browser, run_id) == "SUCCEEDED", "the run to succeed live")
    assert browser.driver.execute_script("return window.notReloaded") is True
    browser.shot("06-runs-live")

    browser.click(f'tr[data-run-id="{run_id}"] a')
    browser.wait(lambda: "Timeline" in browser.text(), "the run page")
    assert "Spring sale" in browser.text(), "the run's results"
    jaeger = browser.find('a[href^="http://127.0.0.1:16686/search"]')
    assert "run.id" in jaeger.get_attribute("href")
    browser.shot("07-run")


async def test_browser_pause_with_a_note_resume_and_trigger(
    browser: Browser, stack: LocalStack, pages: PageServer
) -> None:
    log_in(browser)
    schedule = await create(stack, "Pausable", pages.page("/pausable", PAGE))
    browser.open(f"/ui/schedules/{schedule['scheduleId']}")
    browser.type("#note", "supplier site down")
    browser.find("#note").submit()
    browser.wait(lambda: "Schedule paused." in browser.text(), "paused")
    assert "PAUSED" in browser.find("h1").text and "supplier site down" in browser.text()
    browser.shot("08-schedule-paused")
    browser.click('form[action$="/resume"] button')
    browser.wait(lambda: "Schedule resumed." in browser.text(), "resumed")
    assert "ACTIVE" in browser.find("h1").text
    got = await stack.http.get(f"/v1/schedules/{schedule['scheduleId']}")
    assert got.json()["state"] == "ACTIVE" and got.json()["version"] == 3

    browser.click('form[action$="/trigger"] button')
    browser.wait(lambda: "Run requested." in browser.text(), "the triggered run's page")
    browser.wait(lambda: "SUCCEEDED" in browser.find("#run-state").text, "the page to follow")
    browser.shot("09-triggered-run")


async def test_browser_edit_a_schedule_with_preview(
    browser: Browser, stack: LocalStack, pages: PageServer
) -> None:
    log_in(browser)
    schedule = await create(stack, "Editable", pages.page("/editable", PAGE))
    browser.open(f"/ui/schedules/{schedule['scheduleId']}")
    browser.click('a[href$="/edit"]')
    browser.wait(lambda: "Edit schedule" in browser.find("h1").text, "the edit form")
    assert browser.find('[id="schedule.intervalSeconds"]').get_attribute("value") == "3600"
    browser.type('[id="schedule.intervalSeconds"]', "")
    browser.type('[id="schedule.cron"]', "0 9 * * *")
    browser.click("#preview-button")
    browser.wait(lambda: browser.find_all("#preview"), "the preview")
    assert "every day at 09:00" in browser.find("#preview").text
    browser.shot("09b-edit-preview")
    browser.click("form.card button.primary")
    browser.wait(lambda: "Schedule saved." in browser.text(), "the saved schedule")
    assert "every day at 09:00" in browser.text()
    got = await stack.http.get(f"/v1/schedules/{schedule['scheduleId']}")
    assert got.json()["version"] == 2 and got.json()["schedule"]["cron"] == "0 9 * * *"


async def dead_lettered_run(stack: LocalStack, name: str, url: str) -> str:
    """A run of a new one-attempt schedule against ``url`` (answering 503), dead-lettered."""
    schedule = await create(stack, name, url, retryPolicy={"maxAttempts": 1})
    triggered = await stack.http.post(f"/v1/schedules/{schedule['scheduleId']}:trigger")
    run_id: str = triggered.json()["runId"]

    async def dead_lettered() -> bool:
        return await run_state(stack.http, run_id) == "DEAD_LETTERED"

    await eventually(dead_lettered, timeout_s=30, what=f"{name}'s run dead-lettered")
    return run_id


async def test_browser_retry_and_purge_dead_letters(
    browser: Browser, stack: LocalStack, pages: PageServer
) -> None:
    log_in(browser)
    flaky = await dead_lettered_run(stack, "Flaky shop", pages.page("/flaky", "down", 503))
    broken = await dead_lettered_run(stack, "Broken shop", pages.page("/broken", "down", 503))
    pages.page("/flaky", PAGE)  # this site recovers
    browser.open("/ui/dead-letters")
    assert flaky in browser.text() and broken in browser.text() and "HTTP 503" in browser.text()
    browser.shot("10-dead-letters")

    browser.click(f'button[aria-label="Retry {flaky}"]')
    browser.wait(lambda: "Dead letter retried" in browser.text(), "the retried run's page")
    browser.wait(lambda: "SUCCEEDED" in browser.find("#run-state").text, "the retry to succeed")
    assert "attempt 2" in browser.find("#run-state").text
    browser.shot("11-dead-letter-retried")

    browser.open("/ui/dead-letters")
    browser.click(f'a[aria-label="Purge {broken}"]')
    browser.wait(lambda: "Purge dead letter" in browser.text(), "the confirmation")
    browser.shot("12-purge-confirmation")
    browser.click("button.danger")
    browser.wait(lambda: "Dead letter purged." in browser.text(), "purged")
    assert "No dead letters." in browser.text()


async def test_browser_health_page(browser: Browser) -> None:
    log_in(browser)
    browser.open("/ui/health")
    browser.wait(lambda: "SERVING" in browser.text(), "the health page")
    text = browser.text()
    assert "Queue lag" in text and "campaigns_runs_pending" in text, "the scheduler's gauges"
    assert "campaigns_scraper_runs_in_flight" in text, "the scraper's gauges"
    assert "Scraper workers seen in the last minute" in text, "from the scheduler's gauge"
    assert "Lock masters reachable\n3 of 3" in text, "the scraper's lock-master probe"
    masters = browser.find_all("table.by-master tbody tr")
    assert [row.text for row in masters] == ["0 1", "1 1", "2 1"]
    browser.shot("13-health")
    browser.shot("13-health-phone", PHONE)
