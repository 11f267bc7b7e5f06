"""Retention soak: with every retention at a few seconds, the state Redis stays flat once
the horizon is reached (key count and memory), while runs keep succeeding."""

from __future__ import annotations

import pytest

from tests.retention_soak import soak

pytestmark = pytest.mark.slow

RETENTION_S = 4


async def test_retention_soak_state_redis_flat_after_the_horizon(
    state_url: str, lock_urls: list[str]
) -> None:
    result = await soak(state_url, lock_urls, retention_s=RETENTION_S, duration_s=40.0)
    assert result.runs_succeeded > 0
    # Every family is bounded: none has more keys at the end than at its most at the horizon
    # (beyond expiry's own sampling slack), so nothing grows with the runs.
    grown = {
        name: counts for name, counts in result.growth().items() if counts[1] > counts[0] * 1.25 + 5
    }
    assert not grown, f"key families still growing after the horizon: {grown}"
    assert result.end_keys <= result.horizon_keys * 1.2 + 10, (result.horizon, result.end)
    assert result.end_memory <= result.horizon_memory * 1.1, (
        result.horizon_memory,
        result.end_memory,
    )
