"""The state stores' own tests, run again on a real 3-master Redis Cluster.

Every test of the modules below that needs nothing but the ``state_redis`` client is collected
here a second time, with ``state_redis`` a cluster client (`campaign_common.redis_topology`)
on a local cluster (`tests.local_topologies.LocalCluster`), emptied before each test: each
script, pipeline and multi-key read of the stores must be valid on a cluster (one slot per
script, no EVALSHA in a cluster pipeline) and behave as on a single server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from types import ModuleType

import pytest
import redis
from redis.asyncio import Redis

from campaign_common.redis_topology import RedisTopology, make_state_client
from campaign_common.runs.emission import EmissionGuard, EmissionGuards
from tests.campaign_common.observability.test_redis_metrics import (
    read_after_a_transport_closed_under_it,
)
from tests.campaign_common.runs import (
    test_deadletters,
    test_log,
    test_resent_writes,
    test_retention,
    test_retryqueue,
)
from tests.local_topologies import LocalCluster
from tests.support import PARTITIONS

STORE_TESTS: tuple[ModuleType, ...] = (
    test_deadletters,
    test_log,
    test_resent_writes,
    test_retention,
    test_retryqueue,
)


def _client_only_tests() -> dict[str, object]:
    found = {}
    for module in STORE_TESTS:
        for name, function in vars(module).items():
            if name.startswith("test_") and callable(function):
                parameters = list(inspect.signature(function).parameters)
                if parameters == ["state_redis"]:
                    found[f"test_cluster_{name.removeprefix('test_')}"] = function
    return found


globals().update(_client_only_tests())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    built = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture
async def state_redis(cluster: LocalCluster) -> AsyncIterator[Redis]:
    """A cluster client on the emptied cluster (scripts flushed too: as after a restart)."""
    for node in cluster.nodes:
        admin = redis.Redis(port=node.port, socket_timeout=5)
        admin.flushall()
        admin.script_flush()
        admin.close()
    client = make_state_client(RedisTopology(cluster.url, mode="cluster"), 5.0)
    try:
        yield client
    finally:
        await client.aclose()


def test_cluster_store_tests_were_collected() -> None:
    assert len(_client_only_tests()) >= 20


async def test_cluster_guards_raise_in_one_batch_without_loaded_scripts(
    state_redis: Redis,
) -> None:
    guards = [EmissionGuard(f"s{i}", f"c{i}", version=i + 1, active=True) for i in range(8)]
    await EmissionGuards(state_redis, PARTITIONS).raise_all(guards)
    for guard in guards:
        key = PARTITIONS.of(guard.campaign_id).guard_key(guard.schedule_id)
        assert await state_redis.exists(key)
    assert len({PARTITIONS.of(guard.campaign_id) for guard in guards}) > 1  # several slots


def test_cluster_a_write_on_a_transport_closed_under_it_is_retried_on_uvloop(
    cluster: LocalCluster,
) -> None:
    # The nodes' connections get the same handling as a single server's (redis-py picks
    # the cluster's connection class itself).
    topology = RedisTopology(cluster.url, mode="cluster")
    assert read_after_a_transport_closed_under_it(lambda: make_state_client(topology, 5.0)) == b"v"


def _getkeys_calls(cluster: LocalCluster) -> int:
    calls = 0
    for node in cluster.nodes:
        admin = redis.Redis(port=node.port, socket_timeout=5)
        stats = admin.info("commandstats")
        admin.close()
        calls += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return calls


async def test_cluster_stream_reads_find_their_slot_without_asking_the_server(
    state_redis: Redis, cluster: LocalCluster
) -> None:
    stream = PARTITIONS[1].runs_stream
    await state_redis.xadd(stream, {"n": 1}, id="1-1")
    await state_redis.xgroup_create(stream, "streams", id="0")  # a group named like the word
    before = _getkeys_calls(cluster)

    read = await state_redis.xreadgroup("streams", "STREAMS", {stream: ">"}, count=5, block=10)
    assert read == [[stream.encode(), [(b"1-1", {b"n": b"1"})]]]
    assert await state_redis.xread({stream: "0"}, count=5) == read
    assert _getkeys_calls(cluster) == before
