"""A lease: one successful acquisition (or extension) of a resource on a quorum of masters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Lease:
    """One successful acquisition (or extension) of a resource.

    ``fence`` is the fencing token; ``expires_at`` and ``acquired_at`` are ``time.monotonic()``
    values; ``validity_ms`` is what was left when the lease was granted or extended.
    """

    resource: str
    token: bytes
    fence: int
    ttl_ms: int
    validity_ms: float
    acquired_at: float
    expires_at: float
    attempts: int
    key: bytes = field(repr=False)

    def remaining_ms(self) -> float:
        return (self.expires_at - time.monotonic()) * 1000.0

    @property
    def token_hex(self) -> str:
        return self.token.hex()
