"""The dashboard over real HTTP: gateway (uvicorn) -> real gRPC scheduler -> real Redis."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import httpx
import pytest

from gateway.ui.form_fields import BY_PATH
from gateway.ui.routing import CONTENT_SECURITY_POLICY
from gateway.ui.session import COOKIE
from tests.gateway.conftest import API_KEY, running_gateway
from tests.gateway.test_watch_runs import _next_event
from tests.gateway.ui.conftest import log_in
from tests.support import PageServer


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def assert_no_inline_code(html: str) -> None:
    for tag, attrs in tags(html):
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        if tag == "script":
            assert attrs.get("src"), "inline script"
    assert "<style" not in html


def field_error(html: str, field: str) -> str:
    """The text of the error shown next to ``field`` ("" when none)."""
    match = re.search(rf'id="error-{re.escape(field)}">(.*?)</div>', html, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def schedule_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/ui/schedules/") and location.endswith("?done=created")
    return location.removeprefix("/ui/schedules/").removesuffix("?done=created")


FORM = {
    "name": "Spring leads",
    "campaignId": "spring-leads",
    "schedule.cron": "30 8 * * 1-5",
    "schedule.timezone": "Europe/Berlin",
    "scrape.urls": "http://127.0.0.1:1/offer",
    "scrape.selectors": "title: h1",
}


async def test_ui_pages_need_a_login_and_the_form_sets_a_strict_session_cookie(
    ui: httpx.AsyncClient,
) -> None:
    response = await ui.get("/ui/schedules?state=ACTIVE")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fschedules%3Fstate%3DACTIVE"
    form = await ui.get("/ui/login")
    assert form.status_code == 200 and 'name="key"' in form.text and 'type="password"' in form.text

    wrong = await log_in(ui, "not-the-key")
    assert (
        wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers
    )

    right = await log_in(ui)
    assert right.status_code == 303 and right.headers["location"] == "/ui/schedules"
    cookie = right.headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/ui", "max-age="):
        assert attribute in cookie, cookie
    assert API_KEY.lower() not in cookie, "the cookie holds a derived token, not the key"

    token = cookie.split(";")[0].split("=", 1)[1]
    page = await ui.get("/ui/schedules", headers={"cookie": f"{COOKIE}={token}"})
    assert page.status_code == 200 and "<h1>Schedules</h1>" in page.text
    forged = await ui.get("/ui/schedules", headers={"cookie": f"{COOKIE}={token[:-1]}0"})
    assert forged.status_code == 303


async def test_ui_login_never_redirects_off_the_dashboard(ui: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/schedules"):
        response = await ui.post("/ui/login", data={"key": API_KEY, "next": target})
        assert response.headers["location"] == "/ui/", target


async def test_ui_logout_clears_the_cookie(session: httpx.AsyncClient) -> None:
    response = await session.post("/ui/logout")
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")
    assert f'{COOKIE}=""' in response.headers["set-cookie"]


async def test_ui_without_api_keys_is_open_like_the_api(scheduler_target: str) -> None:
    async with running_gateway(scheduler_target=scheduler_target) as open_ui:
        assert (await open_ui.get("/ui/schedules")).status_code == 200
        home = await open_ui.get("/ui", follow_redirects=True)
        assert home.status_code == 200 and str(home.url).endswith("/ui/schedules")
        assert "Log out" not in home.text, "nothing to log out of"
        login = await open_ui.get("/ui/login")
        assert login.status_code == 303 and login.headers["location"] == "/ui/"


async def test_ui_every_page_sends_the_policy_and_has_no_inline_code(
    session: httpx.AsyncClient,
) -> None:
    created = await session.post("/ui/schedules/new", data=FORM)
    schedule_id = schedule_id_of(created)
    run = await session.post(f"/ui/schedules/{schedule_id}/trigger")
    run_page = run.headers["location"].split("?")[0]
    paths = [
        "/ui/login",
        "/ui/schedules",
        "/ui/schedules/new",
        f"/ui/schedules/{schedule_id}",
        f"/ui/schedules/{schedule_id}/delete",
        "/ui/runs",
        run_page,
        "/ui/dead-letters",
        "/ui/health",
        "/ui/schedules/no-such-schedule",
    ]
    for path in paths:
        response = await session.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"].startswith("text/html")
        assert_no_inline_code(response.text)
        assert '<meta name="viewport"' in response.text


async def test_ui_create_form_shows_the_api_field_errors_next_to_the_fields(
    session: httpx.AsyncClient,
) -> None:
    bad = {**FORM, "schedule.cron": "61 8 * * *", "scrape.urls": "ftp://example.com/x"}
    response = await session.post("/ui/schedules/new", data=bad)
    assert response.status_code == 400
    assert "cron" in field_error(response.text, "schedule.cron")
    assert "scrape.urls[0]" in field_error(response.text, "scrape.urls")
    assert 'id="schedule.cron" name="schedule.cron" type="text" value="61 8 * * *"' in (
        response.text
    ), "the form keeps what was typed"
    assert 'aria-describedby="error-schedule.cron"' in response.text

    typed = await session.post(
        "/ui/schedules/new", data={**FORM, "schedule.cron": "", "schedule.intervalSeconds": "x"}
    )
    assert typed.status_code == 400
    assert "integer" in field_error(typed.text, "schedule.intervalSeconds")

    huge = await session.post("/ui/schedules/new", data={**FORM, "scrape.urls": "x" * 70_000})
    assert huge.status_code == 400 and "larger than 64 KiB" in huge.text

    both = await session.post("/ui/schedules/new", data={**FORM, "schedule.intervalSeconds": "5"})
    assert both.status_code == 400
    assert "exactly one" in field_error(both.text, "schedule")


async def test_ui_create_form_previews_the_next_fire_times_without_saving(
    session: httpx.AsyncClient,
) -> None:
    preview = await session.post("/ui/schedules/new", data={**FORM, "action": "preview"})
    assert preview.status_code == 200
    assert "Preview (not created yet)" in preview.text
    assert "every weekday at 08:30 Europe/Berlin" in preview.text
    assert len(re.findall(r"<li><time datetime=", preview.text)) == 5
    assert 'id="schedule.cron" name="schedule.cron" type="text" value="30 8 * * 1-5"' in (
        preview.text
    ), "the form keeps what was typed"
    assert_no_inline_code(preview.text)
    assert "Spring leads" not in (await session.get("/ui/schedules")).text, "nothing saved"

    bad = await session.post(
        "/ui/schedules/new", data={**FORM, "schedule.cron": "61 8 * * *", "action": "preview"}
    )
    assert bad.status_code == 400 and "Preview (" not in bad.text
    assert "cron" in field_error(bad.text, "schedule.cron")


def form_names(html: str) -> dict[str, str | None]:
    """Every form field of a page: name -> type (None for select and textarea)."""
    found = {}
    for tag, attrs in tags(html):
        if tag in ("input", "select", "textarea") and attrs.get("name"):
            found[str(attrs["name"])] = attrs.get("type")
    return found


def hidden_value(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)">', html)
    assert match, f"no hidden {name}"
    return match.group(1)


SECONDS6 = {
    **FORM,
    "schedule.cron": "30 0 9 * * *",
    "schedule.cronDialect": "seconds6",
    "schedule.timezone": "UTC",
    "schedule.jitterSeconds": "600",
    "limits.catchUpWindowSeconds": "120",
}


async def test_ui_schedule_forms_offer_every_field_of_the_request(
    session: httpx.AsyncClient,
) -> None:
    page = await session.get("/ui/schedules/new")
    names = form_names(page.text)
    assert set(BY_PATH) <= set(names), set(BY_PATH) - set(names)
    assert names["requestId"] == "hidden" and names["schedule.jitterSeconds"] == "number"
    first = hidden_value(page.text, "requestId")
    again = hidden_value((await session.get("/ui/schedules/new")).text, "requestId")
    assert len(first) >= 32 and first != again, "a request id per opened form"

    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=SECONDS6))
    edit = await session.get(f"/ui/schedules/{schedule_id}/edit")
    names = form_names(edit.text)
    assert set(BY_PATH) - {"requestId"} <= set(names), set(BY_PATH) - set(names)
    assert "requestId" not in names, "an update is checked by version, not request id"


async def test_ui_create_and_edit_keep_jitter_dialect_and_catch_up_window(
    session: httpx.AsyncClient,
) -> None:
    api_key = {"Authorization": f"Bearer {API_KEY}"}
    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=SECONDS6))
    stored = (await session.get(f"/v1/schedules/{schedule_id}", headers=api_key)).json()
    assert stored["schedule"]["cronDialect"] == "seconds6"
    assert stored["schedule"]["jitterSeconds"] == 600
    assert stored["limits"]["catchUpWindowSeconds"] == 120
    detail = await session.get(f"/ui/schedules/{schedule_id}")
    assert "each fire up to 10 min late (jitter)" in detail.text

    edit = await session.get(f"/ui/schedules/{schedule_id}/edit")
    assert 'name="schedule.jitterSeconds" type="number" value="600"' in edit.text
    assert 'name="limits.catchUpWindowSeconds" type="number" value="120"' in edit.text
    assert '<option value="seconds6" selected>' in edit.text
    form = {**SECONDS6, "version": "1", "name": "Renamed"}
    saved = await session.post(f"/ui/schedules/{schedule_id}/edit", data=form)
    assert saved.status_code == 303, saved.text
    after = (await session.get(f"/v1/schedules/{schedule_id}", headers=api_key)).json()
    assert after["version"] == 2 and after["name"] == "Renamed"
    assert after["schedule"] == stored["schedule"], "an edit keeps jitter and dialect"
    assert after["limits"] == stored["limits"], "and the catch-up window"


async def test_ui_jitter_dialect_and_catch_up_errors_are_shown_next_to_their_fields(
    session: httpx.AsyncClient,
) -> None:
    bad = {
        **SECONDS6,
        "schedule.jitterSeconds": "99999",
        "limits.catchUpWindowSeconds": "-1",
    }
    response = await session.post("/ui/schedules/new", data=bad)
    assert response.status_code == 400
    assert "43200" in field_error(response.text, "schedule.jitterSeconds")
    assert field_error(response.text, "limits.catchUpWindowSeconds")
    assert 'aria-describedby="error-schedule.jitterSeconds"' in response.text
    assert 'name="schedule.jitterSeconds" type="number" value="99999"' in response.text

    five = await session.post("/ui/schedules/new", data={**SECONDS6, "schedule.cron": "0 9 * * *"})
    assert five.status_code == 400, "a 5-field cron in the seconds dialect"
    assert field_error(five.text, "schedule.cron")

    unknown = await session.post(
        "/ui/schedules/new", data={**SECONDS6, "schedule.cronDialect": "quartz"}
    )
    assert unknown.status_code == 400
    assert field_error(unknown.text, "schedule.cronDialect")
    assert '<option value="quartz" selected>quartz (as typed)</option>' in unknown.text
    listed = await session.get("/ui/schedules")
    assert "Spring leads" not in listed.text, "nothing saved"


async def test_ui_preview_shows_the_jitter_window_of_each_fire_in_the_dialect(
    session: httpx.AsyncClient,
) -> None:
    preview = await session.post("/ui/schedules/new", data={**SECONDS6, "action": "preview"})
    assert preview.status_code == 200, preview.text
    assert "each fire up to 10 min late (jitter)" in preview.text
    windows = re.findall(
        r'<li><time datetime="([^"]+)">[^<]*</time> to <time datetime="([^"]+)">', preview.text
    )
    assert len(windows) == 5, preview.text
    for start, end in windows:
        start_at, end_at = datetime.fromisoformat(start), datetime.fromisoformat(end)
        assert start_at.time() == time(9, 0, 30), "the seconds field is the first of six"
        assert end_at - start_at == timedelta(minutes=10), "each fire runs within its jitter"

    plain = {**SECONDS6, "schedule.jitterSeconds": "", "action": "preview"}
    exact = await session.post("/ui/schedules/new", data=plain)
    times = re.findall(r'<li><time datetime="([^"]+)">[^<]*</time></li>', exact.text)
    assert [start for start, _ in windows] == times, "without jitter: the fires' own times"


async def test_ui_the_same_create_form_sent_twice_creates_one_schedule(
    session: httpx.AsyncClient,
) -> None:
    page = await session.get("/ui/schedules/new")
    form = {**FORM, "requestId": hidden_value(page.text, "requestId")}
    first = schedule_id_of(await session.post("/ui/schedules/new", data=form))
    second = schedule_id_of(await session.post("/ui/schedules/new", data=form))
    assert first == second
    listed = await session.get("/v1/schedules", headers={"Authorization": f"Bearer {API_KEY}"})
    assert [s["scheduleId"] for s in listed.json()["schedules"]] == [first]

    changed = await session.post("/ui/schedules/new", data={**form, "name": "Other"})
    assert changed.status_code == 409 and "new request_id" in changed.text
    assert 'value="Other"' in changed.text, "what was typed is kept"


async def test_ui_edit_saves_with_the_version_check(session: httpx.AsyncClient) -> None:
    api_key = {"Authorization": f"Bearer {API_KEY}"}
    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=FORM))
    put = await session.put(
        f"/v1/schedules/{schedule_id}",
        json={
            "name": "Spring leads",
            "schedule": {"cron": "30 8 * * 1-5", "timezone": "Europe/Berlin"},
            "scrape": {"urls": ["http://127.0.0.1:1/offer"], "selectors": {"title": "h1"}},
            "limits": {"maxRunsPerWindow": 4, "windowSeconds": 3600},
            "retryPolicy": {"jitter": 0},
        },
        headers=api_key,
    )
    assert put.status_code == 200, put.text
    detail = await session.get(f"/ui/schedules/{schedule_id}")
    assert f'href="/ui/schedules/{schedule_id}/edit"' in detail.text
    page = await session.get(f"/ui/schedules/{schedule_id}/edit")
    assert page.status_code == 200 and "Version 2" in page.text
    assert '<input type="hidden" name="version" value="2">' in page.text
    assert 'name="schedule.cron" type="text" value="30 8 * * 1-5"' in page.text
    assert_no_inline_code(page.text)
    form = {
        **FORM,
        "version": "2",
        "limits.maxRunsPerWindow": "4",
        "limits.windowSeconds": "3600",
        "retryPolicy.jitter": "0",
        "schedule.cron": "0 9 * * *",
    }

    previewed = await session.post(
        f"/ui/schedules/{schedule_id}/edit", data={**form, "action": "preview"}
    )
    assert previewed.status_code == 200 and "every day at 09:00 Europe/Berlin" in previewed.text
    bad = await session.post(
        f"/ui/schedules/{schedule_id}/edit", data={**form, "schedule.timezone": "Mars/Olympus"}
    )
    assert bad.status_code == 400 and "time zone" in field_error(bad.text, "schedule.timezone")

    saved = await session.post(f"/ui/schedules/{schedule_id}/edit", data=form)
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/ui/schedules/{schedule_id}?done=updated"
    stored = (await session.get(f"/v1/schedules/{schedule_id}", headers=api_key)).json()
    assert stored["version"] == 3 and stored["schedule"]["cron"] == "0 9 * * *"
    assert stored["campaignId"] == "spring-leads", "an edit keeps the campaign"
    assert stored["limits"]["maxRunsPerWindow"] == 4, "limits the form does not show are kept"
    assert stored["retryPolicy"]["jitter"] == 0

    stale = await session.post(
        f"/ui/schedules/{schedule_id}/edit", data={**form, "name": "Autumn leads"}
    )
    assert stale.status_code == 409
    assert "changed by someone else" in stale.text and 'value="Autumn leads"' in stale.text
    after = (await session.get(f"/v1/schedules/{schedule_id}", headers=api_key)).json()
    assert after["version"] == 3 and after["name"] == "Spring leads"


async def test_ui_schedule_lifecycle_through_the_forms(session: httpx.AsyncClient) -> None:
    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=FORM))
    page = await session.get(f"/ui/schedules/{schedule_id}?done=created")
    assert "Schedule created." in page.text
    assert "every weekday at 08:30 Europe/Berlin" in page.text
    assert ">ACTIVE<" in page.text

    listed = await session.get("/ui/schedules", params={"q": "spring"})
    assert "Spring leads" in listed.text and "every weekday at 08:30 Europe/Berlin" in listed.text
    assert "Spring leads" not in (await session.get("/ui/schedules?state=PAUSED")).text
    assert "Spring leads" not in (await session.get("/ui/schedules?q=autumn")).text

    paused = await session.post(
        f"/ui/schedules/{schedule_id}/pause", data={"note": "supplier down"}
    )
    assert paused.headers["location"] == f"/ui/schedules/{schedule_id}?done=paused"
    page = await session.get(f"/ui/schedules/{schedule_id}")
    assert ">PAUSED<" in page.text and "supplier down" in page.text
    resumed = await session.post(f"/ui/schedules/{schedule_id}/resume")
    assert resumed.status_code == 303
    assert ">ACTIVE<" in (await session.get(f"/ui/schedules/{schedule_id}")).text

    triggered = await session.post(f"/ui/schedules/{schedule_id}/trigger")
    assert triggered.status_code == 303 and "/ui/runs/" in triggered.headers["location"]
    feed = (await session.get("/ui/runs.json", params={"scheduleId": schedule_id})).json()
    [run] = feed["runs"]
    assert run["state"] == "REQUESTED" and run["href"].startswith("/ui/runs/")
    assert (await session.get("/ui/runs.json", params={"state": "SUCCEEDED"})).json() == {
        "runs": []
    }
    run_page = await session.get(run["href"])
    assert run_page.status_code == 200 and "requested (manual)" in run_page.text
    state = await session.get(f"{run['href']}/state.json")
    assert state.json() == {"state": "REQUESTED"}

    confirm = await session.get(f"/ui/schedules/{schedule_id}/delete")
    assert confirm.status_code == 200 and "Delete schedule" in confirm.text
    deleted = await session.post(f"/ui/schedules/{schedule_id}/delete")
    assert deleted.headers["location"] == "/ui/schedules?done=deleted"
    gone = await session.get(f"/ui/schedules/{schedule_id}")
    assert gone.status_code == 404 and "NOT_FOUND" in gone.text


async def test_ui_run_events_relay_the_watch_stream_behind_the_login(
    ui: httpx.AsyncClient, session: httpx.AsyncClient
) -> None:
    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=FORM))
    detail = await session.get(f"/ui/schedules/{schedule_id}")
    events = f"/ui/runs/watch?scheduleId={schedule_id}"
    assert f'data-events="{events}"' in detail.text
    params = {"scheduleId": schedule_id}
    async with session.stream("GET", "/ui/runs/watch", params=params) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        triggered = await session.post(f"/ui/schedules/{schedule_id}/trigger")
        event = await asyncio.wait_for(_next_event(stream.aiter_lines()), 5)
    assert event["event"] == "run" and event["id"]
    run = json.loads(event["data"])
    run_path = f"/ui/runs/{quote(run['runId'], safe='')}"
    assert triggered.headers["location"] == f"{run_path}?done=triggered"
    run_page = await session.get(run_path)
    assert 'data-events="/ui/runs/watch?scheduleId=' in run_page.text

    del ui.headers["cookie"]
    anonymous = await ui.get("/ui/runs/watch")
    assert anonymous.status_code == 303 and "/ui/login" in anonymous.headers["location"]


async def test_ui_dead_letter_commands_on_unknown_ids_are_404_pages(
    session: httpx.AsyncClient,
) -> None:
    listed = await session.get("/ui/dead-letters")
    assert listed.status_code == 200 and "No dead letters." in listed.text
    retried = await session.post("/ui/dead-letters/1-0/retry")
    assert retried.status_code == 404 and "NOT_FOUND" in retried.text
    purged = await session.post("/ui/dead-letters/1-0/purge")
    assert purged.status_code == 404


UNLABELLED = (
    "# HELP campaigns_runs_lag Run requests not yet delivered to any scraper\n"
    "# TYPE campaigns_runs_lag gauge\n"
    "campaigns_runs_lag 7.0\n"
    "# HELP campaigns_scraper_workers_seen Scraper workers seen in the last 60 s\n"
    "# TYPE campaigns_scraper_workers_seen gauge\n"
    "campaigns_scraper_workers_seen 2.0\n"
    "# HELP campaigns_scheduler_schedules Schedules by state\n"
    "# TYPE campaigns_scheduler_schedules gauge\n"
    'campaigns_scheduler_schedules{state="active"} 3.0\n'
    "# HELP campaigns_fires_created When the counter was created\n"
    "# TYPE campaigns_fires_created gauge\n"
    "campaigns_fires_created 1.7e9\n"
    "# HELP campaigns_run_outcomes_total Final run outcomes\n"
    "# TYPE campaigns_run_outcomes_total counter\n"
    'campaigns_run_outcomes_total{outcome="succeeded"} 4.0\n'
)
PARTITIONED = (
    "# HELP campaigns_runs_lag Run requests not yet delivered to any scraper\n"
    "# TYPE campaigns_runs_lag gauge\n"
    'campaigns_runs_lag{partition="0"} 3.0\n'
    'campaigns_runs_lag{partition="1"} 4.0\n'
    "# HELP campaigns_runs_pending Delivered, not yet acknowledged\n"
    "# TYPE campaigns_runs_pending gauge\n"
    'campaigns_runs_pending{partition="0"} 1.0\n'
    'campaigns_runs_pending{partition="1"} 0.0\n'
    "# HELP campaigns_scheduler_partition_owned 1 for each partition a replica owns\n"
    "# TYPE campaigns_scheduler_partition_owned gauge\n"
    'campaigns_scheduler_partition_owned{partition="0",replica="sched-a"} 1.0\n'
)
LOCKS = (
    "# HELP campaigns_lock_masters_reachable Lock masters that answered\n"
    "# TYPE campaigns_lock_masters_reachable gauge\n"
    "campaigns_lock_masters_reachable 2.0\n"
    "# HELP campaigns_lock_master_up Per lock master\n"
    "# TYPE campaigns_lock_master_up gauge\n"
    'campaigns_lock_master_up{master="0"} 1.0\n'
    'campaigns_lock_master_up{master="1"} 0.0\n'
    'campaigns_lock_master_up{master="2"} 1.0\n'
)


@pytest.fixture
def metrics_endpoint() -> Iterator[PageServer]:
    pages = {
        "/unlabelled": (200, UNLABELLED),
        "/partitioned": (200, PARTITIONED),
        "/locks": (200, LOCKS),
    }
    with PageServer(pages) as server:
        yield server


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_ui_health_shows_the_scheduler_and_its_gauges(
    scheduler_target: str, metrics_endpoint: PageServer
) -> None:
    async with running_gateway(
        scheduler_target=scheduler_target,
        ui_scheduler_metrics_url=metrics_endpoint.url("/unlabelled"),
        ui_scraper_metrics_url=metrics_endpoint.url("/missing"),
    ) as client:
        page = (await client.get("/ui/health")).text
    assert "SERVING" in page
    assert "Queue lag (run requests not yet delivered)</dt><dd>7<" in page
    assert "Scraper workers seen in the last minute</dt><dd>2<" in page
    assert "campaigns_scheduler_schedules" in page and "By state" in page
    assert '<th scope="row">active</th>' in page
    assert "campaigns_run_outcomes_total" not in page, "counters are not gauges"
    assert "campaigns_fires_created" not in page
    assert "not readable" in page and "404" in page
    assert "not exported by the services yet" not in page


async def test_ui_health_shows_partitions_with_their_owner_and_lock_masters(
    scheduler_target: str, metrics_endpoint: PageServer
) -> None:
    async with running_gateway(
        scheduler_target=scheduler_target,
        ui_scheduler_metrics_url=metrics_endpoint.url("/partitioned"),
        ui_scraper_metrics_url=metrics_endpoint.url("/locks"),
    ) as client:
        response = await client.get("/ui/health")
    page, text = response.text, text_of(response.text)
    assert_no_inline_code(page)
    assert "Queue lag (run requests not yet delivered) 7 " in text, "summed over partitions"
    assert "Pending (delivered, not yet acknowledged) 1 " in text
    assert "Partitions owned by a scheduler replica 1 of 2 " in text
    assert "Lock masters reachable 2 of 3 " in text
    table = re.search(r'<table class="gauges by-partition">.*?</table>', page, re.S)
    assert table, page
    rows = text_of(table.group(0))
    assert "Partition campaigns_runs_lag campaigns_runs_pending Owned by" in rows
    assert " 0 3 1 sched-a " in rows and " 1 4 0 none " in rows
    assert "sched-a 0" in text_of(page.split("Scheduler replicas and the partitions")[1])
    assert '<table class="gauges by-master">' in page


async def test_ui_static_files_are_served_and_nothing_else(session: httpx.AsyncClient) -> None:
    js = await session.get("/ui/static/live.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = await session.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await session.get("/ui/static/..%2Fsession.py")).status_code == 404
    assert (await session.get("/ui/static/nope.js")).status_code == 404


async def test_ui_is_not_in_the_openapi_document(ui: httpx.AsyncClient) -> None:
    paths = (await ui.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


async def test_ui_forms_sent_from_another_site_are_refused(session: httpx.AsyncClient) -> None:
    schedule_id = schedule_id_of(await session.post("/ui/schedules/new", data=FORM))
    pause = f"/ui/schedules/{schedule_id}/pause"
    host = session.base_url.netloc.decode()
    for headers in (
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
    ):
        refused = await session.post(pause, data={"note": "x"}, headers=headers)
        assert refused.status_code == 403 and "another site" in refused.text, headers
    assert ">ACTIVE<" in (await session.get(f"/ui/schedules/{schedule_id}")).text
    same = {"sec-fetch-site": "same-origin", "origin": f"http://{host}"}
    accepted = await session.post(pause, data={"note": "x"}, headers=same)
    assert accepted.status_code == 303
