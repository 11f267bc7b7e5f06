"""The metrics endpoint over real HTTP: Prometheus exposition and the /healthz probe."""

from __future__ import annotations

import threading

import httpx
from prometheus_client import Counter

from campaign_common.localstack.embedded import free_port
from campaign_common.observability.metrics import MetricsEndpoint

PROBE = Counter("campaigns_test_endpoint_probe_total", "A counter the endpoint test exposes")


async def test_healthz_follows_the_health_check_and_metrics_are_served() -> None:
    problems: list[str] = []
    endpoint = MetricsEndpoint("127.0.0.1", free_port(), lambda: list(problems))
    endpoint.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{endpoint.port}") as http:
            healthy = await http.get("/healthz")
            assert (healthy.status_code, healthy.text) == (200, "ok\n")
            problems.append("background loop retry-pump is down")
            down = await http.get("/healthz")
            assert down.status_code == 503
            assert down.text == "background loop retry-pump is down\n"
            problems.clear()
            assert (await http.get("/healthz")).status_code == 200
            PROBE.inc()
            exposed = await http.get("/metrics")
            assert exposed.status_code == 200
            assert "campaigns_test_endpoint_probe_total 1.0" in exposed.text
    finally:
        endpoint.stop()


def test_without_a_health_check_healthz_answers_200_and_stop_is_prompt() -> None:
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    endpoint.start()
    assert httpx.get(f"http://127.0.0.1:{endpoint.port}/healthz", timeout=5).status_code == 200
    stopped = threading.Thread(target=endpoint.stop)
    stopped.start()
    stopped.join(timeout=2)
    assert not stopped.is_alive()
