"""Run path benchmark: what every part shares (constants, CPU accounting, a result)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import redis

from bench.machine import cpu_model
from campaigns.v1 import events_pb2
from tests.support import (
    descendants,
)

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
ARQ_PEER = ROOT / "bench" / "arq_peer.py"
PAGE = (
    "<!doctype html><html><head><title>Bench product</title></head><body>"
    "<nav><a href='/a'>A</a> <a href='/b'>B</a></nav><h1>Bench product</h1>"
    "<p class='price'>19.99</p><p class='desc'>" + "A product description. " * 40 + "</p>"
    "</body></html>"
)
# Ours with the same concurrency as arq's max_jobs; the per-host politeness limit is raised to
# it because every run fetches the same local host (the defaults, 2 per host, are for real sites).
SCRAPER_SETTINGS = {
    "SCRAPER_LOG_LEVEL": "WARNING",
    "SCRAPER_CONCURRENCY": "50",
    "SCRAPER_READ_BATCH": "50",
    "SCRAPER_PER_HOST_CONCURRENCY": "50",
    "SCRAPER_PROCESSES": "1",  # one worker process per command unless a variant says more
}
OWN_COMMANDS = {b"info", b"config", b"client", b"hello"}
MACHINE = "whole machine"
WINDOW = "window"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FINALS = (
    events_pb2.RunSucceeded,
    events_pb2.RunFailed,
    events_pb2.RunSkipped,
    events_pb2.RunDeadLettered,
)


def cpu_ms(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def machine_busy_ms() -> float:
    """CPU time every core of the machine spent busy (not idle or waiting), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) * 1000 / CLK_TCK


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU ms of each process with its live child processes (a service that runs several
    workers), and of the whole machine under ``MACHINE``."""
    stamp = {MACHINE: machine_busy_ms(), WINDOW: time.monotonic() * 1000}
    return {
        k: cpu_ms(pid) + sum(cpu_ms(child) for child in descendants(pid)) for k, pid in pids.items()
    } | stamp


def settle(pids: dict[str, int], quiet_ms: float = 10.0, limit_s: float = 10.0) -> None:
    """Wait until the processes together use less than ``quiet_ms`` CPU per 0.25 s."""
    deadline = time.monotonic() + limit_s
    before = sum(cpu_ms(pid) for pid in pids.values())
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = sum(cpu_ms(pid) for pid in pids.values())
        if now - before < quiet_ms:
            return
        before = now


@dataclass
class Result:
    name: str
    runs: int
    ok: int
    seconds: float  # due instant -> last finish
    last_start_s: float  # due instant -> last start
    cpu_ms: dict[str, float]  # per process, whole measured window
    state_cmds: Counter[str]
    lock_cmds: list[int] = field(default_factory=list)
    note: str = ""
    page_cpu_ms: float = 0.0
    attempts: int = 1
    lock_split: Counter[str] = field(default_factory=Counter)
    state_reads: int = 0
    lock_reads: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.machine_ms = self.cpu_ms.pop(MACHINE, 0.0)
        self.window_ms = self.cpu_ms.pop(WINDOW, 0.0)

    @property
    def other_ms(self) -> float:
        """Busy CPU of the machine in the window that none of the measured processes used."""
        return max(0.0, self.machine_ms - sum(self.cpu_ms.values()) - self.page_cpu_ms)

    @property
    def other_share(self) -> float:
        """``other_ms`` as a share of one core over the window."""
        return self.other_ms / self.window_ms if self.window_ms else 0.0

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds > 0 else 0.0

    def per_run(self, value: float) -> float:
        return value / self.runs


def machine() -> str:
    cpu = cpu_model()
    peers = (
        subprocess.run(
            [str(PEERS_PYTHON), "-c", "import arq, redis; print(arq.VERSION, redis.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if PEERS_PYTHON.exists()
        else []
    )
    load = os.getloadavg()
    return (
        f"cores {os.cpu_count()}, {cpu}, Python {platform.python_version()}, "
        f"redis-py {redis.__version__}; arq {' on redis-py '.join(peers) or 'missing'}; "
        f"load average before {load[0]:.2f}"
    )


class Probe:
    """One connection to one server for the bench's own calls, counted to be taken out."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.client.ping()  # connected before the counters are reset
        self.sent: Counter[str] = Counter()

    def reset(self) -> None:
        self.client.config_resetstat()
        self.sent = Counter()

    def xlen(self, stream: str) -> int:
        self.sent["xlen"] += 1
        return int(self.client.xlen(stream))

    def zcard(self, key: str) -> int:
        self.sent["zcard"] += 1
        return int(self.client.zcard(key))

    def stats(self) -> tuple[Counter[str], int]:
        """Commands by name and socket reads (about one per round trip) since `reset`."""
        info = self.client.info("commandstats")  # not counted in its own answer
        commands = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})
        commands -= self.sent
        commands.pop("config|resetstat", None)
        self.sent["info"] += 2
        reads = int(self.client.info("stats")["total_reads_processed"])
        return commands, reads - sum(self.sent.values())

    def close(self) -> None:
        self.client.close()


# -- MONITOR: top-level commands vs calls inside scripts ----------------------------------------


class Monitor:
    """Counts the commands a server runs, split into top-level ones and those inside scripts."""

    def __init__(self, url: str, enabled: bool) -> None:
        self.url, self.enabled = url, enabled
        self.split: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Monitor:
        if self.enabled:
            host, port = self.url.removeprefix("redis://").split("/")[0].split(":")
            self._sock = socket.create_connection((host, int(port)))
            self._sock.sendall(b"MONITOR\r\n")
            self._sock.settimeout(0.2)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                if not line.startswith(b"+") or b"] " not in line:
                    continue
                command = line.split(b"] ", 1)[1].split(b" ", 1)[0].strip(b'"').lower()
                if command in OWN_COMMANDS:
                    continue  # the bench's INFO/CONFIG and every connection's CLIENT SETINFO
                kind = "in scripts" if b" lua] " in line else "top-level"
                self.split[kind] += 1

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            time.sleep(0.3)
            self._stop.set()
            self._thread.join(timeout=5)
            self._sock.close()

    def result(self, probe: Probe) -> Counter[str]:
        """The split with the bench's own polling taken out (empty when not enabled)."""
        if self.split:
            self.split["top-level"] -= sum(probe.sent.values()) - probe.sent["info"]
        return self.split


# -- report ------------------------------------------------------------------------------------
