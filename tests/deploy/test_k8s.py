"""The Kubernetes manifests (deploy/k8s), checked offline: every object against the API schemas
of a pinned Kubernetes release in strict mode (`kubernetes-validate`, no network), then what a
schema cannot see: the variables each service is given are settings it reads and load, every
ConfigMap/Secret key referenced exists, probes and scrapes hit ports the container declares and
the service listens on, selectors select, grace periods cover each service's shutdown.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from campaign_common.settings import TelemetrySettings
from gateway.config import GatewaySettings
from gateway.server import STOP_MARGIN_S
from scheduler_svc.config import SchedulerSettings
from scraper_svc.config import ScraperSettings
from scraper_svc.server import CANCEL_WAIT_S
from tests.support import ROOT

MANIFESTS = ROOT / "deploy" / "k8s"
# The oldest release the manifests must run on (native gRPC probes, the preStop sleep action).
KUBERNETES_VERSION = "1.33"
# Our containers, by the module their command runs.
SETTINGS: dict[str, type[BaseSettings]] = {
    "scheduler_svc": SchedulerSettings,
    "scraper_svc": ScraperSettings,
    "gateway": GatewaySettings,
}
# Closing clients, stopping the metrics thread: beyond the bounded steps each shutdown sums.
CLOSE_MARGIN_S = 5.0
Doc = dict[str, Any]


def _load() -> list[Doc]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = _load()


def _of(kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in DOCS if doc["kind"] == kind}


def _workloads() -> dict[str, Doc]:
    return {**_of("Deployment"), **_of("StatefulSet")}


def _containers() -> Iterator[tuple[str, Doc, Doc]]:
    for name, workload in _workloads().items():
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield name, pod, container


def _module(container: Doc) -> str | None:
    command = container.get("command", [])
    return command[2] if command[:2] == ["python", "-m"] else None


def _ours() -> dict[str, tuple[Doc, Doc]]:
    """module -> (pod spec, container) of each of our services."""
    found = {_module(c): (pod, c) for _, pod, c in _containers() if _module(c)}
    assert sorted(found) == sorted(SETTINGS), "one workload per service"
    return {str(module): value for module, value in found.items()}


def _secret_values() -> dict[str, dict[str, str]]:
    return {name: {**doc.get("stringData", {})} for name, doc in _of("Secret").items()}


def _env(container: Doc) -> dict[str, str]:
    """The container's environment as the kubelet would set it (ConfigMaps, Secrets resolved)."""
    maps = {name: doc.get("data", {}) for name, doc in _of("ConfigMap").items()}
    secrets = _secret_values()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[var["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        else:
            env[var["name"]] = var.get("value", "")
    return env


def _settings(module: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in _env(_ours()[module][1]).items():
        monkeypatch.setenv(name, value)
    return SETTINGS[module]()


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def _port_names(container: Doc) -> dict[str | int, int]:
    ports = container.get("ports", [])
    return {p["containerPort"]: p["containerPort"] for p in ports} | {
        p["name"]: p["containerPort"] for p in ports if "name" in p
    }


def test_every_manifest_is_valid_kubernetes_in_strict_mode() -> None:
    assert len(DOCS) > 10
    for doc in DOCS:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(_of("Deployment")["campaigns-gateway"])
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_and_the_project_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    [image] = kustomization["images"]
    assert image["newTag"] == version
    for _, container in _ours().values():
        assert container["image"] == f"{image['name']}:{version}"


@pytest.mark.parametrize("module", sorted(SETTINGS))
def test_every_variable_set_is_a_setting_of_its_service_and_the_settings_load(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = SETTINGS[module]
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    otel_names = {
        alias
        for field in TelemetrySettings.model_fields.values()
        for alias in re.findall(r"OTEL_\w+", repr(field.validation_alias))
    }
    for name in _env(_ours()[module][1]):
        if name.startswith("OTEL_"):
            assert name in otel_names, f"{module}: {name} is not read by TelemetrySettings"
        else:
            assert name.startswith(prefix), f"{module}: {name} is not a {prefix}* setting"
            field = name.removeprefix(prefix).lower()
            assert field in settings_class.model_fields, f"{module}: {name} names no setting"
    _settings(module, monkeypatch)  # valid as set
    TelemetrySettings()


def test_every_config_map_and_secret_key_referenced_exists() -> None:
    maps = {name: doc.get("data", {}) for name, doc in _of("ConfigMap").items()}
    secrets = _secret_values()
    for workload, _, container in _containers():
        where = f"{workload}/{container['name']}"
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in maps, f"{where}: no such ConfigMap"
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            for kind, known in (("secretKeyRef", secrets), ("configMapKeyRef", maps)):
                if kind in ref:
                    assert ref[kind]["name"] in known, f"{where}: {ref[kind]['name']} missing"
                    assert ref[kind]["key"] in known[ref[kind]["name"]], f"{where}: {ref}"
        declared = {var["name"] for var in container.get("env", [])}
        for text in container.get("command", []) + container.get("args", []):
            for name in re.findall(r"\$\((\w+)\)", text):
                assert name in declared, f"{where}: $({name}) is not in its env"


def test_probes_and_scrapes_point_at_ports_the_container_declares() -> None:
    for workload, _, container in _containers():
        ports = _port_names(container)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            handler = probe.get("httpGet") or probe.get("grpc") or probe.get("tcpSocket")
            if handler is not None:
                assert handler["port"] in ports, f"{workload} {kind}: port {handler['port']}"
            else:
                assert "exec" in probe
        assert "readinessProbe" in container and "livenessProbe" in container, workload
    for workload in _workloads().values():
        notes = workload["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            [container] = workload["spec"]["template"]["spec"]["containers"]
            assert int(notes["prometheus.io/port"]) in _port_names(container).values()


def test_each_service_listens_where_its_ports_and_probes_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = _ours()
    scheduler = _settings("scheduler_svc", monkeypatch)
    scraper = _settings("scraper_svc", monkeypatch)
    gateway = _settings("gateway", monkeypatch)
    assert scheduler.host == scraper.metrics_host == gateway.host == "0.0.0.0"
    listens = {
        "scheduler_svc": {"grpc": scheduler.port, "metrics": scheduler.metrics_port},
        "scraper_svc": {"metrics": scraper.metrics_port},
        "gateway": {"http": gateway.port},
    }
    for module, ports in listens.items():
        assert _port_names(ours[module][1]) == {**ports, **{p: p for p in ports.values()}}
    sched = ours["scheduler_svc"][1]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sched[kind]["grpc"]["port"] == scheduler.port
    scrape = ours["scraper_svc"][1]
    assert {scrape[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")} == {
        "/healthz"
    }
    gate = ours["gateway"][1]
    assert gate["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gate["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # /readyz asks the scheduler under grpc_timeout_s; the probe must wait that long.
    assert gate["readinessProbe"]["timeoutSeconds"] > gateway.grpc_timeout_s
    host, port = gateway.scheduler_target.rsplit(":", 1)
    service = _of("Service")[host]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    for url in (gateway.ui_scheduler_metrics_url, gateway.ui_scraper_metrics_url):
        parts = urlsplit(url)
        assert parts.port in [p["port"] for p in _of("Service")[parts.hostname]["spec"]["ports"]]


def test_selectors_match_labels_and_every_reference_names_an_object() -> None:
    workloads = _workloads()
    templates = {name: w["spec"]["template"] for name, w in workloads.items()}
    for name, workload in workloads.items():
        assert _selects(
            workload["spec"]["selector"]["matchLabels"], templates[name]["metadata"]["labels"]
        )
        if workload["kind"] == "StatefulSet":
            assert workload["spec"]["serviceName"] in _of("Service")
    for name, service in _of("Service").items():
        chosen = [
            w
            for w, t in templates.items()
            if _selects(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert len(chosen) == 1, f"Service {name} selects {chosen}"
        [container] = templates[chosen[0]]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in _port_names(container), f"Service {name}: {port}"
    for name, budget in _of("PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(_selects(selector, t["metadata"]["labels"]) for t in templates.values()), name
    for name, scaler in _of("HorizontalPodAutoscaler").items():
        target = scaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in _of("Deployment"), name
        assert scaler["spec"]["minReplicas"] >= 2


def test_termination_grace_covers_each_service_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _ours()
    scheduler = _settings("scheduler_svc", monkeypatch)
    scraper = _settings("scraper_svc", monkeypatch)
    gateway = _settings("gateway", monkeypatch)
    # Each is the sum of the bounded steps of the service's `stop` (see its server module).
    needs_s = {
        "scheduler_svc": 3 * scheduler.shutdown_grace_s + scheduler.log_block_ms / 1000 + 2,
        "scraper_svc": scraper.shutdown_grace_s
        + scraper.block_ms / 1000
        + CANCEL_WAIT_S
        + 2 * scraper.redis_timeout_s,
        "gateway": gateway.shutdown_grace_s + STOP_MARGIN_S,
    }
    for module, (pod, container) in ours.items():
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        sleep_s = pre_stop.get("sleep", {}).get("seconds", 0)
        need_s = needs_s[module] + sleep_s + CLOSE_MARGIN_S
        assert pod["terminationGracePeriodSeconds"] >= need_s, f"{module} needs {need_s} s"


def test_every_container_runs_locked_down_with_resources() -> None:
    for workload, pod, container in _containers():
        where = f"{workload}/{container['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        # Service links would add e.g. SCHEDULER_PORT=tcp://... to a pod beside a Service
        # named "scheduler", overriding a real setting.
        assert pod["enableServiceLinks"] is False, where
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][bound].keys(), where


def test_replicas_lock_masters_and_the_secret_template_fit_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _of("Deployment")["campaigns-scheduler"]["spec"]["replicas"] >= 2
    masters = {
        name: s for name, s in _of("StatefulSet").items() if name.startswith("campaigns-lock-")
    }
    assert len(masters) == 3 and all(s["spec"]["replicas"] == 1 for s in masters.values())
    [secret] = _secret_values().values()
    password = secret["redis-password"]
    for key, value in secret.items():
        assert value == "" or "CHANGE-ME" in value, f"secret {key}: not a marked placeholder"
    scraper = _settings("scraper_svc", monkeypatch)
    lock_hosts = set()
    for url in [*scraper.lock_redis_urls, scraper.state_redis_url]:
        parts = urlsplit(url)
        assert parts.password == password, f"{parts.hostname}: not the Redis servers' password"
        assert parts.hostname in _of("Service")
        lock_hosts.add(parts.hostname)
    assert set(masters) <= lock_hosts
    keys = secret["scheduler-api-keys"].split(",")
    assert secret["scheduler-token"] in keys, "the gateway's token must be a scheduler key"


def test_the_kubernetes_page_lists_every_manifest_and_grace_period() -> None:
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    for path in MANIFESTS.glob("*.yaml"):
        assert f"`{path.name}`" in page, f"docs/kubernetes.md does not describe {path.name}"
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.count("|") > 5}
    for module, (pod, _) in _ours().items():
        service = module.removesuffix("_svc")
        grace_s = pod["terminationGracePeriodSeconds"]
        assert rows[service].rstrip(" |").endswith(f"{grace_s} s"), f"{service}: {grace_s} s"
