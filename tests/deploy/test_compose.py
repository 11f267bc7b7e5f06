"""The production-shaped stack's files, checked without Docker: docker-compose.yml against the
Compose Specification's JSON schema (tests/deploy/compose-spec.json, from
github.com/compose-spec/compose-spec, Apache-2.0) and against the settings the code reads;
the Prometheus and Grafana provisioning it mounts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from campaign_common.settings import TelemetrySettings
from gateway.config import GatewaySettings
from scheduler_svc.config import SchedulerSettings
from scraper_svc.config import ScraperSettings
from tests.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
SERVICES: dict[str, tuple[str, type[BaseSettings]]] = {
    "scheduler": ("SCHEDULER_", SchedulerSettings),
    "scraper": ("SCRAPER_", ScraperSettings),
    "gateway": ("GATEWAY_", GatewaySettings),
}
REDIS = ("state", "lock0", "lock1", "lock2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _env(compose: dict[str, Any], service: str) -> dict[str, str]:
    """The service's environment with ``${VAR:?...}``/``${VAR:-default}`` filled in."""
    env = compose["services"][service]["environment"]

    def fill(value: object) -> str:
        return re.sub(r"\$\{(\w+):[?-][^}]*\}", lambda m: f"{m.group(1).lower()}-value", str(value))

    return {key: fill(value) for key, value in env.items()}


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"duration {duration!r}: write it in seconds, e.g. 30s"
    return float(match.group(1))


def test_the_compose_file_follows_the_compose_schema(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    validator.validate(compose)
    broken = json.loads(json.dumps(compose))
    broken["services"]["scraper"]["healthchek"] = broken["services"]["scraper"].pop("healthcheck")
    assert not validator.is_valid(broken), "the schema check must catch a misspelt key"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_variable_set_is_one_the_service_reads_and_the_settings_load(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, settings_class = SERVICES[service]
    env = _env(compose, service)
    otel_names = {
        alias
        for field in TelemetrySettings.model_fields.values()
        for alias in re.findall(r"OTEL_\w+", repr(field.validation_alias))
    }
    for name in env:
        if name.startswith("OTEL_"):
            assert name in otel_names, f"{service}: {name} is not read by TelemetrySettings"
        else:
            assert name.startswith(prefix), f"{service}: {name} is not a {prefix}* setting"
            field = name.removeprefix(prefix).lower()
            assert field in settings_class.model_fields, f"{service}: {name} names no setting"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings_class()  # valid as set
    TelemetrySettings()


def test_each_service_has_its_own_trace_name_in_one_namespace(compose: dict[str, Any]) -> None:
    names = {service: _env(compose, service)["OTEL_SERVICE_NAME"] for service in SERVICES}
    assert sorted(names.values()) == sorted(SERVICES)
    for service in SERVICES:
        env = _env(compose, service)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert "service.namespace=campaigns" in env["OTEL_RESOURCE_ATTRIBUTES"]


def test_health_checks_and_scrapes_use_the_ports_the_services_listen_on(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    listens = {
        "scheduler": _env(compose, "scheduler")["SCHEDULER_METRICS_PORT"],
        "scraper": _env(compose, "scraper")["SCRAPER_METRICS_PORT"],
        "gateway": _env(compose, "gateway")["GATEWAY_PORT"],
    }
    for service, port in listens.items():
        check = " ".join(services[service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}" in check, f"{service} health check misses port {port}"
    assert _env(compose, "scraper")["SCRAPER_METRICS_HOST"] == "0.0.0.0"
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: json.dumps(job) for job in prometheus["scrape_configs"]}
    assert (
        f'"scheduler:{_env(compose, "scheduler")["SCHEDULER_METRICS_PORT"]}"'
        in jobs["campaigns-scheduler"]
    )
    assert f'"port": {listens["scraper"]}' in jobs["campaigns-scraper"]
    assert f'"gateway:{listens["gateway"]}"' in jobs["campaigns-gateway"]


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    missing = [name for name, spec in compose["services"].items() if "healthcheck" not in spec]
    assert missing == []


def test_every_redis_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    for name in REDIS:
        spec = compose["services"][name]
        [volume] = spec["volumes"]
        assert volume.split(":")[0] in compose["volumes"] and volume.endswith(":/data")
        assert "--appendonly" in spec["command"]


def test_the_scraper_gets_longer_to_stop_than_its_hand_back_takes(
    compose: dict[str, Any],
) -> None:
    env = _env(compose, "scraper")
    grace_s = float(env.get("SCRAPER_SHUTDOWN_GRACE_S", ScraperSettings.model_fields[
        "shutdown_grace_s"].default))  # fmt: skip
    block_s = ScraperSettings.model_fields["block_ms"].default / 1000
    stop_s = _seconds(compose["services"]["scraper"]["stop_grace_period"])
    assert stop_s > grace_s + block_s + 5  # + the hand-back of its pending entries


@pytest.mark.parametrize(
    ("service", "setting", "variable"),
    [
        ("gateway", "GATEWAY_API_KEYS", "GATEWAY_API_KEYS"),
        ("gateway", "GATEWAY_SCHEDULER_TOKEN", "SCHEDULER_API_KEY"),
        ("gateway", "GATEWAY_METRICS_KEYS", "METRICS_KEY"),
        ("gateway", "GATEWAY_UI_METRICS_TOKEN", "METRICS_KEY"),
        ("scheduler", "SCHEDULER_API_KEYS", "SCHEDULER_API_KEY"),
        ("scheduler", "SCHEDULER_METRICS_KEYS", "METRICS_KEY"),
        ("scraper", "SCRAPER_METRICS_KEYS", "METRICS_KEY"),
    ],
)
def test_every_key_a_service_takes_is_required(
    compose: dict[str, Any], service: str, setting: str, variable: str
) -> None:
    raw = compose["services"][service]["environment"][setting]
    assert re.fullmatch(rf"\$\{{{variable}:\?.+\}}", raw), f"{setting} must be required"


def test_prometheus_sends_the_metrics_key_from_the_secret_compose_mounts(
    compose: dict[str, Any],
) -> None:
    assert compose["secrets"]["metrics_key"] == {"environment": "METRICS_KEY"}
    assert "metrics_key" in compose["services"]["prometheus"]["secrets"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        assert job["authorization"] == {
            "type": "Bearer",
            "credentials_file": "/run/secrets/metrics_key",
        }, job["job_name"]


def test_jaeger_is_a_current_release_with_otlp_and_a_health_check(
    compose: dict[str, Any],
) -> None:
    jaeger = compose["services"]["jaeger"]
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", jaeger["image"])
    assert "13133" in " ".join(jaeger["healthcheck"]["test"])
    assert "16686:16686" in jaeger["ports"]


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for spec in compose["services"].values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"


def test_the_grafana_dashboard_queries_metrics_the_services_export() -> None:
    from prometheus_client import REGISTRY

    import campaign_common.observability.redis_metrics
    import gateway.metrics
    import scheduler_svc.metrics
    import scraper_svc.metrics

    assert gateway.metrics.REQUESTS and scheduler_svc.metrics.FIRES and scraper_svc.metrics.RUNS
    assert campaign_common.observability.redis_metrics.REDIS_ERRORS
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in ("", "_total", "_bucket", "_sum", "_count")
    }
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    for path in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == datasource
                used = set(re.findall(r"\b(campaigns_[a-z_]+)", target["expr"]))
                assert used - exported == set(), f"{panel['title']}: unknown metric"
