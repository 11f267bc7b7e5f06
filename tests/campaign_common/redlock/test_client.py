"""Redlock client against real lock masters: exclusion, fencing, failures, extension, hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedRedis, EmbeddedStack
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.errors import LeaseLost, LockHeld, QuorumUnavailable
from campaign_common.redlock.lease import Lease
from campaign_common.redlock.scripts import fence_key, lock_key
from campaign_common.redlock.stats import AttemptStats
from tests.acl_users import LOCK_RULES, acl_user
from tests.faults import TcpProxy
from tests.support import eventually

FOREIGN = b"someone-else-token"
MakeRedlock = Callable[..., Redlock]


@pytest.fixture
async def masters(lock_urls: list[str]) -> AsyncIterator[list[Redis]]:
    """Plain clients on the three masters, for the test to look at and tamper with keys."""
    clients = [Redis.from_url(url) for url in lock_urls]
    yield clients
    for client in clients:
        await client.aclose()


@pytest.fixture(params=[True, False], ids=["pipelined", "redis-py"])
def pipelined(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def make_redlock(lock_urls: list[str]) -> AsyncIterator[MakeRedlock]:
    """Build Redlock clients on the test's masters (or given URLs); all closed afterwards."""
    made: list[tuple[Redlock, list[Redis]]] = []

    def make(urls: list[str] | None = None, **options: object) -> Redlock:
        clients = [Redis.from_url(url) for url in (urls or lock_urls)]
        options = {"node_timeout_s": 0.25, "retry_delay_ms": 20, **options}
        redlock = Redlock(clients, **options)  # type: ignore[arg-type]
        made.append((redlock, clients))
        return redlock

    yield make
    for redlock, clients in made:
        await redlock.aclose()
        for client in clients:
            await client.aclose()


async def _holders(masters: list[Redis], resource: str) -> list[object]:
    return [await master.get(lock_key(resource)) for master in masters]


async def _counters(masters: list[Redis], resource: str) -> list[int]:
    return [int(await master.get(fence_key(resource)) or 0) for master in masters]


async def _until_cancelled() -> None:
    """A body that works until the hold cancels it (and never ends by itself)."""
    await asyncio.Event().wait()


async def test_redlock_grants_fences_and_releases(
    make_redlock: MakeRedlock, masters: list[Redis], pipelined: bool
) -> None:
    redlock = make_redlock(pipelined=pipelined)
    lease = await redlock.acquire("res", 5_000)
    assert len(lease.token) >= 16 and lease.fence == 1 and lease.attempts == 1
    # acquire returns at quorum: the last master's grant may still be on its way
    assert (await _holders(masters, "res")).count(lease.token) >= redlock.quorum

    async def all_hold() -> bool:
        return await _holders(masters, "res") == [lease.token] * 3

    await eventually(all_hold, timeout_s=5, what="the third grant")
    assert 0 < lease.validity_ms <= 5_000 - (5_000 * 0.01 + 2)
    await redlock.release(lease)
    assert await _holders(masters, "res") == [None] * 3
    again = await redlock.acquire("res", 5_000)
    assert again.fence == 2 and again.token != lease.token
    await redlock.release(again)


async def test_redlock_mutual_exclusion_under_concurrency(
    make_redlock: MakeRedlock, pipelined: bool
) -> None:
    clients = [
        make_redlock(pipelined=pipelined, retry_count=200, retry_delay_ms=2) for _ in range(3)
    ]
    inside = 0
    overlaps = 0
    fences: list[int] = []

    async def worker(redlock: Redlock) -> None:
        nonlocal inside, overlaps
        for _ in range(8):
            lease = await redlock.acquire("shared", 2_000)
            inside += 1
            overlaps += inside > 1
            fences.append(lease.fence)
            # a round trip while inside: every other task tries to get in meanwhile
            lease = await redlock.extend(lease, 2_000)
            inside -= 1
            await redlock.release(lease)

    await asyncio.gather(*(worker(clients[i % 3]) for i in range(12)))
    assert overlaps == 0
    assert len(fences) == 96
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


