"""A zygote child is watched through its pidfd even when the stack holds more than 1,024
descriptors (a seed run does): select() refused those, and 446 of 1,000 requests got 502."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from local.zygote import ForkedProcess


def test_a_child_watched_through_a_high_descriptor_is_seen_alive_then_gone() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"the hard open-file limit ({hard}) is below what the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # push fds past 1,024
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        watched = ForkedProcess(child.pid, ["sleep"])
        assert watched._pidfd is not None and watched._pidfd > 1024
        assert watched.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            watched.wait(0.1)
        child.kill()
        child.wait()
        assert watched.wait(5) == -1
        assert watched.poll() == -1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
