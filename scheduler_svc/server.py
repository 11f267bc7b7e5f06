"""Wiring of the scheduler process: Redis, log replay, timer, gRPC server, health, signals.

Start-up order: connect (version check) -> replay the log into the registry -> arm every
active schedule with catch-up -> background loops under a `Supervisor` (schedule log
follower, run outcome follower, stream gauges) -> serve gRPC -> health SERVING.
While running: a loop that crashes is restarted with backoff; between its crash and its
restart health is NOT_SERVING (load balancers stop routing to a replica whose schedules may be
stale), and SERVING again after.
Shutdown (SIGTERM/SIGINT): health NOT_SERVING -> stop gRPC within the grace period (in-flight
calls finish) -> stop the timer and the loops (a restart backoff ends at once) -> flush
alerts -> stop the metrics endpoint (in a thread: it blocks) -> close Redis. Every step is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from campaign_common.api_keys import key_bytes
from campaign_common.notifier import WebhookNotifier, WebhookSettings
from campaign_common.observability.metrics import MetricsEndpoint
from campaign_common.redis_topology import (
    connect_state,
    make_state_client,
    unreachable_message,
)
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.keys import (
    PartitionCountMismatch,
    Partitions,
    check_partition_count,
)
from campaign_common.runs.log import RunLog
from campaign_common.runs.retention import Retention
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.supervisor import Backoff, Loop, Supervisor
from campaign_common.tasks import cancel_and_wait
from campaigns.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc
from scheduler_svc import metrics
from scheduler_svc.arming import Arming
from scheduler_svc.auth import TokenAuth
from scheduler_svc.commands import Commands
from scheduler_svc.compaction import Compactor
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.errors import StartupError
from scheduler_svc.firing import Firing
from scheduler_svc.follower import LogFollower
from scheduler_svc.housekeeping import Housekeeping, stream_rules
from scheduler_svc.leases import PartitionLeases
from scheduler_svc.metrics import StreamGauges
from scheduler_svc.outcome_store import OutcomeStore, StreakSweep
from scheduler_svc.outcomes import OutcomeFollower
from scheduler_svc.registry import Registry
from scheduler_svc.replicas import ReplicaRoster
from scheduler_svc.run_watch import RunWatch
from scheduler_svc.servicer import SchedulerServicer
from scheduler_svc.snapshot import SnapshotStore
from scheduler_svc.store import ScheduleStore
from scheduler_svc.timer import Timer

log = logging.getLogger(__name__)
SERVICE_NAME = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


# A request never needs more than 4 MiB (gateway bodies are capped at 1 MiB); pages of
# schedules may be large answers.
GRPC_SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


class SchedulerServer:
    # Restart delays of a crashed background loop.
    loop_backoff = Backoff(initial_s=0.5, max_s=30.0)

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.port = 0
        self._redis: Redis | None = None
        self._fire_redis: Redis | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._timer: Timer | None = None
        self._firing: Firing | None = None
        self._leases: PartitionLeases | None = None
        self._commands: Commands | None = None
        self._background: asyncio.Task[None] | None = None
        self._supervisor: Supervisor | None = None
        self._notifier: WebhookNotifier | None = None
        self._stopping = asyncio.Event()
        self._stopped = False
        self.metrics: MetricsEndpoint | None = None

    async def start(self) -> None:
        s = self.settings
        tls = s.server_tls()
        credentials = tls.credentials() if tls is not None else None  # unreadable files: now
        self._redis = await _connect_state(s)
        partitions = Partitions(s.partitions)
        try:
            await check_partition_count(self._redis, partitions, "SCHEDULER_PARTITIONS")
        except PartitionCountMismatch as exc:
            await self._redis.aclose()
            raise StartupError(str(exc)) from exc
        store = ScheduleStore(self._redis, partitions)
        ttls = run_ttls(s)
        runs = RunLog(self._redis, partitions, dedupe_ttl_ms=s.run_dedupe_ttl_s * 1000, **ttls)
        registry = Registry()
        window_ms = int(s.catch_up_window_s * 1000)
        self._commands = commands = Commands(
            store,
            registry,
            apply_timeout_s=s.apply_timeout_s,
            past_grace_ms=window_ms,
            append_linger_s=s.append_linger_ms / 1000,
            append_batch=s.append_batch,
        )
        # Fires get a pool of their own: a burst never takes the API's connections.
        self._fire_redis = make_state_client(
            s.state_topology(), s.redis_timeout_s, max_connections=s.fire_concurrency + 2
        )
        fire_runs = RunLog(
            self._fire_redis, partitions, dedupe_ttl_ms=s.run_dedupe_ttl_s * 1000, **ttls
        )
        self._firing = firing = Firing(
            fire_runs, retry_window_ms=window_ms, max_in_flight=s.fire_concurrency
        )
        snapshots = SnapshotStore(self._redis)
        follower = LogFollower(
            store, registry, snapshots, block_ms=s.log_block_ms, batch=s.log_batch
        )
        compactor = Compactor(
            store,
            snapshots,
            runs,
            batch=s.log_batch,
            keep_ms=int(s.log_keep_s * 1000),
            interval_s=s.snapshot_interval_s,
        )
        replayed = await follower.replay()
        arming = Arming(registry, firing, commands, partitions, window_ms)
        self._timer = timer = arming.timer
        self._leases = arming.leases = PartitionLeases(
            self._redis,
            s.replica_name,
            partitions.count,
            int(s.partition_lease_s * 1000),
            arming.on_gained,
        )
        await self._leases.tick()  # this replica's partitions before the first fire
        timer.start()
        await arming.arm_all()
        registry.on_change(lambda schedule, deleted: timer.sync(schedule, deleted))
        metrics.count_schedules(registry.counts())
        outcomes = await self._outcome_followers(runs, commands, partitions)
        gauges = StreamGauges(
            runs,
            DeadLetters(self._redis, partitions, **ttls),
            RetryQueue(self._redis, partitions, **ttls),
            ReplicaRoster(self._redis, s.replica_name),
            s.gauge_refresh_s,
            self._leases,
        )
        housekeeping = Housekeeping(
            Retention(self._redis, consumer_idle_ms=int(s.idle_consumer_s * 1000)),
            stream_rules(
                partitions,
                s.runs_stream_retention_s,
                s.run_events_retention_s,
                s.dead_letters_retention_s,
            ),
            interval_s=s.housekeeping_interval_s,
            streaks=StreakSweep(self._redis, registry, store.latest_id),
        )
        leases = self._leases
        background = [
            *self._loops(follower, outcomes, gauges),
            Loop("partition-leases", lambda: leases.run(self._stopping)),
            Loop("housekeeping", lambda: housekeeping.run(self._stopping)),
            Loop("log-compaction", lambda: compactor.run(self._stopping)),
        ]
        self._supervisor = Supervisor(
            background,
            metrics.LOOPS,
            stop=self._stopping,
            backoff=self.loop_backoff,
            on_health_change=self._report_health,
        )
        self._background = asyncio.create_task(self._supervisor.run(), name="background-loops")
        dead_letters = DeadLetters(self._redis, partitions, **ttls)
        await self._serve_grpc(
            SchedulerServicer(
                commands,
                firing,
                runs,
                dead_letters,
                s.next_fire_preview,
                RunWatch(self._redis, partitions, block_ms=s.log_block_ms),
            ),
            credentials,
        )
        if s.metrics_port is not None:
            self.metrics = MetricsEndpoint(
                s.host, s.metrics_port, self._supervisor.problems, key_bytes(s.metrics_keys)
            )
            self.metrics.start()
        log.info("scheduler ready", extra={"port": self.port, "replayed": replayed})

    async def _outcome_followers(
        self, runs: RunLog, commands: Commands, partitions: Partitions
    ) -> list[OutcomeFollower]:
        """One follower per partition's run events stream (each blocks on its own stream, so
        they work on a Redis Cluster too)."""
        s = self.settings
        assert self._redis is not None
        if s.alert_webhook_url:
            self._notifier = WebhookNotifier(WebhookSettings(s.alert_webhook_url))
            self._notifier.start()
        followers = []
        for partition in partitions:
            store = OutcomeStore(self._redis, s.replica_name, partition)
            await store.ensure_group()  # outcomes from now on are handled, before the loop runs
            follower = OutcomeFollower(
                store,
                runs,
                commands,
                self._notifier,
                alert_after_failures=s.alert_after_failures,
                block_ms=s.log_block_ms,
                claim_idle_ms=s.outcome_claim_idle_ms,
            )
            followers.append(follower)
        return followers

    async def _serve_grpc(
        self, servicer: SchedulerServicer, credentials: grpc.ServerCredentials | None
    ) -> None:
        keys = [key.get_secret_value() for key in self.settings.api_keys]
        auth = [TokenAuth(keys)] if keys else []
        server = grpc.aio.server(
            options=GRPC_SERVER_OPTIONS, interceptors=[metrics.grpc_interceptor(), *auth]
        )
        scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{self.settings.host}:{self.settings.port}"
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self._grpc = server
        await self._report_health()

    def _loops(
        self, log_follower: LogFollower, outcomes: list[OutcomeFollower], gauges: StreamGauges
    ) -> list[Loop]:
        """The background work of a replica; each loop returns soon after ``_stopping``."""
        stop = self._stopping
        return [
            Loop("schedule-log-follower", lambda: log_follower.run(stop)),
            *(
                Loop(f"run-outcome-follower-{index}", partial(follower.run, stop))
                for index, follower in enumerate(outcomes)
            ),
            Loop("stream-gauges", lambda: gauges.run(stop)),
        ]

    async def _report_health(self) -> None:
        """SERVING while every background loop is up (once gRPC serves; ignored on shutdown)."""
        if self._grpc is None or self._supervisor is None:
            return
        up = self._supervisor.all_up
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if up
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if not up:
            log.warning("health NOT_SERVING: %s", "; ".join(self._supervisor.problems()))
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self) -> None:
        """Bounded graceful shutdown (see the module docstring); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(self.settings.shutdown_grace_s)
        if self._timer is not None:
            self._timer.shutdown()
        if self._leases is not None:
            await self._leases.release()  # the other replicas take this one's partitions now
        if self._firing is not None:
            await self._firing.close()
        if self._commands is not None:
            await self._commands.close()
        # The loops stop between two Redis commands (a blocking read ends within
        # log_block_ms); cancelling is only the fallback for one that overstays.
        self._stopping.set()
        if self._background is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(self._background), self.settings.log_block_ms / 1000 + 2.0
                )
        await cancel_and_wait(self._background, self.settings.shutdown_grace_s)
        if self._notifier is not None:
            await self._notifier.stop(self.settings.shutdown_grace_s)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        if self._redis is not None:
            await self._redis.aclose()
        if self._fire_redis is not None:
            await self._fire_redis.aclose()
        log.info("scheduler stopped")


def run_ttls(s: SchedulerSettings) -> dict[str, int]:
    """The TTLs of the run keys this service writes (`RunLog`, `RetryQueue`, `DeadLetters`)."""
    return {
        "run_ttl_ms": int(s.run_retention_s * 1000),
        "op_ttl_ms": int(s.operation_ttl_s * 1000),
    }


async def _connect_state(s: SchedulerSettings) -> Redis:
    """The state Redis client; reads block for log_block_ms, so its deadline is longer."""
    topology = s.state_topology()
    try:
        return await connect_state(topology, s.redis_timeout_s + s.log_block_ms / 1000)
    except (RedisError, RedisClusterException, OSError) as exc:
        where = f"({topology.describe()})"
        message = unreachable_message("state Redis", where, "SCHEDULER_STATE_REDIS_*", exc)
        raise StartupError(message) from exc


async def serve(settings: SchedulerSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = SchedulerServer(settings)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
