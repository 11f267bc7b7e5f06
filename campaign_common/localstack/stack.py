"""The local stack behind `make run`: embedded Redis servers plus the three services.

Starts the state server and three lock masters (see `embedded`), then `python -m
scheduler_svc`, `python -m scraper_svc` and `python -m gateway` as child processes wired to
them, waits until each is ready, prints the URLs, the API key and an example request, and on Ctrl-C,
SIGTERM or the death of any child stops everything it started: children first (SIGTERM, then
SIGKILL after the grace period), servers last. Every child also gets the parent-death signal,
so even a SIGKILLed launcher leaves nothing behind.

The API is never open, even on loopback: the gateway and the scheduler's gRPC API take one
local API key, the first of ``GATEWAY_API_KEYS`` if the caller set it, else a random one made
for this run (printed in the banner, with a curl that uses it; the dashboard's login takes it,
and the CLI reads it from ``CAMPAIGNS_TOKEN``).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaign_common.api_keys import KeyList
from campaign_common.errors import CampaignCommonError
from campaign_common.localstack.embedded import EmbeddedStack, die_with_parent


class StackSettings(BaseSettings):
    """Ports use the same variables as the services themselves (SCHEDULER_PORT, ...)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    # Keys the caller gave the gateway; empty: the stack makes one.
    api_keys: KeyList = Field([], validation_alias=AliasChoices("GATEWAY_API_KEYS"))
    scheduler_port: int = Field(50051, validation_alias=AliasChoices("SCHEDULER_PORT"))
    gateway_port: int = Field(8080, validation_alias=AliasChoices("GATEWAY_PORT"))
    # Set to keep schedules across restarts of the stack (append-only files there).
    data_dir: Path | None = Field(None, validation_alias=AliasChoices("STACK_DATA_DIR"))
    redis_binary: str | None = Field(None, validation_alias=AliasChoices("STACK_REDIS_BINARY"))
    scheduler_metrics_port: int = Field(
        9101, validation_alias=AliasChoices("SCHEDULER_METRICS_PORT")
    )
    scraper_metrics_port: int = Field(9102, validation_alias=AliasChoices("SCRAPER_METRICS_PORT"))
    ready_timeout_s: float = Field(60.0, validation_alias=AliasChoices("STACK_READY_TIMEOUT_S"))
    stop_grace_s: float = Field(10.0, validation_alias=AliasChoices("STACK_STOP_GRACE_S"))


class StackError(CampaignCommonError, RuntimeError):
    """The stack could not start; the message says which part and why."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def _service_env(settings: StackSettings, servers: EmbeddedStack) -> dict[str, str]:
    return {
        "SCHEDULER_STATE_REDIS_URL": servers.state.url,
        "SCHEDULER_PORT": str(settings.scheduler_port),
        "SCHEDULER_METRICS_PORT": str(settings.scheduler_metrics_port),
        "SCRAPER_STATE_REDIS_URL": servers.state.url,
        "SCRAPER_LOCK_REDIS_URLS": json.dumps(servers.lock_urls),
        "SCRAPER_METRICS_PORT": str(settings.scraper_metrics_port),
        # The local stack may scrape pages served on this machine (documented in README).
        "SCRAPER_ALLOW_PRIVATE_TARGETS": "true",
        "GATEWAY_PORT": str(settings.gateway_port),
        "GATEWAY_SCHEDULER_TARGET": f"127.0.0.1:{settings.scheduler_port}",
        # The dashboard's health page reads the services' gauges.
        "GATEWAY_UI_SCHEDULER_METRICS_URL": (
            f"http://127.0.0.1:{settings.scheduler_metrics_port}/metrics"
        ),
        "GATEWAY_UI_SCRAPER_METRICS_URL": f"http://127.0.0.1:{settings.scraper_metrics_port}/metrics",
    }


def local_key(settings: StackSettings) -> tuple[str, bool]:
    """The stack's API key and whether it was made here (True) or given (False)."""
    if settings.api_keys:
        return settings.api_keys[0].get_secret_value(), False
    return secrets.token_urlsafe(24), True


def _key_env(key: str, environ: dict[str, str]) -> dict[str, str]:
    """The key for the gateway's API, the scheduler's gRPC API and the gateway's calls to it.
    A variable the caller set wins (``GATEWAY_API_KEYS`` given: its first key is ``key``); one
    set blank does not: nothing is ever left open."""
    wanted = {
        "GATEWAY_API_KEYS": json.dumps([key]),
        "SCHEDULER_API_KEYS": json.dumps([key]),
        "GATEWAY_SCHEDULER_TOKEN": key,
    }
    return {name: value for name, value in wanted.items() if not environ.get(name, "").strip()}


