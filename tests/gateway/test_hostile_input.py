"""Hand-made and hostile input through real HTTP to the real in-process scheduler: always a 4xx
with the JSON error body naming the field, never a 5xx, a hang, a reset or a stored bad value.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.gateway.test_http_validation import VALID, _with

ADD = "/campaign/addScheduledCampaign"
SURROGATE = "a\ud800b"


def _fields(response: httpx.Response) -> list[str]:
    return [v["field"] for v in response.json()["fieldViolations"]]


async def _post_raw(client: httpx.AsyncClient, body: Any, path: str = ADD) -> httpx.Response:
    """JSON with lone surrogates kept as \\ud800 escapes (legal JSON, invalid Unicode)."""
    raw = json.dumps(body).encode()
    return await client.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": SURROGATE}, "name"),
        ({"campaignId": SURROGATE}, "campaignId"),
        ({"schedule": {"cron": SURROGATE}}, "schedule.cron"),
        ({"schedule": {"intervalSeconds": 60, "timezone": SURROGATE}}, "schedule.timezone"),
        ({"scrape": {"urls": [f"http://x.test/{SURROGATE}"]}}, "scrape.urls[0]"),
        (
            {"scrape": {"urls": ["http://x.test/"], "selectors": {"t": SURROGATE}}},
            "scrape.selectors.t",
        ),
        (
            {"scrape": {"urls": ["http://x.test/"], "selectors": {SURROGATE: "h1"}}},
            "scrape.selectors",
        ),
    ],
)
async def test_lone_surrogate_in_any_string_is_400_naming_it(
    gateway: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    response = await _post_raw(gateway, _with(**changes))
    assert response.status_code == 400, response.text
    assert any(f.startswith(field) for f in _fields(response)), response.text


async def test_lone_surrogate_in_a_pause_note_is_400(gateway: httpx.AsyncClient) -> None:
    response = await _post_raw(gateway, {"note": SURROGATE}, "/v1/schedules/abc:pause")
    assert response.status_code == 400 and _fields(response) == ["note"]


@pytest.mark.parametrize(
    "zone", ["Europe", "America", "Etc", "A" * 300, "../../etc/passwd", "utc "]
)
async def test_time_zone_not_in_the_iana_list_is_400(gateway: httpx.AsyncClient, zone: str) -> None:
    body = _with(schedule={"cron": "0 9 * * *", "timezone": zone})
    response = await gateway.post(ADD, json=body)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["schedule.timezone"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[zz::1]/",
        "http://[::1]x/",
        "http://exa\x01mple.test/",
        "http://example.test/a b",
        "http://example.test/\x7f",
        "http://example.test/\x85",
        "http://example.test:99999/",
        "http://example.test:0/",
        "http://example.test:port/",
        "http://user:secret@example.test/",
        "http://exa_mple..test/",
        "http://-bad-.test/",
        "http:///path-only",
        "mailto:someone@example.test",
        "http://" + "a" * 64 + ".test/",
        "http://example.test/" + "p" * 2100,
    ],
)
async def test_malformed_urls_are_refused_naming_the_url(
    gateway: httpx.AsyncClient, url: str
) -> None:
    response = await gateway.post(ADD, json=_with(scrape={"urls": ["http://ok.test/", url]}))
    assert response.status_code == 400, response.text
    assert _fields(response) == ["scrape.urls[1]"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8080/x",
        "https://bücher.example/",
        "http://127.0.0.1/",
        "http://a-b.test/?q=%20",
    ],
)
async def test_well_formed_urls_are_accepted(gateway: httpx.AsyncClient, url: str) -> None:
    response = await gateway.post(ADD, json=_with(scrape={"urls": [url]}))
    assert response.status_code == 201, response.text
    assert response.json()["scrape"]["urls"] == [url]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "line\x00break"}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"schedule": {"cron": "0 9 * * *\x0b"}}, "schedule.cron"),
        (
            {"scrape": {"urls": ["http://x.test/"], "selectors": {"t": "h1\x1b"}}},
            "scrape.selectors.t",
        ),
    ],
)
async def test_control_characters_in_strings_are_400_naming_the_field(
    gateway: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    response = await gateway.post(ADD, json=_with(**changes))
    assert response.status_code == 400, response.text
    assert field in _fields(response)


async def test_ten_megabyte_body_is_413_json_before_parsing(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(ADD, json=_with(name="x" * 10_000_000))
    assert response.status_code == 413
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert "larger than" in response.json()["message"]


async def test_chunked_body_over_the_limit_is_413(gateway: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    response = await gateway.post(
        ADD, content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/schedules/{id}", "scheduleId"),
        ("DELETE", "/v1/schedules/{id}", "scheduleId"),
        ("POST", "/v1/schedules/{id}:pause", "scheduleId"),
        ("POST", "/v1/schedules/{id}:resume", "scheduleId"),
        ("POST", "/v1/schedules/{id}:trigger", "scheduleId"),
        ("GET", "/v1/runs/{id}", "runId"),
        ("GET", "/v1/campaigns/{id}/results", "campaignId"),
        ("POST", "/v1/deadLetters/{id}:retry", "deadLetterId"),
        ("DELETE", "/v1/deadLetters/{id}", "deadLetterId"),
    ],
)
async def test_huge_ids_are_400_naming_the_id_on_every_route(
    gateway: httpx.AsyncClient, method: str, path: str, field: str
) -> None:
    response = await gateway.request(method, path.format(id="x" * 16_000))
    assert response.status_code == 400, response.text[:300]
    assert _fields(response) == [field]


@pytest.mark.parametrize("param", ["scheduleId", "campaignId", "pageToken"])
async def test_huge_or_control_query_strings_are_400_naming_them(
    gateway: httpx.AsyncClient, param: str
) -> None:
    for value in ("x" * 16_000, "a\x00b"):
        response = await gateway.get("/v1/runs", params={param: value})
        assert response.status_code == 400, response.text[:300]
        assert _fields(response) == [param]


@pytest.mark.parametrize("verb", ["bogus", "Pause", "pause2", ""])
async def test_unknown_custom_method_is_404(gateway: httpx.AsyncClient, verb: str) -> None:
    response = await gateway.post(f"/v1/schedules/abc:{verb}")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize("verb", ["trigger", "pause", "resume"])
async def test_other_methods_on_a_custom_method_path_are_405_not_an_id(
    gateway: httpx.AsyncClient, verb: str
) -> None:
    for method in ("DELETE", "GET"):
        response = await gateway.request(method, f"/v1/schedules/abc:{verb}")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "POST"


async def test_integral_float_is_accepted_for_integer_fields(gateway: httpx.AsyncClient) -> None:
    body = _with(schedule={"intervalSeconds": 3600.0}, limits={"maxPages": 10.0})
    body["retryPolicy"] = {"maxAttempts": 4.0}
    response = await gateway.post(ADD, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["schedule"]["intervalSeconds"] == 3600
    assert created["limits"]["maxPages"] == 10 and created["retryPolicy"]["maxAttempts"] == 4


@pytest.mark.parametrize("value", [3600.5, 1e300, "3600", True])
async def test_non_integral_values_stay_refused(gateway: httpx.AsyncClient, value: Any) -> None:
    response = await gateway.post(ADD, json=_with(schedule={"intervalSeconds": value}))
    assert response.status_code == 400 and _fields(response) == ["schedule.intervalSeconds"]


async def test_valid_request_after_hostile_ones_still_works(gateway: httpx.AsyncClient) -> None:
    await _post_raw(gateway, _with(name=SURROGATE))
    await gateway.post(ADD, json=_with(name="x" * 2_000_000))
    response = await gateway.post(ADD, json=VALID)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path", ["/v1/schedules", "/v1/runs", "/v1/deadLetters", "/v1/campaigns/c/results"]
)
@pytest.mark.parametrize("token", ["!!!", "Zm9v", "////", "x" * 600, "a\x01"])
async def test_every_list_rejects_a_forged_page_token_the_same_way(
    gateway: httpx.AsyncClient, path: str, token: str
) -> None:
    response = await gateway.get(path, params={"pageToken": token})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT" and _fields(response) == ["pageToken"]
