"""The requests of a resource, packed once: `ResourceWires` holds ACQUIRE's RESP encoding for one
(resource, ttl, fence floor) around the place of the token, and `WireCache` keeps them (and the
RELEASE encodings by lock key) for the resources in use, so that an attempt only joins three
byte strings instead of validating the name, building both key names and packing nine parts.

The cache is bounded: when it holds `MAX_ENTRIES` entries it is emptied and fills again with the
resources still in use (a plain dict: no per-hit bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign_common.redlock.scripts import (
    ACQUIRE,
    RELEASE,
    fence_key,
    lock_key,
    validate_resource,
)
from campaign_common.redlock.tokens import TOKEN_BYTES

MAX_ENTRIES = 4096
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class ResourceWires:
    """ACQUIRE of one resource with one ttl and fence floor: ``head + token + tail``."""

    key: bytes
    counter: bytes
    ttl: bytes
    floor: bytes
    fence_ttl: bytes
    acquire_head: bytes
    acquire_tail: bytes

    def acquire_parts(self, token: bytes) -> tuple[bytes, ...]:
        """ACQUIRE's keys and arguments, for a transport that packs them itself."""
        return (self.key, self.counter, token, self.ttl, self.floor, self.fence_ttl)


class WireCache:
    """`ResourceWires` by (resource, ttl_ms, fence_floor) and RELEASE heads by lock key."""

    def __init__(self, fence_ttl: bytes) -> None:
        self._fence_ttl = fence_ttl
        self.acquire: dict[tuple[str, int, int], ResourceWires] = {}
        self._release: dict[bytes, bytes] = {}
        self._native: dict[bytes, bytes] = {}

    def resource(self, resource: str, ttl_ms: int, fence_floor: int) -> ResourceWires:
        """Pack a resource's ACQUIRE (after validating its name: a bad one raises ValueError)."""
        validate_resource(resource)
        key, counter = lock_key(resource).encode(), fence_key(resource).encode()
        ttl, floor = b"%d" % ttl_ms, b"%d" % fence_floor
        head, tail = ACQUIRE.wire_around((key, counter), TOKEN_BYTES, (ttl, floor, self._fence_ttl))
        wires = ResourceWires(key, counter, ttl, floor, self._fence_ttl, head, tail)
        if len(self.acquire) >= MAX_ENTRIES:
            self.acquire.clear()
        self.acquire[(resource, ttl_ms, fence_floor)] = wires
        return wires

    def native_release(self, key: bytes, token: bytes) -> bytes:
        """``DELIFEQ key token``: the same compare-and-delete as one command (Valkey 9+)."""
        head = self._native.get(key)
        if head is None:
            head = b"*3\r\n$7\r\nDELIFEQ\r\n$%d\r\n%b\r\n" % (len(key), key)
            if len(self._native) >= MAX_ENTRIES:
                self._native.clear()
            self._native[key] = head
        return head + b"$%d\r\n%b\r\n" % (len(token), token)

    def release(self, key: bytes, token: bytes) -> bytes:
        """RELEASE (compare-and-delete) of ``token`` on ``key``."""
        if len(token) != TOKEN_BYTES:
            return RELEASE.wire(key, token)
        head = self._release.get(key)
        if head is None:
            head, _ = RELEASE.wire_around((key,), TOKEN_BYTES, ())
            if len(self._release) >= MAX_ENTRIES:
                self._release.clear()
            self._release[key] = head
        return head + token + _CRLF