def _terminal_logs() -> dict[str, str]:
    """On a terminal the services log in the human format (JSON lines otherwise); a
    ``*_LOG_JSON`` variable the caller set still wins."""
    if not sys.stderr.isatty():
        return {}
    return {f"{prefix}_LOG_JSON": "false" for prefix in ("SCHEDULER", "SCRAPER", "GATEWAY")}


def _spawn(name: str, module: str, env: dict[str, str]) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # single-threaded at this point
    )
    return Child(name, proc)


def _scheduler_ready(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _gateway_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class LocalStack:
    def __init__(self, settings: StackSettings, environ: dict[str, str]) -> None:
        self.settings = settings
        self._environ = environ
        binary = Path(settings.redis_binary) if settings.redis_binary else None
        self.servers = EmbeddedStack(lock_masters=3, binary=binary, data_dir=settings.data_dir)
        self.children: list[Child] = []
        self._stopping = False
        self.api_key, self.key_made_here = local_key(settings)

    def start(self) -> None:
        self.servers.start()
        env = {
            **_terminal_logs(),
            **self._environ,
            **_key_env(self.api_key, self._environ),
            **_service_env(self.settings, self.servers),
        }
        # Every child is forked before the first gRPC call: the readiness check starts gRPC's
        # threads, and a fork (preexec_fn runs Python in the child) beside them can abort the
        # child in gRPC's fork handler. The scraper and the gateway wait for the scheduler.
        self.children.append(_spawn("scheduler", "scheduler_svc", env))
        self.children.append(_spawn("scraper", "scraper_svc", env))
        self.children.append(_spawn("gateway", "gateway", env))
        self._wait("scheduler", lambda: _scheduler_ready(self.settings.scheduler_port))
        self._wait("gateway", lambda: _gateway_ready(self.settings.gateway_port))

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while not ready():
            dead = self.dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited with code {dead.proc.returncode} at start")
            if self._stopping:
                raise StackError("interrupted while starting")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {self.settings.ready_timeout_s}s")
            time.sleep(0.1)  # polling a port that is coming up

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run_until_stopped(self) -> int:
        while not self._stopping:
            dead = self.dead_child()
            if dead is not None:
                print(f"{dead.name} exited with code {dead.proc.returncode}; stopping", flush=True)
                return 1
            time.sleep(0.2)  # supervising: check children a few times a second
        return 0

    def stop(self) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_grace_s
        for child in self.children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(timeout=5)
        self.servers.stop()

    def banner(self) -> str:
        gateway = f"http://127.0.0.1:{self.settings.gateway_port}"
        scheduler = f"127.0.0.1:{self.settings.scheduler_port}"
        example = json.dumps(
            {
                "campaignId": "spring-leads",
                "name": "Spring leads",
                "schedule": {"intervalSeconds": 30},
                "scrape": {"urls": ["http://127.0.0.1:8000/"], "selectors": {"title": "h1"}},
            }
        )
        key = self.api_key if self.key_made_here else "<the first of GATEWAY_API_KEYS>"
        made = "made for this run; " if self.key_made_here else ""
        return "\n".join(
            [
                "campaign platform is up",
                f"  API key        {key}",
                f"                 ({made}REST, dashboard login, gRPC: CAMPAIGNS_TOKEN)",
                f"  REST gateway   {gateway}   (docs: {gateway}/docs)",
                f"  dashboard      {gateway}/ui   (log in with the API key)",
                f"  gRPC scheduler {scheduler}",
                f"  metrics        {gateway}/metrics  "
                f"http://127.0.0.1:{self.settings.scheduler_metrics_port}/metrics  "
                f"http://127.0.0.1:{self.settings.scraper_metrics_port}/metrics",
                f"  state Redis    {self.servers.state.url}",
                f"  lock masters   {' '.join(self.servers.lock_urls)}",
                "try:",
                f"  export KEY='{key}' CAMPAIGNS_TOKEN='{key}'",
                f"  curl -s -X POST {gateway}/campaign/addScheduledCampaign \\",
                '       -H "authorization: Bearer $KEY" -H "content-type: application/json" \\',
                f"       -d '{example}'",
                f'  curl -s -H "authorization: Bearer $KEY" {gateway}/v1/runs',
                f"  .venv/bin/campaigns schedules list --target {scheduler}",
                "Ctrl-C stops everything.",
            ]
        )


def run_stack(settings: StackSettings, environ: dict[str, str]) -> int:
    stack = LocalStack(settings, environ)
    signal.signal(signal.SIGTERM, stack.request_stop)
    signal.signal(signal.SIGINT, stack.request_stop)
    try:
        stack.start()
        print(stack.banner(), flush=True)
        return stack.run_until_stopped()
    except StackError as exc:
        print(f"local stack failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("local stack stopped", flush=True)
