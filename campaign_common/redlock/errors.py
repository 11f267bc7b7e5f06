"""The typed errors of the Redlock client: held by another owner, no quorum, lease lost."""

from __future__ import annotations

from collections.abc import Sequence

from campaign_common.errors import CampaignCommonError


class LockError(CampaignCommonError):
    """Root of every error this module raises about a lock."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(f"{resource}: {message}")
        self.resource = resource


class LockHeld(LockError):
    """Another holder has the lock (contention): the masters that answered refused us."""

    def __init__(self, resource: str, held_on: Sequence[str]) -> None:
        super().__init__(resource, f"held by another owner on {', '.join(held_on)}")
        self.held_on = tuple(held_on)


class QuorumUnavailable(LockError):
    """Too few masters answered in time (infrastructure), or the validity ran out."""

    def __init__(self, resource: str, failures: dict[str, str], reason: str = "") -> None:
        detail = "; ".join(f"{node}: {error}" for node, error in failures.items())
        super().__init__(resource, reason or f"no quorum of lock masters ({detail})")
        self.failures = failures
        self.reason = reason

    @property
    def nodes(self) -> tuple[str, ...]:
        """Addresses of the masters that failed."""
        return tuple(self.failures)


class LeaseLost(LockError):
    """A lease could not be kept: extension refused or failed, expired, or the time cap hit."""

    def __init__(self, resource: str, reason: str) -> None:
        super().__init__(resource, f"lease lost: {reason}")
        self.reason = reason


class LeaseCapReached(LeaseLost):
    """``hold`` gave the lease up because it lasted ``max_lease_s``: the work took too long.

    Unlike another `LeaseLost`, the lease was still valid when the body was cancelled, so the
    holder's fencing token is as good as it was (a newer holder's write still fences it off).
    """
