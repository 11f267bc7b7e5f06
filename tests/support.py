"""Test support: real service processes and polling under deadlines (never bare sleeps)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from campaign_common.embedded import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval, not synchronisation


class ServiceProcess:
    """``python -m <module>`` as a real child process with its own environment and log file."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = {**os.environ, **env}
        fd, path = tempfile.mkstemp(prefix=f"{module}-", suffix=".log")
        os.close(fd)
        self._log_path = Path(path)
        self._log = self._log_path.open("wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (killed after ``timeout_s``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def logs(self) -> str:
        return self._log_path.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self._log.close()
        self._log_path.unlink(missing_ok=True)


async def grpc_serving(target: str) -> bool:
    """True once the gRPC health service at ``target`` answers SERVING."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def start_scheduler_process(state_url: str, **extra: str) -> tuple[ServiceProcess, str]:
    """A scheduler as a real process on a free port, once it reports SERVING."""
    port = free_port()
    env = {
        "SCHEDULER_STATE_REDIS_URL": state_url,
        "SCHEDULER_PORT": str(port),
        "SCHEDULER_LOG_BLOCK_MS": "200",
        **extra,
    }
    process = ServiceProcess("scheduler_svc", env).start()
    target = f"127.0.0.1:{port}"

    async def ready() -> bool:
        if process.proc is not None and process.proc.poll() is not None:
            raise AssertionError(f"scheduler exited early:\n{process.logs()}")
        return await grpc_serving(target)

    await eventually(ready, timeout_s=30, what="scheduler SERVING")
    return process, target
