"""The whole run path on a real 3-master Redis Cluster, through a master's crash and restart.

A local cluster built from the shipped Valkey binary (`tests.local_topologies.LocalCluster`:
three masters, append-only files synced on every write, slots split by the test); a scheduler
and a scraper as real processes with ``*_STATE_REDIS_MODE=cluster`` and the cluster's seed node
as ``*_STATE_REDIS_URL``; the session lock masters. The run partitions (``{runs:<p>}``) spread
over the masters, and the campaign is one whose partition lives on another master than the
scheduler's keys (``{sched}``) and the scraper's limits (``{scraper}``) (asserted), so every
script, pipeline and blocking read of the flow crosses the cluster client's routing. Mid-flow
the master holding the campaign's partition is SIGKILLed and started again on its port and
data: every run accepted before is still there, the schedule still fires, and the runs fired
after the restart finish once each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from campaign_common.envelope import Envelope, decode_body
from campaign_common.redis_topology import RedisTopology, make_state_client
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.local_topologies import LocalCluster
from tests.support import (
    FINAL_EVENTS,
    PARTITIONS,
    PageServer,
    ServiceProcess,
    campaigns_in,
    event_run_id,
    eventually,
    pending_all,
    run_event_bodies,
    runs_stream,
    scraper_process,
    start_scheduler_process,
    xrange_all,
)

pytestmark = pytest.mark.slow

PAGE = "<html><body><h1>Cluster sale</h1></body></html>"
CLUSTER = {"SCHEDULER_STATE_REDIS_MODE": "cluster"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    built = LocalCluster(tmp_path / "cluster").start()
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture
async def cluster_redis(cluster: LocalCluster) -> AsyncIterator[Redis]:
    """The test's own cluster client, as the services build theirs."""
    client = make_state_client(RedisTopology(cluster.url, mode="cluster"), 2.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def pages() -> Iterator[PageServer]:
    with PageServer({"/offer": (200, PAGE)}) as server:
        yield server


async def _finals(redis: Redis, schedule_id: str) -> dict[str, list[str]]:
    """Run id -> its final events in order, for the schedule's runs (None while down)."""
    finals: dict[str, list[str]] = {}
    for body in await run_event_bodies(redis):
        run_id = event_run_id(body)
        if run_id.startswith(f"{schedule_id}:") and isinstance(body, FINAL_EVENTS):
            finals.setdefault(run_id, []).append(type(body).__name__)
    return finals


async def _requested(redis: Redis) -> set[str]:
    """Run ids of every RunRequested on the runs stream."""
    requested = set()
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        if isinstance(body, events_pb2.RunRequested):
            requested.add(body.run_id)
    return requested


def _fire_ms(run_id: str) -> int:
    return int(run_id.rsplit(":", 1)[1])


async def test_cluster_run_path_survives_a_master_restart(
    cluster: LocalCluster, cluster_redis: Redis, lock_urls: list[str], pages: PageServer
) -> None:
    others = {cluster.node_of(tag).port for tag in ("{sched}", "{scraper}")}
    homes = {p.index: cluster.node_of(f"{{{p.tag}}}").port for p in PARTITIONS}
    assert len(set(homes.values())) >= 2, f"the partitions should spread: {homes}"
    away = [index for index, port in homes.items() if port not in others]
    assert away, f"a partition should live apart from {{sched}} and {{scraper}}: {homes}"
    (campaign,) = campaigns_in(away[0], 1, "cluster-shop")
    runs_master = cluster.node_of(f"{{{PARTITIONS[away[0]].tag}}}")
    scheduler, target = await start_scheduler_process(cluster.url, **CLUSTER)
    worker = scraper_process(
        cluster.url,
        lock_urls,
        "cluster-worker",
        SCRAPER_STATE_REDIS_MODE="cluster",
        SCRAPER_RETRY_DELAY_S="0.2",
        SCRAPER_RETRY_MAX_DELAY_S="1",
    )
    processes: dict[str, ServiceProcess] = {"scheduler": scheduler, "scraper": worker}
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = api_grpc.SchedulerServiceStub(channel)
            created = await stub.AddScheduledCampaign(
                api.AddScheduledCampaignRequest(
                    campaign_id=campaign,
                    name="cluster",
                    schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                    scrape=schedule_pb2.ScrapeSpec(
                        urls=[pages.url("/offer")], selectors={"title": "h1"}
                    ),
                ),
                timeout=5,
            )
            schedule_id = created.schedule_id

            async def succeeded(after_ms: int, count: int) -> list[str] | None:
                try:
                    finals = await _finals(cluster_redis, schedule_id)
                except RedisError:
                    return None  # the partition's master is (still) coming back
                done = [r for r, f in finals.items() if f == ["RunSucceeded"]]
                later = [run_id for run_id in done if _fire_ms(run_id) > after_ms]
                return later if len(later) >= count else None

            before = await eventually(
                lambda: succeeded(0, 2), timeout_s=30, what="2 runs SUCCEEDED on the cluster"
            )
            runs = RunLog(cluster_redis, PARTITIONS)
            recorded = {run_id: await runs.get_run(run_id) for run_id in before}

            cluster.restart(runs_master)  # SIGKILL, same port and data, ok again
            restarted_ms = now_ms()

            for run_id, record in recorded.items():
                assert await runs.get_run(run_id) == record, f"{run_id} changed or vanished"
                assert record is not None and record.state is RunState.SUCCEEDED
            schedule = await stub.GetSchedule(api.GetScheduleRequest(schedule_id=schedule_id))
            assert schedule.version == created.version
            try:
                after = await eventually(
                    lambda: succeeded(restarted_ms, 2),
                    timeout_s=30,
                    what="2 runs fired after the restart SUCCEEDED",
                )
            except AssertionError as exc:  # the services' own account of the restart
                logs = {name: p.logs()[-4000:] for name, p in processes.items()}
                raise AssertionError(f"{exc}; logs: {logs}") from exc

        async def settled() -> bool:
            """Nothing pending and every run the schedule requested has a final event."""
            pending = await pending_all(cluster_redis)
            finals = await _finals(cluster_redis, schedule_id)
            return pending == 0 and await _requested(cluster_redis) <= set(finals)

        await eventually(settled, timeout_s=15, what="a final event for every requested run")
        finals = await _finals(cluster_redis, schedule_id)
        twice = {run_id: f for run_id, f in finals.items() if len(f) > 1}
        assert not twice, f"runs with more than one final event: {twice}"
        assert set(after) <= set(finals) and len(finals) >= len(before) + len(after)
        exited = {n: p.logs() for n, p in processes.items() if p.proc and p.proc.poll() is not None}
        assert not exited, f"exited during the master restart: {exited}"
    finally:
        for process in processes.values():
            process.close()
