"""Scheduler settings that would break a guarantee are refused at start-up, by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler_svc.config import SchedulerSettings


def test_config_refuses_a_dedupe_ttl_shorter_than_the_latest_fire() -> None:
    with pytest.raises(ValidationError, match="SCHEDULER_RUN_DEDUPE_TTL_S must be at least 86400"):
        SchedulerSettings(run_dedupe_ttl_s=3600)
    with pytest.raises(ValidationError, match="at least 129600"):  # a 1-day default window
        SchedulerSettings(catch_up_window_s=86400.0)
    assert SchedulerSettings(catch_up_window_s=86400.0, run_dedupe_ttl_s=200_000).run_dedupe_ttl_s


def test_config_group_commit_of_commands_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_APPEND_LINGER_MS", "0")
    monkeypatch.setenv("SCHEDULER_APPEND_BATCH", "64")
    settings = SchedulerSettings()
    assert (settings.append_linger_ms, settings.append_batch) == (0, 64)
    monkeypatch.setenv("SCHEDULER_APPEND_BATCH", "0")
    with pytest.raises(ValidationError, match="append_batch"):
        SchedulerSettings()
