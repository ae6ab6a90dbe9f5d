"""The zygote's children are watched through a pidfd: above fd 1024 too (a stack of hundreds of
EEs has that many descriptors open; select(2) cannot take them), and never fooled by a pid
that the kernel hands to another process."""

from __future__ import annotations

import os
import resource
import subprocess

import pytest

from local.zygote import ForkedProcess


def test_a_pidfd_above_1024_is_polled_and_waited_for() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    child = subprocess.Popen(["sleep", "30"])
    try:
        watched = ForkedProcess(child.pid, ["sleep"])
        assert watched._pidfd is not None and watched._pidfd > 1024

        assert watched.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            watched.wait(0.05)
        child.kill()
        child.wait()
        assert watched.wait(5) == -1
        assert watched.poll() == -1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for fd in fillers:
            os.close(fd)
