"""What a Locust process will do, resolved from its command line, without importing Locust.

The locustfile calls `make_plan` from its init hook; keeping the checks here lets unit tests
cover them without gevent's monkey-patching, and makes the plain `locust -f ...` command fail
with the same one-line messages as `poolbench run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from input_errors import InputError
from loadtest.target import load_target, parse_arms, select_arms


@dataclass(frozen=True)
class LoadPlan:
    """The resolved load of one run: where, which arms, how many users, when to stop."""

    base_url: str
    arms: tuple[str, ...]
    users_per_arm: int
    requests_per_arm: int | None
    ramp_interval_s: float | None
    ramp_start: int
    run_time_s: int | None

    @property
    def total_users(self) -> int:
        """Locust's `-u`: the same users on every arm."""
        return self.users_per_arm * len(self.arms)


def ramp_users_per_arm(elapsed_s: float, *, start: int, target: int, interval_s: float) -> int:
    """Users per arm `elapsed_s` into a ramp: `start`, doubled once per whole interval, capped.

    Doubling at most once per interval is the pace LMI documents it can follow without
    throttling ("traffic more than doubles within 5 minutes" is what throttles).
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    steps = int(max(elapsed_s, 0.0) // interval_s)
    # 2**steps grows without bound; stop doubling once past the target.
    users = start
    for _ in range(steps):
        if users >= target:
            break
        users *= 2
    return min(users, target)


def make_plan(
    *,
    outputs_file: str | None,
    stack: str | None,
    host: str | None,
    arms: str | None,
    num_users: int | None,
    requests_per_arm: int,
    ramp_interval_s: float,
    ramp_start: int,
    run_time_s: int | None,
    sleep_ms: int,
    queries: int,
) -> LoadPlan:
    """Check the Locust options the locustfile adds or depends on; raises InputError (one line).

    The URL comes from `--host` when given (an explicit argument beats the file), else from the
    outputs file's ApiUrl; the arms from the file, narrowed by `--arms`.
    """
    if outputs_file:
        target = load_target(outputs_file, stack)
        chosen = select_arms(target.arms, arms, where="--arms")
        base_url = host or target.api_url
    elif host and arms:
        chosen = parse_arms(arms, where="--arms")
        base_url = host
    else:
        raise InputError("give --outputs-file F (or --host URL together with --arms)")
    if num_users is None or num_users < 1:
        raise InputError(
            f"-u must be at least 1 (got {num_users}); it is users per arm x {len(chosen)} arms"
        )
    if num_users % len(chosen):
        raise InputError(
            f"-u {num_users} is not a multiple of the {len(chosen)} arms ({', '.join(chosen)}): "
            "every arm gets the same number of users"
        )
    if requests_per_arm < 0:
        raise InputError(f"--requests-per-arm must be >= 0 (got {requests_per_arm}; 0 = no budget)")
    if ramp_interval_s < 0:
        raise InputError(f"--ramp-interval must be >= 0 (got {ramp_interval_s}; 0 = no ramp)")
    users_per_arm = num_users // len(chosen)
    if ramp_interval_s and not 1 <= ramp_start <= users_per_arm:
        raise InputError(
            f"--ramp-start must be between 1 and the {users_per_arm} users per arm "
            f"(got {ramp_start})"
        )
    if sleep_ms < 0:
        raise InputError(f"--sleep-ms must be >= 0 (got {sleep_ms})")
    if queries < 0:
        raise InputError(f"--queries must be >= 0 (got {queries})")
    return LoadPlan(
        base_url=base_url.rstrip("/"),
        arms=chosen,
        users_per_arm=users_per_arm,
        requests_per_arm=requests_per_arm or None,
        ramp_interval_s=ramp_interval_s or None,
        ramp_start=ramp_start,
        run_time_s=run_time_s,
    )
