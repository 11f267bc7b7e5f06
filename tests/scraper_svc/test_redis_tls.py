"""A scraper whose every Redis connection is ``rediss://`` with an ACL user: the state Redis and
the three lock masters behind TLS terminators that demand a client certificate (mutual TLS),
each user holding only the rules docs/operations.md lists."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.redlock.scripts import fence_key
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from scraper_svc.errors import StartupError
from scraper_svc.store import campaign_lock_resource
from tests.acl_users import LOCK_RULES, STATE_RULES, acl_user
from tests.conftest import StartTls
from tests.scraper_svc.conftest import PageServer, StartScraper, finished_run, run_request
from tests.support import PARTITIONS
from tests.tls_proxy import Pki

PASSWORD = "scraper-pw-123"


@pytest.fixture
def scraper_users(redis_stack: EmbeddedStack, state_url: str) -> Iterator[None]:
    """User ``scraper`` on the state server (state rules) and on every lock master."""
    with contextlib.ExitStack() as users:
        users.enter_context(acl_user(redis_stack.state.port, "scraper", PASSWORD, STATE_RULES))
        for server in redis_stack.locks:
            users.enter_context(acl_user(server.port, "scraper", PASSWORD, LOCK_RULES))
        yield


def _tls_settings(
    redis_stack: EmbeddedStack, pki: Pki, tls_in_front: StartTls, lock_password: str = PASSWORD
) -> dict[str, object]:
    context = pki.server_context(require_client_cert=True)
    state = tls_in_front(redis_stack.state.port, context)
    locks = [tls_in_front(server.port, context) for server in redis_stack.locks]
    return {
        "state_redis_url": state.url("scraper", PASSWORD),
        "lock_redis_urls": [lock.url("scraper", lock_password) for lock in locks],
        "redis_tls_ca_file": str(pki.ca_file),
        "redis_tls_cert_file": str(pki.client_cert_file),
        "redis_tls_key_file": str(pki.client_key_file),
    }


async def test_tls_acl_scraper_runs_a_campaign_over_rediss_everywhere(
    redis_stack: EmbeddedStack,
    state_redis: Redis,
    pki: Pki,
    tls_in_front: StartTls,
    scraper_users: None,
    pages: PageServer,
    start_scraper: StartScraper,
) -> None:
    await start_scraper(**_tls_settings(redis_stack, pki, tls_in_front))
    url = pages.page("/offer", "<html><h1>Secure sale</h1></html>")
    request = run_request("r-tls", "secure-shop", [url], {"title": "h1"})
    await RunLog(state_redis, PARTITIONS).request_run(request, dedupe=False)

    run = await finished_run(state_redis, "r-tls")
    assert run.state is RunState.SUCCEEDED, run.error
    # The campaign lock went through the TLS terminators to every master (fence counters).
    key = fence_key(campaign_lock_resource("secure-shop"))
    for server in redis_stack.locks:
        plain = redis.Redis(port=server.port)
        assert plain.get(key) is not None, f"no fence counter on lock master {server.port}"
        plain.close()


async def test_tls_acl_wrong_lock_password_stops_start_up_with_the_setting_named(
    redis_stack: EmbeddedStack,
    pki: Pki,
    tls_in_front: StartTls,
    scraper_users: None,
    start_scraper: StartScraper,
) -> None:
    settings = _tls_settings(redis_stack, pki, tls_in_front, lock_password="not-the-password")
    with pytest.raises(StartupError) as caught:
        await start_scraper(**settings)
    message = str(caught.value)
    assert "refused the credentials" in message and "SCRAPER_LOCK_REDIS_URLS" in message
    assert "not-the-password" not in message and PASSWORD not in message
