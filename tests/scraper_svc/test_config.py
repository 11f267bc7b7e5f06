"""Scraper settings from SCRAPER_* environment variables."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from scraper_svc.config import ScraperSettings


def test_config_reads_json_list_of_lock_masters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", '["redis://a:1", "redis://b:2", "redis://c:3"]')
    monkeypatch.setenv("SCRAPER_CONCURRENCY", "8")
    settings = ScraperSettings()
    assert settings.lock_redis_urls == ["redis://a:1", "redis://b:2", "redis://c:3"]
    assert settings.concurrency == 8 and settings.lock_ttl_ms == 30_000
    assert settings.lock_probe_interval_s == 5.0
    assert settings.allow_private_targets is False and settings.max_response_bytes == 5 * 2**20
    assert settings.consumer_name.endswith(f"-{os.getpid()}")


def test_config_requires_lock_masters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", "[]")
    with pytest.raises(ValidationError, match="lock_redis_urls"):
        ScraperSettings()


def test_config_limit_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", '["redis://a:1"]')
    monkeypatch.setenv("SCRAPER_MAX_CLUSTER_RUNS", "10")
    monkeypatch.setenv("SCRAPER_RUN_TIMEOUT_S", "120")
    settings = ScraperSettings()
    assert settings.max_cluster_runs == 10 and settings.run_timeout_s == 120
    assert settings.per_host_concurrency == 2 and settings.max_pages_per_run == 0
    assert settings.lock_max_lease_s > settings.run_timeout_s + settings.cluster_slot_wait_s


def test_config_refuses_a_reclaim_idle_time_within_the_lock_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", '["redis://a:1"]')
    monkeypatch.setenv("SCRAPER_LOCK_TTL_MS", "30000")
    monkeypatch.setenv("SCRAPER_RECLAIM_IDLE_MS", "30000")
    with pytest.raises(ValidationError, match=r"reclaim_idle_ms .* longer than lock_ttl_ms"):
        ScraperSettings()
    monkeypatch.setenv("SCRAPER_RECLAIM_IDLE_MS", "30001")
    assert ScraperSettings().reclaim_idle_ms == 30001


def test_config_run_retention_must_outlive_every_lease() -> None:
    with pytest.raises(ValidationError, match="SCRAPER_RUN_RETENTION_S"):
        ScraperSettings(lock_redis_urls=["redis://a:1"], run_retention_s=3600.0)
    settings = ScraperSettings(
        lock_redis_urls=["redis://a:1"], run_retention_s=5.0, lock_max_lease_s=2.0,
        reclaim_idle_ms=2_000, lock_ttl_ms=1_000,
    )  # fmt: skip
    assert settings.run_retention_s == 5.0
