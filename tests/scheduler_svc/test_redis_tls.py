"""A scheduler on a ``rediss://`` state Redis as an ACL user holding only the documented rules:
it replays, accepts a schedule, fires it and records the run."""

from __future__ import annotations

import grpc
from redis.asyncio import Redis

from campaign_common.envelope import Envelope, decode_body
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.runs.log import RunLog
from campaigns.v1 import events_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.acl_users import STATE_RULES, acl_user
from tests.conftest import StartTls
from tests.support import PARTITIONS, eventually, runs_stream, xrange_all
from tests.tls_proxy import Pki


async def _requested(redis: Redis, schedule_id: str) -> list[str]:
    found = []
    for _, fields in await xrange_all(redis, runs_stream):
        body = decode_body(Envelope.from_fields(fields))
        if isinstance(body, events_pb2.RunRequested) and body.schedule_id == schedule_id:
            found.append(body.run_id)
    return found


async def test_tls_acl_scheduler_accepts_and_fires_a_schedule(
    redis_stack: EmbeddedStack, state_redis: Redis, pki: Pki, tls_in_front: StartTls
) -> None:
    proxy = tls_in_front(redis_stack.state.port, pki.server_context())
    with acl_user(redis_stack.state.port, "scheduler", "sched-pw", STATE_RULES):
        server = SchedulerServer(
            SchedulerSettings(
                state_redis_url=proxy.url("scheduler", "sched-pw"),
                redis_tls_ca_file=str(pki.ca_file),
                port=0,
                log_block_ms=200,
            )
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                created = await api_grpc.SchedulerServiceStub(channel).AddScheduledCampaign(
                    api.AddScheduledCampaignRequest(
                        campaign_id="tls-campaign",
                        name="over tls",
                        schedule=schedule_pb2.ScheduleSpec(interval_seconds=1),
                        scrape=schedule_pb2.ScrapeSpec(urls=["https://example.com/"]),
                    ),
                    timeout=5,
                )
            fired = await eventually(
                lambda: _requested(state_redis, created.schedule_id), what="a fire over TLS"
            )
            assert await RunLog(state_redis, PARTITIONS).get_run(fired[0]) is not None
        finally:
            await server.stop()
