"""The scheduler's /metrics endpoint, scraped over real HTTP."""

from __future__ import annotations

import grpc
import httpx

from campaign_common.localstack.embedded import free_port
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.support import PARTITIONS, eventually, metric_sample, part

EMITTED = 'campaigns_scheduler_fires_total{result="emitted"}'
CAMPAIGN = "metered"
PARTITION_LAG = f'campaigns_partition_runs_lag{{partition="{part(CAMPAIGN).index}"}}'
REPLICA = "metrics-replica"


async def test_metrics_count_fires_and_schedules(state_url: str) -> None:
    settings = SchedulerSettings(
        state_redis_url=state_url,
        port=0,
        log_block_ms=200,
        metrics_port=free_port(),
        gauge_refresh_s=0.1,
        replica_name=REPLICA,
    )
    server = SchedulerServer(settings)
    await server.start()
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            before = metric_sample(
                (await http.get(url)).text, 'campaigns_scheduler_fires_total{result="emitted"}'
            )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await api_grpc.SchedulerServiceStub(channel).AddScheduledCampaign(
                    api.AddScheduledCampaignRequest(
                        name="m",
                        campaign_id=CAMPAIGN,
                        schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                        scrape=schedule_pb2.ScrapeSpec(urls=["http://127.0.0.1:1/"]),
                    )
                )

            async def fired() -> str | None:
                text = (await http.get(url)).text
                # no scraper runs here, so the emitted run waits on its partition (lag)
                waiting = metric_sample(text, "campaigns_runs_lag") >= 1
                waiting = waiting and metric_sample(text, PARTITION_LAG) >= 1
                return text if metric_sample(text, EMITTED) > before and waiting else None

            text = await eventually(fired, timeout_s=10, what="a fire counted")
    finally:
        await server.stop()
    assert metric_sample(text, 'campaigns_scheduler_schedules{state="ACTIVE"}') >= 1
    assert metric_sample(text, "campaigns_scheduler_fire_lag_seconds_count") >= 1
    assert metric_sample(text, "campaigns_scheduler_replicas_seen") == 1
    owned = [
        metric_sample(
            text,
            f'campaigns_scheduler_partition_owned{{partition="{p.index}",replica="{REPLICA}"}}',
        )
        for p in PARTITIONS
    ]
    assert owned == [1] * len(PARTITIONS)  # the only replica holds every partition
