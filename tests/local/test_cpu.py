"""local/cpu.py against the real /proc: busy processes of the stack and of our Locust are
seen for the CPU they used, checked against the kernel's own account of the child (wait4's
rusage), so the test holds on a machine busy with other work too."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from local.cpu import CpuSampler, read_host_jiffies
from local.processes import TAG_ENV

SPIN = "import sys\nwhile True: pass"


def spin_and_sample(
    samplers: list[CpuSampler], argv_tail: list[str], env: dict[str, str]
) -> tuple[list[dict[str, float | int]], float]:
    """Runs a spinning child for about a second between two samples of each sampler;
    returns the second samples and the percent of the machine the child used meanwhile."""
    spin = subprocess.Popen([sys.executable, "-c", SPIN, *argv_tail], env=env)
    try:
        time.sleep(0.3)  # past its start-up
        for sampler in samplers:
            sampler.sample()
        started = time.monotonic()
        cpu_at_start = _child_cpu_s(spin.pid)
        time.sleep(1.0)
        second = [sampler.sample() for sampler in samplers]
        wall = time.monotonic() - started
    finally:
        spin.kill()
    _, status, usage = os.wait4(spin.pid, 0)  # reaped here, for its rusage
    spin.returncode = os.waitstatus_to_exitcode(status)
    used = usage.ru_utime + usage.ru_stime - cpu_at_start
    cores = os.cpu_count() or 1
    assert all(s is not None for s in second)
    return [s for s in second if s is not None], 100 * used / (cores * wall)


def _child_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:  # noqa: PTH123
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_busy_tagged_process_is_counted_as_the_stacks() -> None:
    # Given a process spinning, tagged as the stack's; this test process is not the stack
    tag = f"cpu-test-{os.getpid()}"
    sampler = CpuSampler(tag=tag, own_pid=-1)
    (sample,), expected = spin_and_sample([sampler], [], {**os.environ, TAG_ENV: tag})
    # Then the stack's share is what the kernel says the child used, and the host no less
    assert sample["stack_cpu_percent"] == pytest.approx(expected, rel=0.25, abs=3)
    assert sample["stack_cpu_percent"] > 5
    assert sample["cpu_percent"] >= sample["stack_cpu_percent"] - 3
    assert sample["load_cpu_percent"] == 0


def test_our_locust_is_the_load_and_someone_elses_is_not() -> None:
    # Given a spinning child whose command line names locust
    ours = CpuSampler(tag=None)  # this process is its parent
    other = CpuSampler(tag=None, own_pid=-1)  # someone else's run: not its parent
    (mine, theirs), expected = spin_and_sample([ours, other], ["locust"], dict(os.environ))
    assert mine["load_cpu_percent"] == pytest.approx(expected, rel=0.25, abs=3)
    assert mine["load_cpu_percent"] > 5
    assert theirs["load_cpu_percent"] == 0


def test_host_jiffies_grow() -> None:
    busy, total = read_host_jiffies()
    time.sleep(0.05)
    busy2, total2 = read_host_jiffies()
    assert total2 > total and busy2 >= busy
