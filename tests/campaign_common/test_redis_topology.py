"""State Redis topologies: the settings' checks, TLS and ACL users against real servers (TLS
through `tests.tls_proxy.TlsTerminator`, the shipped Valkey has no TLS), Sentinel for real."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.redis_topology import (
    RedisTopology,
    connect_state,
    redact_url,
    unreachable_message,
)
from campaign_common.tls import TlsFiles
from scheduler_svc.config import SchedulerSettings
from scraper_svc.config import ScraperSettings
from tests.acl_users import STATE_RULES, acl_user
from tests.conftest import StartTls
from tests.local_topologies import LocalSentinel
from tests.tls_proxy import Pki

SECRET = "s3cret-pw"


def _settings_error(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        SchedulerSettings(**values)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"state_redis_mode": "cluster", "state_redis_url": "redis://h:1/2"}, "STATE_REDIS_URL"),
        ({"state_redis_mode": "sentinel"}, "SCHEDULER_STATE_REDIS_SENTINELS"),
        (
            {"state_redis_mode": "sentinel", "state_redis_sentinels": "h:26379"},
            "SCHEDULER_STATE_REDIS_SENTINEL_MASTER",
        ),
        ({"state_redis_sentinels": "h:26379"}, "SCHEDULER_STATE_REDIS_MODE is standalone"),
        ({"state_redis_sentinels": "h:port", "state_redis_mode": "sentinel"}, "host:port"),
        ({"state_redis_url": f"http://u:{SECRET}@h:1/0"}, "SCHEDULER_STATE_REDIS_URL"),
        ({"state_redis_mode": "cluster", "state_redis_url": "unix:///tmp/r.sock"}, "redis://"),
        ({"redis_tls_ca_file": "/nonexistent/ca.pem"}, "SCHEDULER_REDIS_TLS_CA_FILE"),
        ({"state_redis_mode": "replicated"}, "state_redis_mode"),
    ],
)
def test_settings_invalid_redis_combination_names_the_setting(
    values: dict[str, object], names: str
) -> None:
    message = _settings_error(**values)
    assert names in message
    assert SECRET not in message


def test_settings_tls_files_without_a_rediss_url_are_refused(pki: Pki) -> None:
    message = _settings_error(redis_tls_ca_file=str(pki.ca_file))
    assert "no Redis URL of this service uses rediss://" in message
    key_only = _settings_error(
        state_redis_url="rediss://h:1/0", redis_tls_key_file=str(pki.client_key_file)
    )
    assert "SCHEDULER_REDIS_TLS_KEY_FILE is set without" in key_only


def test_settings_lock_master_urls_are_checked_without_their_password(pki: Pki) -> None:
    with pytest.raises(ValidationError) as caught:
        ScraperSettings(lock_redis_urls=[f"tcp://lock:{SECRET}@h:1/0"])
    assert "SCRAPER_LOCK_REDIS_URLS" in str(caught.value) and SECRET not in str(caught.value)
    # TLS files are used by a rediss:// lock master even when the state Redis is plain.
    settings = ScraperSettings(
        lock_redis_urls=["rediss://lock:pw@h:1/0"], redis_tls_ca_file=str(pki.ca_file)
    )
    assert settings.tls_files().ca_file == str(pki.ca_file)


def test_settings_sentinels_accept_json_or_commas() -> None:
    for value in ('["a:1", "b:2"]', "a:1, b:2"):
        settings = SchedulerSettings(
            state_redis_mode="sentinel",
            state_redis_sentinels=value,
            state_redis_sentinel_master="m",
        )
        assert settings.state_topology().sentinels == (("a", 1), ("b", 2))


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(f"rediss://svc:{SECRET}@h:6380/0") == "rediss://svc:***@h:6380/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.fixture
def state_user(redis_stack: EmbeddedStack, state_url: str) -> Iterator[str]:
    """An ACL user with the documented state rules on the (plain) state server."""
    with acl_user(redis_stack.state.port, "campaigns", SECRET, STATE_RULES):
        yield "campaigns"


async def test_tls_state_client_with_acl_user_reads_and_writes(
    redis_stack: EmbeddedStack, pki: Pki, tls_in_front: StartTls, state_user: str
) -> None:
    proxy = tls_in_front(redis_stack.state.port, pki.server_context())
    topology = RedisTopology(proxy.url(state_user, SECRET), tls=TlsFiles(str(pki.ca_file)))
    client = await connect_state(topology, 2.0)
    try:
        await client.set("{runs:0}:tls-probe", b"over tls")
        assert await client.get("{runs:0}:tls-probe") == b"over tls"
        with pytest.raises(NoPermissionError):
            await client.set("elsewhere", b"x")  # outside the user's keys
    finally:
        await client.aclose()
    plain = redis.Redis(port=redis_stack.state.port)
    assert plain.get("{runs:0}:tls-probe") == b"over tls"
    plain.close()


async def test_wrong_password_is_a_clear_error_without_the_password(
    redis_stack: EmbeddedStack, pki: Pki, tls_in_front: StartTls, state_user: str
) -> None:
    proxy = tls_in_front(redis_stack.state.port, pki.server_context())
    topology = RedisTopology(proxy.url(state_user, "wrong-pw"), tls=TlsFiles(str(pki.ca_file)))
    with pytest.raises(AuthenticationError) as caught:
        await connect_state(topology, 2.0, retries=0)
    message = unreachable_message("state Redis", topology.describe(), "X_URL", caught.value)
    assert "refused the credentials" in message and "X_URL" in message
    assert "wrong-pw" not in message


# asyncio (3.11) leaves the socket transport of a refused TLS handshake to the garbage
# collector, which then warns "unclosed transport" whenever the collector happens to run. The
# refusals are this module's expected outcome: its tests ignore that warning, and every test
# here ends with a collection, so none is left for a test elsewhere.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed transport:ResourceWarning")


@pytest.fixture(autouse=True)
def _collect_refused_handshakes() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_tls_refuses_a_server_the_ca_did_not_sign(
    redis_stack: EmbeddedStack, pki: Pki, tls_in_front: StartTls, tmp_path: Path
) -> None:
    proxy = tls_in_front(redis_stack.state.port, pki.server_context())
    other = Pki.create(tmp_path / "other")
    topology = RedisTopology(proxy.url(), tls=TlsFiles(str(other.ca_file)))
    with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"):
        await connect_state(topology, 2.0, retries=0)


async def test_mutual_tls_needs_the_client_certificate(
    redis_stack: EmbeddedStack, pki: Pki, tls_in_front: StartTls
) -> None:
    proxy = tls_in_front(redis_stack.state.port, pki.server_context(require_client_cert=True))
    without = RedisTopology(proxy.url(), tls=TlsFiles(str(pki.ca_file)))
    with pytest.raises(RedisError):
        await connect_state(without, 2.0, retries=0)
    files = TlsFiles(str(pki.ca_file), str(pki.client_cert_file), str(pki.client_key_file))
    client = await connect_state(RedisTopology(proxy.url(), tls=files), 2.0)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    built = LocalSentinel(tmp_path / "sentinel", count=2).start()
    try:
        yield built
    finally:
        built.stop()


async def test_sentinel_mode_reaches_the_primary_the_sentinels_name(
    sentinel: LocalSentinel,
) -> None:
    settings = SchedulerSettings(
        state_redis_mode="sentinel",
        state_redis_url="redis://ignored-host:1/0",
        state_redis_sentinels=",".join(sentinel.addresses),
        state_redis_sentinel_master=sentinel.master_name,
    )
    client = await connect_state(settings.state_topology(), 2.0)
    try:
        await client.set("{sched}:via-sentinel", b"primary")
    finally:
        await client.aclose()
    primary = redis.Redis(port=sentinel.primary.port)
    assert primary.get("{sched}:via-sentinel") == b"primary"
    primary.close()
