"""Which schedules this replica fires, and arming them: at start-up, when it gains partitions
(`scheduler_svc.leases`), and each fire of the timer.

The timer holds every active schedule (a replica may gain any partition at any moment); a due
fire of a schedule whose partition this replica does not own is passed over, its owner fires
it. Arming a set of schedules completes those whose cap was reached (a crash came between
their last fire and COMPLETED), records fires missed beyond each schedule's catch-up window as
SKIPPED runs, then arms the rest from the start of their window: fires within it are fired
at once, and the emission script drops those another replica emitted already.
"""

from __future__ import annotations

from campaign_common.runs.keys import Partitions
from campaign_common.timeutil import now_ms
from scheduler_svc.commands import Commands
from scheduler_svc.firing import Firing
from scheduler_svc.leases import PartitionLeases
from scheduler_svc.model import Schedule, ScheduleState
from scheduler_svc.registry import Registry
from scheduler_svc.timer import Timer
from scheduler_svc.triggers import FireTimes


class Arming:
    def __init__(
        self,
        registry: Registry,
        firing: Firing,
        commands: Commands,
        partitions: Partitions,
        default_window_ms: int,
    ) -> None:
        self._registry = registry
        self._firing = firing
        self._commands = commands
        self._partitions = partitions
        self._default_window_ms = default_window_ms
        self.timer = Timer(self._on_fire, default_window_ms)
        self.leases: PartitionLeases | None = None

    def owns(self, schedule: Schedule) -> bool:
        """Whether this replica fires the schedule (every one until leases are in place)."""
        if self.leases is None:
            return True
        return self.leases.owns(self._partitions.of(schedule.campaign_id).index)

    async def arm(self, schedules: list[Schedule], started_ms: int) -> None:
        """Complete, record missed fires of and arm ``schedules`` (see the module doc); each
        trigger built once, shared fire times computed once, Redis read in batches."""
        done = await self._firing.exhausted_of(schedules)
        for schedule in done:
            await self._commands.complete(schedule)
        finished = {s.schedule_id for s in done}
        armed = [s for s in schedules if s.schedule_id not in finished]
        default_ms = self._default_window_ms

        def missed_until(schedule: Schedule) -> int:
            return started_ms - schedule.catch_up_window_ms(default_ms)

        fire_times = FireTimes()
        await self._firing.record_missed(armed, missed_until, fire_times)
        self.timer.sync_many(armed, missed_until, fire_times=fire_times)

    async def arm_all(self) -> None:
        """Start-up: every schedule of the registry."""
        await self.arm(list(self._registry.all()), now_ms())

    async def on_gained(self, gained: set[int]) -> None:
        """Catch up the schedules of partitions this replica just gained."""
        of = self._partitions.of
        schedules = [
            s
            for s in self._registry.all()
            if s.state is ScheduleState.ACTIVE and of(s.campaign_id).index in gained
        ]
        await self.arm(schedules, now_ms())

    async def _on_fire(self, schedule: Schedule, fire_ms: int) -> None:
        if not self.owns(schedule):
            return
        await self._firing.fire(schedule, fire_ms)
        if await self._firing.exhausted(schedule):
            # A burst's runs first, their one-shots' completions after (seconds at most): a
            # crash in between leaves what a crash right after the fire always left.
            await self._firing.quiet()
            current = self._registry.get(schedule.schedule_id)
            if current is not None and current.state is ScheduleState.ACTIVE:
                await self._commands.complete(current)
