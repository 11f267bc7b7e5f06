"""The retry policy: backoff delays, the attempt budget, defaults and validation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from campaign_common.retry_policy import (
    MAX_ATTEMPTS_LIMIT,
    RetryPolicy,
    from_proto,
    problems,
    to_proto,
)
from campaigns.v1 import schedule_pb2

NO_JITTER = RetryPolicy(initial_delay_s=5.0, max_delay_s=300.0, multiplier=2.0, jitter=0.0)


def test_retry_policy_delay_grows_exponentially_from_the_initial_delay() -> None:
    delays = [NO_JITTER.delay_s(failed, rand=lambda: 0.5) for failed in range(1, 6)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0]


def test_retry_policy_delay_is_capped_at_the_maximum() -> None:
    assert NO_JITTER.delay_s(7, rand=lambda: 0.0) == 300.0  # 5 * 2**6 = 320 > 300
    assert NO_JITTER.delay_s(MAX_ATTEMPTS_LIMIT * 10, rand=lambda: 0.0) == 300.0


def test_retry_policy_delay_before_the_first_attempt_fails_is_the_initial_delay() -> None:
    assert NO_JITTER.delay_s(0, rand=lambda: 0.0) == 5.0


def test_retry_policy_jitter_only_shortens_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay_s=10.0, max_delay_s=300.0, multiplier=2.0, jitter=0.2)
    assert policy.delay_s(1, rand=lambda: 0.0) == 10.0
    assert policy.delay_s(1, rand=lambda: 0.5) == pytest.approx(9.0)
    assert policy.delay_s(1, rand=lambda: 0.999999) == pytest.approx(8.0, abs=1e-5)
    capped = policy.delay_s(20, rand=lambda: 0.0)
    assert capped == 300.0  # jitter never pushes a capped delay past the cap
    for _ in range(200):
        assert 8.0 < policy.delay_s(1) <= 10.0  # the real random source stays in bounds


def test_retry_policy_allows_another_until_the_last_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.allows_another(n) for n in (1, 2, 3, 4)] == [True, True, False, False]
    assert not RetryPolicy(max_attempts=1).allows_another(1)


def test_retry_policy_from_proto_fills_every_default() -> None:
    assert from_proto(schedule_pb2.RetryPolicy()) == RetryPolicy(
        max_attempts=3, initial_delay_s=5.0, max_delay_s=300.0, multiplier=2.0, jitter=0.2
    )


def test_retry_policy_from_proto_keeps_set_values_and_explicit_zero_jitter() -> None:
    message = schedule_pb2.RetryPolicy(
        max_attempts=5, initial_delay_seconds=1.5, max_delay_seconds=60, multiplier=3, jitter=0
    )
    assert from_proto(message) == RetryPolicy(5, 1.5, 60.0, 3.0, 0.0)
    assert from_proto(to_proto(from_proto(message))) == from_proto(message)
    assert to_proto(RetryPolicy(jitter=0.0)).HasField("jitter")


def test_retry_policy_problems_accepts_defaults_and_valid_values() -> None:
    assert problems(schedule_pb2.RetryPolicy()) == []
    assert problems(to_proto(RetryPolicy())) == []
    valid = schedule_pb2.RetryPolicy(
        max_attempts=100, initial_delay_seconds=0.5, max_delay_seconds=86400, multiplier=1, jitter=1
    )
    assert problems(valid) == []


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"max_attempts": 101}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"initial_delay_seconds": -1.0}, "initial_delay_seconds"),
        ({"initial_delay_seconds": math.nan}, "initial_delay_seconds"),
        ({"max_delay_seconds": math.inf}, "max_delay_seconds"),
        ({"max_delay_seconds": 86401.0}, "max_delay_seconds"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": 101.0}, "multiplier"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
        ({"initial_delay_seconds": 10.0, "max_delay_seconds": 5.0}, "max_delay_seconds"),
        ({"initial_delay_seconds": 600.0}, "max_delay_seconds"),  # above the default cap, 300
    ],
)
def test_retry_policy_problems_names_the_bad_field(fields: dict[str, Any], bad: str) -> None:
    found = problems(schedule_pb2.RetryPolicy(**fields))
    assert [name for name, _ in found] == [bad]
    assert all(description for _, description in found)


def test_retry_policy_problems_reports_every_bad_field_at_once() -> None:
    message = schedule_pb2.RetryPolicy(max_attempts=101, multiplier=0.5, jitter=1.5)
    assert [name for name, _ in problems(message)] == ["max_attempts", "multiplier", "jitter"]
