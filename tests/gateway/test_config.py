"""GatewaySettings: defaults and the GATEWAY_* environment."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings


def test_settings_defaults() -> None:
    settings = GatewaySettings(_env_prefix="GATEWAY_TEST_UNSET_")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.scheduler_target == "127.0.0.1:50051"
    assert settings.api_keys == [] and settings.grpc_timeout_s > 0


@pytest.mark.parametrize("raw", ['["k1", "k2"]', "k1, k2", "k1,k2,"])
def test_settings_api_keys_from_json_or_comma_list(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", raw)
    keys = GatewaySettings().api_keys
    assert [k.get_secret_value() for k in keys] == ["k1", "k2"]


def test_settings_api_keys_never_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", "very-secret")
    assert "very-secret" not in repr(GatewaySettings())


def test_settings_read_port_and_target_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    monkeypatch.setenv("GATEWAY_SCHEDULER_TARGET", "10.0.0.1:50051")
    settings = GatewaySettings()
    assert (settings.port, settings.scheduler_target) == (9999, "10.0.0.1:50051")
