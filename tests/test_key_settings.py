"""A malformed key setting, in any service, is reported by name without printing the keys: the
settings classes and each process's start-up message."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from campaign_common.cli.operator import CliSettings
from campaign_common.localstack.stack import StackSettings
from gateway.config import GatewaySettings
from scheduler_svc.config import SchedulerSettings
from scraper_svc.config import ScraperSettings
from tests.support import ROOT

SECRET = "topsecret-0123456789"
# A broken JSON list, and a valid one whose items are not strings.
MALFORMED = [f'["{SECRET}", ', f'["{SECRET}", {{"key": "{SECRET}"}}]']
LOCKS = '["redis://127.0.0.1:1/0"]'


@pytest.mark.parametrize("value", MALFORMED, ids=["broken-json", "not-strings"])
@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (GatewaySettings, "GATEWAY_API_KEYS"),
        (GatewaySettings, "GATEWAY_METRICS_KEYS"),
        (SchedulerSettings, "SCHEDULER_API_KEYS"),
        (SchedulerSettings, "SCHEDULER_METRICS_KEYS"),
        (ScraperSettings, "SCRAPER_METRICS_KEYS"),
        (StackSettings, "GATEWAY_API_KEYS"),
    ],
)
def test_malformed_key_setting_is_named_without_the_keys(
    monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings], variable: str, value: str
) -> None:
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", LOCKS)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        settings()
    text = str(info.value)
    assert SECRET not in text and "keys" in text.lower()
    assert SECRET not in repr(info.value)


def test_cli_token_and_redis_passwords_stay_out_of_setting_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMPAIGNS_TOKEN", SECRET)
    monkeypatch.setenv("CAMPAIGNS_TIMEOUT_S", "soon")
    with pytest.raises(ValidationError) as info:
        CliSettings()
    assert SECRET not in str(info.value) and "timeout_s" in str(info.value)
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", f'["redis://:{SECRET}@127.0.0.1:1/0"')
    with pytest.raises(SettingsError) as unparsable:  # not JSON: pydantic-settings' own error
        ScraperSettings()
    assert SECRET not in str(unparsable.value) and "lock_redis_urls" in str(unparsable.value)
    monkeypatch.setenv("SCRAPER_LOCK_REDIS_URLS", f'["redis://:{SECRET}@127.0.0.1:1/0", 5]')
    with pytest.raises(ValidationError) as info:
        ScraperSettings()
    assert SECRET not in str(info.value) and "lock_redis_urls" in str(info.value)


@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("gateway", "GATEWAY_API_KEYS"),
        ("scheduler_svc", "SCHEDULER_API_KEYS"),
        ("scraper_svc", "SCRAPER_METRICS_KEYS"),
        ("campaign_common.cli", "GATEWAY_API_KEYS"),  # `campaigns up`
    ],
)
def test_process_with_a_malformed_key_setting_exits_without_printing_it(
    module: str, variable: str
) -> None:
    env = {**os.environ, "SCRAPER_LOCK_REDIS_URLS": LOCKS, variable: MALFORMED[0]}
    args = [sys.executable, "-m", module, *(["up"] if module.endswith("cli") else [])]
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, timeout=60, check=False)
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode != 0 and variable.split("_", 1)[1].lower() in output.lower()
    assert SECRET not in output
