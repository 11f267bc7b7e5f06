"""Dashboard fixtures: the real gateway (with API keys) in front of the real in-process
scheduler, and a logged-in session's cookie header."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.ui.session import COOKIE
from tests.gateway.conftest import API_KEY, running_gateway


@pytest.fixture
async def ui(scheduler_target: str) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with API keys; the client is not logged in."""
    async with running_gateway(scheduler_target=scheduler_target, api_keys=[API_KEY]) as client:
        yield client


async def log_in(client: httpx.AsyncClient, key: str = API_KEY) -> httpx.Response:
    return await client.post("/ui/login", data={"key": key, "next": "/ui/schedules"})


def session_cookie(response: httpx.Response) -> str:
    """``name=value`` of the session cookie the login set (sent by hand: it is ``Secure``,
    which httpx keeps off plain HTTP)."""
    match = re.search(rf"{COOKIE}=([^;]+)", response.headers["set-cookie"])
    assert match, response.headers
    return f"{COOKIE}={match.group(1)}"


@pytest.fixture
async def session(ui: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard client, logged in."""
    ui.headers["cookie"] = session_cookie(await log_in(ui))
    yield ui
