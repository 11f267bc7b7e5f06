"""The lock-master probe: whether each lock master answers now, for operators.

Every ``SCRAPER_LOCK_PROBE_INTERVAL_S`` (5 s) the probe sends each master a PING over the
Redlock client's own connections (the ones the campaign locks use) under the per-node
deadline of a lock command (``SCRAPER_LOCK_NODE_TIMEOUT_S``) and exports the answer:

    campaigns_lock_masters_reachable          masters that answered in time
    campaigns_lock_master_up{master="<i>"}    1 answered, 0 not; i = the index in
                                              SCRAPER_LOCK_REDIS_URLS

A master is named by its index only: its URL may hold credentials, so neither the URL nor a
part of it becomes a label. A master that stops or starts answering is logged once, at the
change. The probe never raises (a failed PING is "not reachable"), so its loop only ends when
asked to stop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from campaign_common.supervisor import Loop
from campaign_common.tasks import pause
from scraper_svc import metrics

log = logging.getLogger(__name__)


class Masters(Protocol):
    """What the probe needs of the Redlock client (`campaign_common.redlock.client.Redlock`)."""

    @property
    def addresses(self) -> tuple[str, ...]: ...

    async def reachable(self, timeout_s: float) -> tuple[bool, ...]: ...


class LockProbe:
    def __init__(self, masters: Masters, timeout_s: float, interval_s: float) -> None:
        self._masters = masters
        self._timeout_s = timeout_s
        self._interval_s = interval_s
        self._stop = asyncio.Event()
        self._last: tuple[bool, ...] = ()

    async def probe(self) -> tuple[bool, ...]:
        """Probe every master once and export the result."""
        up = await self._masters.reachable(self._timeout_s)
        for index, answered in enumerate(up):
            metrics.LOCK_MASTER_UP.labels(master=str(index)).set(1 if answered else 0)
            if self._last and self._last[index] != answered:
                self._log_change(index, answered)
        metrics.LOCK_MASTERS_REACHABLE.set(sum(up))
        self._last = up
        return up

    def _log_change(self, index: int, answered: bool) -> None:
        address = self._masters.addresses[index]  # host:port (no credentials)
        if answered:
            log.info("lock master %d (%s) answers again", index, address)
        else:
            deadline_ms = self._timeout_s * 1000
            log.warning(
                "lock master %d (%s) did not answer within %.0f ms", index, address, deadline_ms
            )

    async def run(self) -> None:
        """Probe until `request_stop`."""
        while not self._stop.is_set():
            await self.probe()
            await pause(self._stop, self._interval_s)

    def request_stop(self) -> None:
        self._stop.set()

    def loop(self) -> Loop:
        """The probe as a background loop of the scraper's `Supervisor`."""
        return Loop("lock-masters-probe", self.run, self.request_stop)
