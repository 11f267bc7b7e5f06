"""Requests packed once per resource: byte for byte the same as packing every part each time."""

from __future__ import annotations

import pytest
from hiredis import pack_command

from campaign_common.redlock import wires
from campaign_common.redlock.scripts import ACQUIRE, RELEASE, fence_key, lock_key
from campaign_common.redlock.tokens import new_token
from campaign_common.redlock.wires import WireCache

RESOURCES = ["campaign:42", "x", "ré sumé/ünïcode", "a" * 300, "with\r\nnewline", "0"]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize(("ttl_ms", "floor"), [(1, 0), (10_000, 0), (60_000, 2**63 - 2)])
def test_wires_acquire_is_exactly_the_packed_request(
    resource: str, ttl_ms: int, floor: int
) -> None:
    cache = WireCache(b"86400000")
    packed = cache.resource(resource, ttl_ms, floor)
    assert cache.acquire[(resource, ttl_ms, floor)] is packed
    key, counter = lock_key(resource).encode(), fence_key(resource).encode()
    assert (packed.key, packed.counter) == (key, counter)
    for _ in range(3):
        token = new_token()
        expected = ACQUIRE.wire(key, counter, token, b"%d" % ttl_ms, b"%d" % floor, b"86400000")
        assert packed.acquire_head + token + packed.acquire_tail == expected
        assert ACQUIRE.wire(*packed.acquire_parts(token)) == expected
        assert cache.release(key, token) == RELEASE.wire(key, token)
        assert cache.native_release(key, token) == pack_command((b"DELIFEQ", key, token))


def test_wires_release_of_a_token_of_another_size_is_packed_in_full() -> None:
    cache = WireCache(b"0")
    key = lock_key("res").encode()
    assert cache.release(key, b"short") == RELEASE.wire(key, b"short")


def test_wires_reject_a_bad_name_every_time_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = WireCache(b"0")
    for _ in range(2):  # nothing was cached for it
        with pytest.raises(ValueError, match="braces"):
            cache.resource("a{b}", 1_000, 0)
    assert not cache.acquire
    monkeypatch.setattr(wires, "MAX_ENTRIES", 8)
    for index in range(50):
        cache.resource(f"r{index}", 1_000, 0)
        assert len(cache.acquire) <= 8
    assert ("r49", 1_000, 0) in cache.acquire
