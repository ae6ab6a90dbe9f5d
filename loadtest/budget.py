"""An exact request budget per arm, the `ab -n` of poolbench, free of Locust so it can be tested.

A ticket is taken before a request starts and a completion recorded when it ends (success or
failure alike), so "N requests per arm" means N started and N finished: the stats show exactly N.
With several processes the budget is split across workers by the master in proportion to the
users each worker actually runs of that arm (Locust's dispatcher may put all of one arm's users
on one worker), which keeps the total exact and never gives a share to a worker without users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def split_budget(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder; ties go to the lower index).

    The shares always sum to `total` when any weight is positive; a zero weight gets zero.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if any(weight < 0 for weight in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot split a budget over zero weights")
        return [0 for _ in weights]
    shares = [total * weight // weight_sum for weight in weights]
    remainders = [total * weight % weight_sum for weight in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda index: (-remainders[index], index))
    for index in order[:left]:
        shares[index] += 1
    return shares


class ArmBudget:
    """Tickets and completions per arm for one process; `None` shares mean unlimited.

    Not thread-safe by design: Locust users are gevent greenlets on one thread, and `take` does
    not yield, so no two users can both see the last ticket.
    """

    def __init__(self) -> None:
        self._shares: dict[str, int] | None = None
        self._left: dict[str, int] = {}
        self._completed: dict[str, int] = {}
        self._done_reported = False

    @property
    def assigned(self) -> bool:
        """True once `assign` was called (a worker waits for the master's shares)."""
        return self._shares is not None

    @property
    def shares(self) -> dict[str, int]:
        """The shares this process must complete, per arm."""
        return dict(self._shares or {})

    def assign(self, shares: Mapping[str, int]) -> None:
        """Start a new budget: `shares[arm]` requests for each arm, none completed yet."""
        if any(count < 0 for count in shares.values()):
            raise ValueError(f"shares must be >= 0, got {dict(shares)}")
        self._shares = dict(shares)
        self._left = dict(shares)
        self._completed = dict.fromkeys(shares, 0)
        self._done_reported = False

    def take(self, arm: str) -> bool:
        """A ticket to start one request of `arm`; False when that arm's share is used up."""
        if self._shares is None or arm not in self._shares:
            return False
        if self._left[arm] <= 0:
            return False
        self._left[arm] -= 1
        return True

    def complete(self, arm: str) -> None:
        """Record that one request of `arm` finished (either way)."""
        if arm in self._completed:
            self._completed[arm] += 1

    @property
    def done(self) -> bool:
        """Every arm finished its share (an empty or all-zero budget is done at once)."""
        if self._shares is None:
            return False
        return all(self._completed[arm] >= count for arm, count in self._shares.items())

    def report_done_once(self) -> bool:
        """True exactly once, the first time the budget is seen done: the caller ends the run."""
        if self.done and not self._done_reported:
            self._done_reported = True
            return True
        return False
