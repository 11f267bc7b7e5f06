"""Failed Redis commands are counted by operation; expected error replies are not."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from campaign_common.localstack.embedded import free_port
from campaign_common.observability.redis_metrics import counted_call
from campaign_common.redis_conn import make_client


def _errors(operation: str) -> float:
    value = REGISTRY.get_sample_value("campaigns_redis_errors_total", {"operation": operation})
    return value or 0.0


def test_common_operations_exist_from_start_up() -> None:
    assert REGISTRY.get_sample_value("campaigns_redis_errors_total", {"operation": "xadd"}) == 0


async def test_an_unreachable_server_counts_an_error_of_the_operation() -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0", 1.0, retries=0)
    before = _errors("get")
    try:
        with pytest.raises(RedisConnectionError):
            await client.get("k")
    finally:
        await client.aclose()
    assert _errors("get") == before + 1


async def test_answers_and_expected_error_replies_are_not_counted(state_url: str) -> None:
    client = make_client(state_url, 5.0)
    before = (_errors("set"), _errors("xinfo"))
    try:
        await client.set("k", "v")
        with pytest.raises(ResponseError):
            await client.xinfo_groups("no-such-stream")
    finally:
        await client.aclose()
    assert (_errors("set"), _errors("xinfo")) == before


async def _raising(exc: Exception) -> None:
    raise exc


async def test_a_write_on_a_connection_closed_underneath_is_a_connection_error() -> None:
    # What redis-py 8.1 raises when a command writes on a connection another task closed.
    leaked = AttributeError("'NoneType' object has no attribute 'writelines'")
    before = _errors("evalsha")
    with pytest.raises(RedisConnectionError, match="closed under the command"):
        await counted_call(_raising(leaked), ("EVALSHA", "sha", 1, "k"))
    assert _errors("evalsha") == before + 1
    bug = AttributeError("'Schedule' object has no attribute 'spec'")
    with pytest.raises(AttributeError, match="Schedule"):
        await counted_call(_raising(bug), ("EVALSHA",))
    assert _errors("evalsha") == before + 1