async def test_redlock_contention_raises_lock_held_and_leaves_no_partial_keys(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock(retry_count=2)
    for master in masters[:2]:
        await master.set(lock_key("busy"), FOREIGN, px=10_000)
    with pytest.raises(LockHeld) as raised:
        await redlock.acquire("busy", 5_000)
    assert set(raised.value.held_on) == set(redlock.addresses[:2])
    assert await _holders(masters, "busy") == [FOREIGN, FOREIGN, None]


async def test_redlock_two_masters_down_is_quorum_unavailable_naming_them(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack, pipelined: bool
) -> None:
    redlock = make_redlock(pipelined=pipelined, retry_count=1)
    await redlock.connect()
    redis_stack.locks[0].kill()
    redis_stack.locks[1].kill()
    with pytest.raises(QuorumUnavailable) as raised:
        await redlock.acquire("res", 5_000)
    assert set(raised.value.nodes) == set(redlock.addresses[:2])
    # the survivor granted, and the partial key was released before the error was raised
    assert await masters[2].get(lock_key("res")) is None


async def test_redlock_one_master_down_still_grants(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack
) -> None:
    redlock = make_redlock()
    redis_stack.locks[1].kill()
    lease = await redlock.acquire("res", 5_000)
    assert (await _holders(masters[::2], "res")) == [lease.token, lease.token]
    with pytest.raises(LockHeld):
        await make_redlock(retry_count=0).acquire("res", 5_000)
    await redlock.release(lease)
    assert await _holders(masters[::2], "res") == [None, None]


async def test_redlock_fence_increases_across_holders_and_a_restarted_master(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack
) -> None:
    holders = [make_redlock(), make_redlock()]
    fences: list[int] = []

    async def take_turns(count: int) -> None:
        for i in range(count):
            lease = await holders[i % 2].acquire("camp", 5_000)
            fences.append(lease.fence)
            await holders[i % 2].release(lease)

    await take_turns(4)
    redis_stack.locks[0].kill()
    await take_turns(4)
    redis_stack.locks[0].start()  # back without its data: its fence counter starts from zero
    assert await masters[0].get(fence_key("camp")) is None

    async def restarted_master_caught_up() -> bool:
        # the first acquisition the restarted master takes part in raises its counter
        await take_turns(1)
        return min(await _counters(masters, "camp")) >= fences[-1]

    await eventually(restarted_master_caught_up, timeout_s=10, what="fence counters to catch up")
    redis_stack.locks[1].kill()  # now another master goes: its counter must not be needed
    await take_turns(4)
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


async def test_redlock_fence_written_back_when_counters_disagree(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    # a history in which fences up to 95 may have been issued (two masters store >= 95) and
    # every pair of masters disagrees, so whichever quorum answers first must write back
    redlock = make_redlock()
    for master, counter in zip(masters, (100, 95, 0), strict=True):
        await master.set(fence_key("camp"), counter)
    lease = await redlock.acquire("camp", 5_000)
    assert lease.fence > 95
    assert redlock.counters.fence_confirmations == 1

    async def all_raised() -> bool:
        return min(await _counters(masters, "camp")) >= lease.fence

    await eventually(all_raised, timeout_s=5, what="every counter raised to the fence")
    await redlock.release(lease)
    assert (await redlock.acquire("camp", 5_000)).fence > lease.fence


async def test_redlock_a_late_reply_of_one_attempt_never_touches_the_next_attempts_key(
    make_redlock: MakeRedlock, masters: list[Redis], lock_urls: list[str]
) -> None:
    # Master 1 is held by someone else, so every quorum needs masters 0 and 2. Master 2 is
    # behind a proxy that holds its first EVALSHA back until the next request on the connection
    # arrives (no timing involved): attempt 1 gets master 0, times out on master 2 and fails.
    # Attempt 2's ACQUIRE lets master 2 run attempt 1's ACQUIRE, then attempt 2's, which takes
    # attempt 1's key over (an orphan of this client); attempt 1's grant arrives late and its
    # clean-up (compare-and-delete) follows on the same connection. With one token for both
    # attempts, attempt 2's ACQUIRE merely refreshed attempt 1's key and the clean-up deleted
    # the key of the lease attempt 2 returned.
    await masters[1].set(lock_key("res"), FOREIGN, px=60_000)
    proxy = TcpProxy.to_url(lock_urls[2])
    redlock = make_redlock([*lock_urls[:2], proxy.url], node_timeout_s=1.0, retry_count=5)
    try:
        proxy.hold_first(b"EVALSHA")
        await redlock.connect()
        assert proxy.held == 0  # the connection's set-up (SCRIPT LOAD, PING) was not held
        lease = await redlock.acquire("res", 60_000)
        assert proxy.held == 1
        # connect() PINGs every master on its pipelined connection, behind every request sent
        # earlier (late clean-ups included): once it returns, they have all run
        await redlock.connect()
        holders = await _holders(masters, "res")
        assert holders.count(lease.token) >= redlock.quorum, (lease.token, holders)
        await masters[1].delete(lock_key("res"))
        with pytest.raises(LockHeld):  # master 1 is free now, yet the lease keeps its quorum
            await make_redlock(retry_count=0).acquire("res", 60_000)
        assert lease.remaining_ms() > 0
        lease = await redlock.extend(lease)
        # attempt 2 won: master 2 held attempt 1's key, which is ours, not another owner's
        assert lease.attempts == 2
        await redlock.release(lease)
        assert await _holders(masters, "res") == [None] * 3
    finally:
        await redlock.aclose()
        proxy.close()


def _block_until_set(url: str, resource: str, timeout_s: float = 10.0) -> None:
    """Wait for the lock key on one master WITHOUT letting the event loop run (a synchronous
    client), so the Redlock client cannot read the master's late reply meanwhile."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        while client.get(lock_key(resource)) is None:  # one round trip per probe
            assert time.monotonic() < deadline, f"{lock_key(resource)} never set on {url}"
    finally:
        client.close()


async def test_redlock_takes_over_its_own_late_grant_instead_of_reporting_it_held(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack, pipelined: bool
) -> None:
    # Master 1 is held by someone else, so every quorum needs masters 0 and 2. Master 2 is frozen
    # (SIGSTOP): call 1's ACQUIRE waits in its socket, call 1 times out on it and fails. Master 2
    # resumes and runs that ACQUIRE, so it holds call 1's token; its reply is not read yet (the
    # test keeps the event loop from running until the key is there), so call 2's ACQUIRE reaches
    # master 2 before call 1's clean-up does. Call 2 must take that key over: counting it as
    # another owner's made call 2 fail with LockHeld although nobody else held the resource.
    await masters[1].set(lock_key("res"), FOREIGN, px=60_000)
    redlock = make_redlock(pipelined=pipelined, node_timeout_s=0.2)
    # connected, with idle connections to spare in redis-py's pools
    await asyncio.gather(*(redlock.connect() for _ in range(3)))
    frozen = redis_stack.locks[2]
    assert frozen.pid is not None
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        with pytest.raises(LockHeld):
            await redlock.acquire("res", 60_000, retry_count=0)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    _block_until_set(frozen.url, "res")
    lease = await redlock.acquire("res", 60_000, retry_count=0)
    assert lease.attempts == 1

    async def settled() -> bool:  # call 1's late grant was answered and its clean-up confirmed
        return len(redlock._orphans) == 0

    await eventually(settled, timeout_s=10, what="call 1's clean-up confirmed")
    holders = await _holders(masters, "res")
    assert holders == [lease.token, FOREIGN, lease.token], holders
    await redlock.release(lease)
    assert await _holders(masters, "res") == [None, FOREIGN, None]


async def test_redlock_fence_floor_continues_fences_after_every_master_lost_its_data(
    make_redlock: MakeRedlock, masters: list[Redis], pipelined: bool
) -> None:
    redlock = make_redlock(pipelined=pipelined)
    for _ in range(3):
        lease = await redlock.acquire("camp", 5_000)
        await redlock.release(lease)
    accepted = lease.fence  # the highest fence a fenced store would have accepted
    assert accepted == 3
    for master in masters:
        await master.flushall()
    # The failure mode the floor exists for: the counters start again at 1, and a store that
    # refuses fences below the highest it accepted would refuse this holder and all later ones.
    unfloored = await redlock.acquire("camp", 5_000)
    assert unfloored.fence == 1
    await redlock.release(unfloored)
    floored = await redlock.acquire("camp", 5_000, fence_floor=accepted)
    assert floored.fence > accepted
    await redlock.release(floored)
    # the floor was written into the counters: later fences continue above it without one
    after = await redlock.acquire("camp", 5_000)
    assert after.fence > floored.fence
    await redlock.release(after)


async def test_redlock_holds_with_a_fence_floor_keep_fences_increasing_across_a_wipe(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    accepted = 0  # what the protected store remembers: the highest fence that wrote
    fences: list[int] = []
    for turn in range(6):
        if turn == 3:  # between two holds every master loses its data
            for master in masters:
                await master.flushall()
        async with redlock.hold("camp", 5_000, fence_floor=accepted) as lease:
            fences.append(lease.fence)
            accepted = max(accepted, lease.fence)
    assert fences == [1, 2, 3, 4, 5, 6]  # strictly increasing, the wipe included


@pytest.mark.parametrize(("floor", "fence", "confirmations"), [(0, 4, 1), (2, 4, 1), (5, 6, 0)])
async def test_redlock_fence_floor_with_one_wiped_master(
    make_redlock: MakeRedlock, masters: list[Redis], floor: int, fence: int, confirmations: int
) -> None:
    redlock = make_redlock()
    for _ in range(3):
        await redlock.release(await redlock.acquire("camp", 5_000))

    async def counters_at_3() -> bool:
        return await _counters(masters, "camp") == [3, 3, 3]

    await eventually(counters_at_3, timeout_s=5, what="every counter at 3")
    await masters[0].flushall()
    # master 2 is held by someone else, so the quorum is master 0 (wiped, its counter gives
    # max(1, floor + 1)) and master 1 (4): below 4 they disagree and CONFIRM_FENCE settles it
    await masters[2].set(lock_key("camp"), FOREIGN, px=60_000)
    lease = await redlock.acquire("camp", 5_000, fence_floor=floor)
    assert lease.fence == fence
    assert redlock.counters.fence_confirmations == confirmations

    async def all_raised() -> bool:
        return min(await _counters(masters, "camp")) >= fence

    await eventually(all_raised, timeout_s=5, what="every counter raised to the fence")
    await redlock.release(lease)
    await masters[2].delete(lock_key("camp"))
    again = await redlock.acquire("camp", 5_000)
    assert again.fence == fence + 1
    await redlock.release(again)


async def test_redlock_fence_floor_is_exact_beyond_lua_number_formatting(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    # 10**15 + 1 has more digits than Lua's %.14g shows: the script must not format it
    redlock = make_redlock()
    lease = await redlock.acquire("camp", 5_000, fence_floor=10**15)
    assert lease.fence == 10**15 + 1
    await redlock.release(lease)  # waits for every master, each ran the ACQUIRE before it
    assert await _counters(masters, "camp") == [10**15 + 1] * 3


async def test_redlock_returns_at_quorum_without_waiting_for_a_slow_master(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    # Waiting for the slow master would take its whole pause (the node deadline is as long):
    # the margin below that stays wide even on a loaded machine.
    redlock = make_redlock(node_timeout_s=2.0)
    await redlock.connect()
    await masters[2].client_pause(2000, all=False)
    started = time.monotonic()
    lease = await redlock.acquire("res", 30_000)
    assert time.monotonic() - started < 1.0
    await redlock.release(lease)
    # the slow master granted later and was released behind it, in order, on its connection
    await eventually(
        lambda: _gone(masters[2], "res"), timeout_s=5, what="late grant released on slow master"
    )


async def _gone(master: Redis, resource: str) -> bool:
    return await master.exists(lock_key(resource)) == 0


async def test_redlock_validity_accounts_for_elapsed_time(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock(node_timeout_s=1.0)
    await redlock.connect()
    for master in masters[:2]:
        await master.client_pause(60, all=False)
    lease = await redlock.acquire("res", 2_000)
    drift_ms = 2_000 * 0.01 + 2
    assert lease.validity_ms <= 2_000 - 60 - drift_ms + 5
    assert lease.expires_at == pytest.approx(lease.acquired_at + (2_000 - drift_ms) / 1000)
    assert lease.remaining_ms() <= lease.validity_ms


async def test_redlock_lock_without_validity_is_released_and_not_returned(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    # drift 99 % of 3 s leaves 28 ms; two masters paused for 200 ms use it all up (a pause
    # that long still holds when the acquire arrives on a loaded machine; the replies come
    # within the node timeout, capped at a tenth of the TTL: 300 ms)
    redlock = make_redlock(node_timeout_s=1.0, drift_factor=0.99, retry_count=0)
    await redlock.connect()
    for master in masters[:2]:
        await master.client_pause(200, all=False)
    with pytest.raises(QuorumUnavailable, match="validity exhausted"):
        await redlock.acquire("res", 3_000)
    assert await _holders(masters, "res") == [None] * 3
    assert redlock.counters.expired == 1


async def test_redlock_extend_renews_the_ttl_on_the_masters(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    lease = await redlock.acquire("res", 1_000)
    extended = await redlock.extend(lease, 30_000)
    assert extended.fence == lease.fence and extended.token == lease.token
    assert extended.expires_at > lease.expires_at and extended.validity_ms > 29_000
    for master in masters:
        assert await master.pttl(lock_key("res")) > 20_000


@pytest.mark.parametrize("tamper", ["deleted", "taken"])
async def test_redlock_extend_raises_lease_lost_when_a_majority_lost_the_key(
    make_redlock: MakeRedlock, masters: list[Redis], tamper: str
) -> None:
    redlock = make_redlock()
    lease = await redlock.acquire("res", 10_000)
    for master in masters[:2]:
        if tamper == "deleted":
            await master.delete(lock_key("res"))
        else:
            await master.set(lock_key("res"), FOREIGN, px=10_000)
    with pytest.raises(LeaseLost, match="extension refused"):
        await redlock.extend(lease, 10_000)


async def test_redlock_auto_extension_keeps_the_lock_past_its_ttl(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    # TTLs in these tests stay at a second or more: a lock command's per-node deadline is a
    # tenth of its TTL, and a loaded 2-core machine misses deadlines of a few milliseconds.
    redlock = make_redlock()
    async with redlock.hold("res", 1500) as lease:

        async def extended_past_the_ttl() -> bool:  # extensions come every TTL / 3
            return redlock.counters.extended >= 4

        await eventually(extended_past_the_ttl, timeout_s=15, what="four extensions")
        assert await _holders(masters, "res") == [lease.token] * 3
        with pytest.raises(LockHeld):
            await make_redlock(retry_count=0).acquire("res", 1500)
    assert await _holders(masters, "res") == [None] * 3


async def test_redlock_auto_extension_cancels_the_body_when_the_lease_is_lost(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    body_cancelled = asyncio.Event()
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="extension refused"):
        async with redlock.hold("res", 1500):
            for master in masters:
                await master.delete(lock_key("res"))
            try:
                await _until_cancelled()
            except asyncio.CancelledError:
                body_cancelled.set()
                raise
    assert body_cancelled.is_set()
    assert time.monotonic() - started < 5
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_redlock_lease_lost_is_raised_even_if_the_body_swallows_the_cancellation(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    with pytest.raises(LeaseLost):
        async with redlock.hold("res", 1500):
            for master in masters:
                await master.set(lock_key("res"), FOREIGN, px=10_000)
            with contextlib.suppress(asyncio.CancelledError):  # a careless body
                await _until_cancelled()
    assert await _holders(masters, "res") == [FOREIGN] * 3  # the other owner's keys stay


async def test_redlock_max_lease_cap_cancels_the_body(make_redlock: MakeRedlock) -> None:
    redlock = make_redlock()
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="maximum lease time"):
        async with redlock.hold("res", 3000, max_lease_s=0.5):  # capped before any extension
            await _until_cancelled()
    assert 0.5 <= time.monotonic() - started < 5
    assert redlock.counters.released == 1


async def test_redlock_release_of_an_expired_lock_raises_nothing(
    make_redlock: MakeRedlock, masters: list[Redis], caplog: pytest.LogCaptureFixture
) -> None:
    redlock = make_redlock()
    lease = await redlock.acquire("res", 1000)
    await eventually(lambda: _all_gone(masters, "res"), timeout_s=10, what="lock keys to expire")
    with caplog.at_level(logging.DEBUG, logger="campaign_common.redlock.client"):
        await redlock.release(lease)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    with pytest.raises(LeaseLost, match="not held by a quorum"):
        await redlock.release(lease, strict=True)


async def _all_gone(masters: list[Redis], resource: str) -> bool:
    return await _holders(masters, resource) == [None] * 3


async def test_redlock_five_masters_need_a_quorum_of_three(
    make_redlock: MakeRedlock, lock_urls: list[str], redis_stack: EmbeddedStack
) -> None:
    extra = [EmbeddedRedis("lock-extra-a").start(), EmbeddedRedis("lock-extra-b").start()]
    try:
        redlock = make_redlock([*lock_urls, *(server.url for server in extra)], retry_count=0)
        assert redlock.quorum == 3
        for server in extra:
            server.kill()
        lease = await redlock.acquire("res", 5_000)  # 3 of 5 are enough
        await redlock.release(lease)
        redis_stack.locks[0].kill()  # 2 of 5 are not
        with pytest.raises(QuorumUnavailable) as raised:
            await redlock.acquire("res", 5_000)
        dead = {redlock.addresses[0], *redlock.addresses[3:]}
        assert set(raised.value.nodes) == dead
    finally:
        for server in extra:
            server.stop()


async def test_redlock_reports_attempt_stats(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    seen: list[AttemptStats] = []
    redlock = make_redlock(retry_count=2, on_attempt=seen.append)
    for master in masters:
        await master.set(lock_key("busy"), FOREIGN, px=10_000)
    with pytest.raises(LockHeld):
        await redlock.acquire("busy", 1_000)
    assert [(s.attempt, s.outcome, s.granted) for s in seen] == [(i, "held", 0) for i in (1, 2, 3)]
    lease = await redlock.acquire("free", 1_000)
    await redlock.release(lease)
    assert [s.outcome for s in seen[3:]] == ["granted", "released"]
    assert seen[3].granted >= 2 and seen[3].elapsed_ms >= 0 and seen[3].nodes == 3
    assert redlock.counters.held == 3 and redlock.counters.acquired == 1


async def test_redlock_reloads_its_scripts_after_a_master_forgets_them(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock(retry_count=2)
    await redlock.connect()
    for master in masters:
        await master.script_flush()
    lease: Lease = await redlock.acquire("res", 5_000)
    assert lease.attempts == 2  # the first attempt met NOSCRIPT everywhere
    await redlock.release(lease)


async def test_redlock_rejects_bad_arguments(make_redlock: MakeRedlock) -> None:
    redlock = make_redlock()
    with pytest.raises(ValueError):
        await redlock.acquire("", 1_000)
    with pytest.raises(ValueError):
        await redlock.acquire("a{b}", 1_000)
    with pytest.raises(ValueError):
        await redlock.acquire("res", 0)
    with pytest.raises(ValueError, match="fence_floor"):
        await redlock.acquire("res", 1_000, fence_floor=-1)
    await redlock.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await redlock.acquire("res", 1_000)


async def test_redlock_closing_the_client_cancels_active_holds(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    entered = asyncio.Event()

    async def body() -> None:
        async with redlock.hold("res", 1_000):
            entered.set()
            await _until_cancelled()

    holder = asyncio.create_task(body())
    await asyncio.wait_for(entered.wait(), timeout=5)
    await redlock.aclose()
    with pytest.raises(LeaseLost, match="client was closed"):
        await asyncio.wait_for(holder, timeout=5)


async def test_redlock_a_hung_master_delays_nothing_beyond_the_node_timeout(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack
) -> None:
    redlock = make_redlock(node_timeout_s=0.1)
    await redlock.connect()
    hung = redis_stack.locks[0]
    assert hung.pid is not None
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        lease = await redlock.acquire("res", 10_000)
        lease = await redlock.extend(lease)
        await redlock.release(lease)
        assert time.monotonic() - started < 1.0  # release waited one node timeout for it
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    # its requests were still in its connection, in order: grant, extend, then release
    await eventually(lambda: _gone(masters[0], "res"), timeout_s=5, what="hung master released")


async def test_redlock_a_grant_of_unknown_outcome_stays_ours_for_the_ttl(
    make_redlock: MakeRedlock, masters: list[Redis], lock_urls: list[str]
) -> None:
    # Master 1 is held by someone else. Master 2 runs call 1's ACQUIRE, but the reply is lost
    # with the connection: the outcome is unknown. Call 1 fails and releases it on a new
    # connection; a request of unknown outcome can still run after that release (it was on
    # another connection: no order between them), so the test plays that late grant by writing
    # call 1's token back into master 2's key once the release has replied. Call 2 must take it
    # over: forgetting the token when the release replied made call 2 fail with LockHeld.
    await masters[1].set(lock_key("res"), FOREIGN, px=60_000)
    proxy = TcpProxy.to_url(lock_urls[2])
    redlock = make_redlock([*lock_urls[:2], proxy.url])
    try:
        await redlock.connect()
        proxy.drop_replies(b"EVALSHA")
        with pytest.raises(LockHeld):
            await redlock.acquire("res", 60_000, retry_count=0)
        assert proxy.dropped == 1
        (orphan,) = redlock._orphans.tokens(lock_key("res").encode())
        await redlock.connect()  # behind call 1's release on every master: it has replied
        assert await _holders(masters, "res") == [None, FOREIGN, None]
        await masters[2].set(lock_key("res"), orphan, px=60_000)  # the late grant
        lease = await redlock.acquire("res", 60_000, retry_count=0)
        holders = await _holders(masters, "res")
        assert holders == [lease.token, FOREIGN, lease.token], holders
    finally:
        await redlock.aclose()
        proxy.close()


async def test_redlock_takes_over_the_key_of_a_released_lease_its_release_missed(
    make_redlock: MakeRedlock, masters: list[Redis], lock_urls: list[str], pipelined: bool
) -> None:
    # Master 1 is held by someone else. The lease holds masters 0 and 2; its release never
    # reaches master 2 (the network there is a black hole), so master 2 keeps the released
    # lease's key. The lease is over: the next acquisition must take that key over instead of
    # counting master 2 as held by another owner (LockHeld).
    await masters[1].set(lock_key("res"), FOREIGN, px=60_000)
    proxy = TcpProxy.to_url(lock_urls[2])
    redlock = make_redlock([*lock_urls[:2], proxy.url], pipelined=pipelined, node_timeout_s=0.1)
    try:
        lease = await redlock.acquire("res", 60_000, retry_count=0)
        proxy.partition()
        await redlock.release(lease)
        assert await _holders(masters, "res") == [None, FOREIGN, lease.token]
        proxy.heal()  # the connection that lost the release is closed

        async def all_reachable() -> bool:
            return await redlock.reachable(1.0) == (True, True, True)

        await eventually(all_reachable, timeout_s=10, what="master 2 reachable again")
        again = await redlock.acquire("res", 60_000, retry_count=0)
        holders = await _holders(masters, "res")
        assert holders == [again.token, FOREIGN, again.token], holders
    finally:
        await redlock.aclose()
        proxy.close()


async def _delifeq_calls(master: Redis) -> int:
    stats = await master.info("commandstats")
    return int(stats.get("cmdstat_delifeq", {}).get("calls", 0))


async def test_redlock_releases_with_delifeq_where_the_master_answers_it(
    make_redlock: MakeRedlock, masters: list[Redis]
) -> None:
    redlock = make_redlock()
    await redlock.connect()  # behind the connection's probe: its answer is in
    before = [await _delifeq_calls(master) for master in masters]
    lease = await redlock.acquire("res", 10_000)
    for master in masters[1:]:  # taken over there meanwhile: not ours to delete
        await master.set(lock_key("res"), FOREIGN, px=60_000)
    with pytest.raises(LeaseLost, match="deleted on 1 of 3"):  # the replies count as before
        await redlock.release(lease, strict=True)
    after = [await _delifeq_calls(master) for master in masters]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert await _holders(masters, "res") == [None, FOREIGN, FOREIGN]


async def test_redlock_releases_with_the_script_under_an_acl_without_delifeq(
    make_redlock: MakeRedlock, masters: list[Redis], redis_stack: EmbeddedStack
) -> None:
    # The documented lock ACL (tests/acl_users.py) has no +delifeq: the probe is refused, and a
    # release sent as DELIFEQ would be refused too and delete nothing.
    with contextlib.ExitStack() as users:
        for server in redis_stack.locks:
            users.enter_context(acl_user(server.port, "locker", "pw", LOCK_RULES))
        urls = [f"redis://locker:pw@127.0.0.1:{server.port}/0" for server in redis_stack.locks]
        redlock = make_redlock(urls)
        await redlock.connect()
        lease = await redlock.acquire("res", 10_000)
        await redlock.release(lease, strict=True)  # LeaseLost if fewer than a quorum deleted
        assert await _holders(masters, "res") == [None, None, None]
        await redlock.aclose()


async def test_redlock_every_round_times_out_while_a_majority_hangs(
    make_redlock: MakeRedlock, redis_stack: EmbeddedStack, pipelined: bool
) -> None:
    # Rounds of the common node timeout share one timer; rounds of another timeout (a short
    # ttl caps it) have their own. Many of both at once, then one more after the shared queue
    # ran empty: each round must time out by itself.
    redlock = make_redlock(pipelined=pipelined, node_timeout_s=0.1)
    await redlock.connect()
    hung = [redis_stack.locks[1], redis_stack.locks[2]]
    for server in hung:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)

    async def refused(index: int) -> str:
        ttl_ms = 500 if index % 3 == 0 else 10_000  # node timeouts of 50 ms and 100 ms
        with pytest.raises(QuorumUnavailable) as caught:
            await redlock.acquire(f"res-{index}", ttl_ms, retry_count=0)
        return str(caught.value)

    try:
        async with asyncio.timeout(20):  # a round nobody times out would hang here
            errors = list(await asyncio.gather(*(refused(i) for i in range(20))))
            errors.append(await refused(20))  # after the queue ran empty
    finally:
        for server in hung:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGCONT)
    assert all("no reply within" in error for error in errors), errors


async def test_redlock_reachable_names_each_master_that_answers_in_time(
    make_redlock: MakeRedlock, redis_stack: EmbeddedStack, pipelined: bool
) -> None:
    redlock = make_redlock(pipelined=pipelined)

    async def answers(expected: tuple[bool, ...]) -> bool:
        return await redlock.reachable(1.0) == expected

    await eventually(lambda: answers((True, True, True)), timeout_s=10, what="all answer")
    redis_stack.locks[1].kill()
    await eventually(lambda: answers((True, False, True)), timeout_s=10, what="one killed")
    hung = redis_stack.locks[2]
    assert hung.pid is not None
    os.kill(hung.pid, signal.SIGSTOP)
    try:  # a hung master never answers: not reachable once the deadline passed
        assert (await redlock.reachable(0.3))[1:] == (False, False)
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    redis_stack.locks[1].start()
    await eventually(lambda: answers((True, True, True)), timeout_s=10, what="all back")
