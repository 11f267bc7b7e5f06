"""The alert rules Prometheus loads (deploy/prometheus/alerts.yml), checked and unit-tested by
promtool: every alert has a test that makes it fire (tests/alert_rules/alerts_test.yml).

promtool ships with Debian's ``prometheus`` package (``.ci/run`` installs it); without it
these tests are skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "alert_rules" / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (install Debian's `prometheus` package: apt-get install -y "
    "prometheus)",
)


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@needs_promtool
def test_the_rules_file_is_valid() -> None:
    assert "SUCCESS" in _promtool("check", "rules", str(RULES))


SECRET_FILE = "/run/secrets/metrics_key"  # where compose mounts the metrics key


@needs_promtool
def test_the_prometheus_config_loads_the_rules_and_is_valid(tmp_path: Path) -> None:
    # promtool checks that the key file exists: the same config, with the file here.
    key = tmp_path / "metrics_key"
    key.write_text("metrics-key\n")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert config.count(SECRET_FILE) == 3, "every job sends the metrics key"
    (tmp_path / "prometheus.yml").write_text(config.replace(SECRET_FILE, str(key)))
    shutil.copy(RULES, tmp_path / "alerts.yml")
    out = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert "alerts.yml" in out and "SUCCESS" in out


@needs_promtool
def test_every_alert_passes_its_unit_tests() -> None:
    assert "SUCCESS" in _promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_has_a_unit_test_that_makes_it_fire() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tests = RULE_TESTS.read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    assert alerts, "no alerts found"
    assert alerts - firing == set(), "alerts without a test that makes them fire"


def test_the_alerts_use_only_metrics_the_services_export() -> None:
    from prometheus_client import REGISTRY

    import campaign_common.observability.redis_metrics
    import gateway.metrics
    import scheduler_svc.metrics
    import scraper_svc.metrics

    assert gateway.metrics.REQUESTS and scheduler_svc.metrics.FIRES and scraper_svc.metrics.RUNS
    assert campaign_common.observability.redis_metrics.REDIS_ERRORS
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("campaigns_")
        for suffix in suffixes
    }
    used = set(re.findall(r"\b(campaigns_[a-z_]+)", RULES.read_text()))
    assert len(used) > 10, used
    assert used - exported == set(), "alert rules use metrics no service exports"
