"""Run outcomes as the scheduler acts on them: failure streaks, pause-on-failure, alerts.

Every replica joins the consumer group ``schedulers`` on the run events stream, so each
outcome is handled once across replicas; entries a dead replica left unacked are claimed
after ``claim_idle_ms``. Per outcome:

    RunSucceeded     the schedule's and the campaign's failure streaks end
    RunFailed        both streaks grow; schedule streak >= its pause_after_failures -> the
                     schedule pauses with a note saying why; campaign streak == the alert
                     threshold -> a ``campaign.failing`` webhook alert
    RunDeadLettered  counts as a failure too, and sends a ``run.dead_lettered`` alert

The entry is acked after it was handled; a crash in between hands it to another replica
(at-least-once handling: a failure still counts once in the streaks, see
`scheduler_svc.outcome_store`; a pause is idempotent; an alert may be sent twice). A read's
entries are handled in stream order: each stretch of successes and other events is one
batch (the run records read in one round trip, the streaks ended and the entries acked in
the next), each failure alone after the stretch before it was acked. The group is created
at start and again after a Redis error (a restarted Redis may have lost it); entries of dead
replicas are claimed every ``claim_idle_ms / 2``, not on every read.

An entry whose handling fails on anything but Redis (a bug, or data it cannot read) is a
poison entry: logged with its id and traceback, counted
(``campaigns_scheduler_outcome_errors_total``) and acked, so it is neither retried forever
nor able to stop the follower. A Redis error leaves the entry pending (handled again later)
and the loop backs off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from redis.exceptions import RedisError

from campaign_common.envelope import Envelope, decode_body
from campaign_common.notifier import WebhookNotifier
from campaign_common.redaction import redact
from campaign_common.runs.log import RunLog
from campaign_common.tasks import pause, raise_if_cancelling
from campaign_common.timeutil import ms_to_rfc3339, now_ms
from campaigns.v1 import events_pb2
from scheduler_svc import metrics
from scheduler_svc.commands import Commands
from scheduler_svc.errors import SchedulerError
from scheduler_svc.model import ScheduleState
from scheduler_svc.outcome_store import Event, OutcomeStore

log = logging.getLogger(__name__)
# Outcomes that count as failures: handled one at a time, in order (see `_handle_all`).
_FAILURES = (events_pb2.RunFailed, events_pb2.RunDeadLettered)


@dataclass(frozen=True)
class Failure:
    entry_id: str  # of the run event that reported it: the failure counts once per entry
    run_id: str
    schedule_id: str
    campaign_id: str
    error: str


class OutcomeFollower:
    def __init__(
        self,
        store: OutcomeStore,
        runs: RunLog,
        commands: Commands,
        notifier: WebhookNotifier | None,
        *,
        alert_after_failures: int,
        block_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self._store = store
        self._runs = runs
        self._commands = commands
        self._notifier = notifier
        self._alert_after = alert_after_failures
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms

    async def run(self, stop: asyncio.Event) -> None:
        """Follow outcomes until ``stop``; Redis outages are logged and retried."""
        delay_s = 0.1
        group_ready = False
        next_claim = 0.0
        while not stop.is_set():
            try:
                if not group_ready:  # at start and after any Redis error (a restarted Redis)
                    await self._store.ensure_group()
                    group_ready = True
                if time.monotonic() >= next_claim:
                    await self._handle_all(await self._store.claim_stale(self._claim_idle_ms, 50))
                    next_claim = time.monotonic() + self._claim_idle_ms / 2000
                await self._handle_all(await self._store.read(100, self._block_ms))
                delay_s = 0.1
            except RedisError as exc:
                raise_if_cancelling()
                group_ready = False
                log.warning("run events unreachable (%s); retrying in %.1fs", exc, delay_s)
                await pause(stop, delay_s)  # backoff while the state Redis is down
                delay_s = min(delay_s * 2, 5.0)

    async def _handle_all(self, events: list[Event]) -> None:
        """Handle entries in stream order: runs of successes and other non-failures in one
        batch (streaks ended and entries acked in one round trip), each failure alone, after
        the batch before it was acked, so a streak never misses a failure on a re-handling."""
        batch: list[tuple[str, Message | None]] = []
        for entry_id, envelope in events:
            body = self._decoded(entry_id, envelope)
            if isinstance(body, _FAILURES):
                await self._flush(batch)
                batch = []
                await self._handle(entry_id, body)
            else:
                batch.append((entry_id, body))
        await self._flush(batch)

    def _decoded(self, entry_id: str, envelope: Envelope | None) -> Message | None:
        try:
            return decode_body(envelope) if envelope is not None else None
        except Exception:
            metrics.OUTCOME_ERRORS.inc()
            log.exception("run event %s could not be decoded; skipping it (acked)", entry_id)
            return None

    async def _flush(self, batch: list[tuple[str, Message | None]]) -> None:
        if not batch:
            return
        succeeded = [body.run_id for _, body in batch if isinstance(body, events_pb2.RunSucceeded)]
        runs = await self._store.runs_of(succeeded) if succeeded else []
        metrics.OUTCOMES.labels(outcome="succeeded").inc(len(succeeded))
        found = [run for run in runs if run is not None]
        await self._store.succeeded_all(found, [entry_id for entry_id, _ in batch])

    async def _handle(self, entry_id: str, body: Message | None) -> None:
        try:
            await self._apply(entry_id, body)
        except SchedulerError as exc:  # e.g. the schedule was deleted meanwhile
            log.info("outcome %s not applied: %s", entry_id, exc)
        except RedisError:
            raise  # not the entry's fault: it stays pending and is handled again
        except Exception:
            raise_if_cancelling()
            metrics.OUTCOME_ERRORS.inc()
            log.exception("run event %s could not be handled; skipping it (acked)", entry_id)
        await self._store.ack(entry_id)

    async def _apply(self, entry_id: str, body: Message | None) -> None:
        if isinstance(body, events_pb2.RunFailed):
            metrics.OUTCOMES.labels(outcome="failed").inc()
            record = await self._runs.get_run(body.run_id, within=self._store.partition)
            if record is not None:
                failure = Failure(
                    entry_id,
                    body.run_id,
                    record.schedule_id,
                    record.campaign_id,
                    redact(body.error),
                )
                await self._failed(failure)
        elif isinstance(body, events_pb2.RunDeadLettered):
            metrics.OUTCOMES.labels(outcome="dead_lettered").inc()
            request = body.request
            failure = Failure(
                entry_id,
                request.run_id,
                request.schedule_id,
                request.campaign_id,
                redact(body.error),
            )
            self._alert("run.dead_lettered", failure, attempt=request.attempt)
            await self._failed(failure)

    async def _failed(self, failure: Failure) -> None:
        schedule_streak, campaign_streak = await self._store.failed(
            failure.entry_id, failure.schedule_id, failure.campaign_id
        )
        if campaign_streak == self._alert_after:
            self._alert("campaign.failing", failure, consecutiveFailures=campaign_streak)
        schedule = self._commands.find(failure.schedule_id)
        threshold = schedule.limits.pause_after_failures if schedule else 0
        if schedule and schedule.state is ScheduleState.ACTIVE and 0 < threshold <= schedule_streak:
            note = (
                f"paused automatically after {schedule_streak} consecutive failed runs; "
                f"last error: {failure.error}"
            )
            await self._commands.pause(failure.schedule_id, note)
            await self._store.reset_schedule(failure.schedule_id)
            metrics.AUTO_PAUSES.inc()
            log.warning("schedule paused on failures", extra={"schedule_id": failure.schedule_id})

    def _alert(self, event: str, failure: Failure, **extra: Any) -> None:
        if self._notifier is None:
            return
        self._notifier.notify(
            {
                "event": event,
                "runId": failure.run_id,
                "scheduleId": failure.schedule_id,
                "campaignId": failure.campaign_id,
                "error": failure.error,
                "at": ms_to_rfc3339(now_ms()),
                **extra,
            }
        )
