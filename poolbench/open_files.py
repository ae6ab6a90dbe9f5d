"""Open-file limits: raised before a run, checked against what the scenario needs, and watched.

Every local execution environment costs the poolbench process about six descriptors (its
Runtime API's socket, the runtime's and the extension's connections, pipes), plus one per
worker's long poll on Managed Instances, plus one per Locust user at the gateway. At Debian's
default soft limit of 1024 (macOS: 256) a 300-user standard run ran out: `accept()` failed
thousands of times, requests failed and the run still looked complete. So the soft limit is
raised to the hard limit at start, as servers and load tools do; a scenario that needs more
than even the hard limit is refused in one line; and a run that hit EMFILE anyway is failed.
"""

from __future__ import annotations

import errno
import logging
import math
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from functions import contract
from input_errors import InputError
from local.settings import StackSettings

# Measured on a local run (60 standard EEs, 3 managed EEs x 16 slots, 120 users): 573
# descriptors in the poolbench process, about 6 per standard EE and 1 per gateway client.
# Since then each EE also holds a pidfd per process watched and a claimed port's lock.
# The estimate keeps a margin over those figures.
BASE_DESCRIPTORS = 128
PER_EE = 10
PER_USER = 2
# Beyond this nothing is asked of the kernel: macOS refuses RLIM_INFINITY as a soft limit.
SOFT_LIMIT_CAP = 1 << 20


def descriptors_needed(stack: StackSettings | None, users_per_arm: int) -> int:
    """A generous estimate of the descriptors the busiest poolbench process holds at peak.

    stack None is the AWS target: only Locust runs here, one connection per user.
    """
    if stack is None:
        return BASE_DESCRIPTORS + PER_USER * users_per_arm
    needed = BASE_DESCRIPTORS
    for arm in stack.arms:
        needed += PER_USER * users_per_arm
        if contract.arm(arm).managed:
            m = stack.managed
            # The scaler can overshoot what the load needs; allow twice that, within its bounds.
            ees = min(m.max_ees, max(m.min_ees, 2 * math.ceil(users_per_arm / m.slots_per_ee)))
            needed += ees * (PER_EE + m.slots_per_ee)
        else:
            needed += min(users_per_arm, stack.standard.concurrency_limit) * PER_EE
    return needed


def raise_soft_limit() -> tuple[int, int]:
    """Soft limit up to the hard one (children such as Locust inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = SOFT_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, SOFT_LIMIT_CAP)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ensure_open_files(needed: int) -> int:
    """Raises the soft limit, then refuses (InputError) a scenario it still cannot hold."""
    soft, hard = raise_soft_limit()
    limit = soft if soft != resource.RLIM_INFINITY else SOFT_LIMIT_CAP
    if limit < needed:
        raise InputError(
            f"this scenario needs about {needed} open files, but this shell allows {limit}"
            f" (hard limit {hard}): raise it with `ulimit -n {needed}` (as root, or in"
            " /etc/security/limits.conf), or run fewer users"
        )
    return limit


def is_emfile(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return True
    return "Too many open files" in record.getMessage()


class OpenFileWatch(logging.Filter):
    """Counts log records caused by running out of descriptors; shows only the first."""

    def __init__(self) -> None:
        super().__init__()
        self.errors = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_emfile(record):
            return True
        self.errors += 1
        return self.errors == 1

    def failure(self) -> str | None:
        if not self.errors:
            return None
        return (
            f"ran out of open files {self.errors} times (EMFILE): requests failed or were"
            " refused; raise `ulimit -n` and run again"
        )


@contextmanager
def watching_open_files() -> Iterator[OpenFileWatch]:
    """While the run lasts, every warning reaches stderr as before, EMFILE ones counted."""
    watch = OpenFileWatch()
    root = logging.getLogger()
    handler: logging.Handler | None = None
    targets = list(root.handlers)
    if not targets:  # what logging's last-resort handler would print, with our filter
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        targets = [handler]
    for target in targets:
        target.addFilter(watch)
    try:
        yield watch
    finally:
        for target in targets:
            target.removeFilter(watch)
        if handler is not None:
            root.removeHandler(handler)
