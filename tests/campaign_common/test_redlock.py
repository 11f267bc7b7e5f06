"""Redlock against three real, independent lock masters (killed and restarted by the tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from campaign_common.embedded import EmbeddedStack
from campaign_common.redis_conn import make_client
from campaign_common.redlock import Lock, Redlock, lock_key
from tests.support import eventually

TTL_MS = 10_000


@pytest.fixture
async def masters(lock_urls: list[str]) -> AsyncIterator[list[Redis]]:
    clients = [make_client(url, 1.0) for url in lock_urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def redlock(masters: list[Redis]) -> Redlock:
    return Redlock(masters, per_node_timeout_s=0.3)


async def _holders(masters: list[Redis], resource: str) -> list[bytes | None]:
    return [await client.get(lock_key(resource)) for client in masters]


async def test_redlock_grants_on_every_master_with_validity_below_ttl(
    redlock: Redlock, masters: list[Redis]
) -> None:
    before = time.monotonic()
    lock = await redlock.acquire("res", TTL_MS)
    assert lock is not None and lock.resource == "res"
    assert len(lock.token) >= 32 and 0 < lock.validity_ms < TTL_MS - 100
    assert before <= lock.acquired_at <= time.monotonic() and lock.remaining_s() > 0
    assert await _holders(masters, "res") == [lock.token.encode()] * 3
    ttls = [await client.pttl(lock_key("res")) for client in masters]
    assert all(TTL_MS - 1000 < ttl <= TTL_MS for ttl in ttls)


async def test_redlock_second_acquire_of_held_resource_returns_none(
    redlock: Redlock, masters: list[Redis]
) -> None:
    first = await redlock.acquire("res", TTL_MS)
    assert first is not None
    assert await redlock.acquire("res", TTL_MS) is None
    assert await _holders(masters, "res") == [first.token.encode()] * 3
    assert await redlock.acquire("other", TTL_MS) is not None


async def test_redlock_release_then_acquire_again(redlock: Redlock, masters: list[Redis]) -> None:
    first = await redlock.acquire("res", TTL_MS)
    assert first is not None
    await redlock.release(first)
    assert await _holders(masters, "res") == [None] * 3
    second = await redlock.acquire("res", TTL_MS)
    assert second is not None and second.token != first.token


async def test_redlock_minority_held_elsewhere_still_grants_and_majority_refuses(
    redlock: Redlock, masters: list[Redis]
) -> None:
    await masters[0].set(lock_key("a"), "someone-else", px=TTL_MS)
    assert await redlock.acquire("a", TTL_MS) is not None
    await masters[0].set(lock_key("b"), "someone-else", px=TTL_MS)
    await masters[1].set(lock_key("b"), "someone-else", px=TTL_MS)
    assert await redlock.acquire("b", TTL_MS) is None
    # The failed attempt removed its own key from the third master, and only its own.
    assert await _holders(masters, "b") == [b"someone-else", b"someone-else", None]


async def test_redlock_one_master_killed_still_grants(
    redis_stack: EmbeddedStack, redlock: Redlock, masters: list[Redis]
) -> None:
    redis_stack.locks[2].kill()
    lock = await asyncio.wait_for(redlock.acquire("res", TTL_MS), timeout=5)
    assert lock is not None
    assert (await _holders(masters[:2], "res")) == [lock.token.encode()] * 2
    await asyncio.wait_for(redlock.release(lock), timeout=5)  # a dead node is tolerated
    assert (await _holders(masters[:2], "res")) == [None, None]


async def test_redlock_two_masters_killed_refuses_and_leaves_no_key(
    redis_stack: EmbeddedStack, redlock: Redlock, masters: list[Redis]
) -> None:
    redis_stack.locks[1].kill()
    redis_stack.locks[2].kill()
    assert await asyncio.wait_for(redlock.acquire("res", TTL_MS), timeout=5) is None
    assert await masters[0].get(lock_key("res")) is None


async def test_redlock_release_of_expired_lock_is_harmless(
    redlock: Redlock, masters: list[Redis]
) -> None:
    expired = await redlock.acquire("res", 200)
    assert expired is not None

    async def gone() -> bool:
        return await _holders(masters, "res") == [None] * 3

    await eventually(gone, timeout_s=5, what="the lock to expire")
    successor = await redlock.acquire("res", TTL_MS)
    assert successor is not None
    await redlock.release(expired)  # raises nothing and leaves the successor's lock alone
    assert await _holders(masters, "res") == [successor.token.encode()] * 3


async def test_redlock_refuses_when_validity_is_used_up(
    redlock: Redlock, masters: list[Redis]
) -> None:
    # ttl * drift + 2 ms already exceeds a 2 ms TTL: never granted, no key left behind.
    assert await redlock.acquire("res", 2) is None
    assert await _holders(masters, "res") == [None] * 3


def test_redlock_lock_key_uses_a_hash_tag() -> None:
    assert lock_key("campaign:c1") == "lock:{campaign:c1}"
    lock = Lock("r", "t", validity_ms=1000.0, acquired_at=10.0)
    assert lock.valid_until == 11.0


def test_redlock_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="at least one lock master"):
        Redlock([], per_node_timeout_s=0.1)
