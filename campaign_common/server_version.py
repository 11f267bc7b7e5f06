"""Minimum server version: Redis 6.2 / Valkey 7 (XAUTOCLAIM, MINID trimming, GETDEL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign_common.errors import CampaignCommonError

MIN_VERSION = (6, 2, 0)


class UnsupportedServerError(CampaignCommonError, RuntimeError):
    """The Redis server is older than the minimum the platform needs."""


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_server_version(info: Mapping[Any, Any]) -> str:
    """Raise UnsupportedServerError below the minimum; returns the version string.

    ``info`` is the reply of ``INFO server`` (keys as str or bytes). Valkey reports a
    Redis-compatible ``redis_version`` (7.2.4 for every Valkey release), which is what counts.
    """
    raw = info.get("redis_version", info.get(b"redis_version", ""))
    version = raw.decode() if isinstance(raw, bytes) else str(raw)
    if parse_version(version) < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise UnsupportedServerError(
            f"Redis server version {version or 'unknown'} is too old: the platform needs "
            f"Redis >= {wanted} or Valkey >= 7 (streams with XAUTOCLAIM and MINID); upgrade it"
        )
    return version
