"""Fire-to-SUCCEEDED latency of the local stack (what `make run` starts), through REST only.

Starts `python -m campaign_common.cli up` on free ports, serves one page on 127.0.0.1,
creates a schedule firing every second, collects the first N finished runs and prints the
distribution of finishedAt - scheduledFor (nominal fire time to SUCCEEDED) and of the
scheduler's fire lag. Stops the stack afterwards.

    .venv/bin/python bench/fire_latency.py [runs]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import free_port
from tests.support import PageServer

PAGE = "<html><h1>Bench</h1><p class='price'>1.00</p></html>"


KEY = "bench-fire-latency-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def _wait_ready(base: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("stack not ready")


def _collect(base: str, schedule_id: str, runs: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + runs * 2 + 30
    while time.monotonic() < deadline:
        page = httpx.get(
            f"{base}/v1/runs",
            params={"scheduleId": schedule_id, "pageSize": 500},
            headers=AUTH,
            timeout=5,
        ).json()["runs"]
        done = [r for r in page if r["state"] in ("SUCCEEDED", "FAILED")]
        if len(done) >= runs:
            return done[:runs]
        time.sleep(0.5)
    raise SystemExit("not enough runs finished")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    gateway_port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(gateway_port), "SCHEDULER_PORT": str(free_port())}
    env["GATEWAY_API_KEYS"] = KEY
    env["SCHEDULER_METRICS_PORT"] = str(free_port())
    env |= {"SCHEDULER_LOG_LEVEL": "WARNING", "SCRAPER_LOG_LEVEL": "WARNING"}
    env |= {"GATEWAY_LOG_LEVEL": "WARNING", "GATEWAY_ACCESS_LOG": "false"}
    stack = subprocess.Popen(
        [sys.executable, "-m", "campaign_common.cli", "up"], env=env, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        with PageServer({"/": (200, PAGE)}) as pages:
            _wait_ready(base)
            body = {
                "name": "bench",
                "schedule": {"intervalSeconds": 1},
                "scrape": {"urls": [pages.url("/")], "selectors": {"t": "h1", "p": ".price"}},
            }
            created = httpx.post(
                f"{base}/campaign/addScheduledCampaign", json=body, headers=AUTH, timeout=5
            )
            schedule_id = created.json()["scheduleId"]
            done = _collect(base, schedule_id, runs)
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)
    latency = sorted(_ms(r["finishedAt"]) - _ms(r["scheduledFor"]) for r in done)
    start_lag = sorted(_ms(r["startedAt"]) - _ms(r["scheduledFor"]) for r in done)
    ok = sum(r["state"] == "SUCCEEDED" for r in done)
    summary = {
        "runs": len(done),
        "succeeded": ok,
        "fire_to_succeeded_ms": {
            "p50": round(statistics.median(latency), 1),
            "p95": round(latency[int(len(latency) * 0.95) - 1], 1),
            "max": round(latency[-1], 1),
        },
        "fire_to_started_ms_p50": round(statistics.median(start_lag), 1),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
