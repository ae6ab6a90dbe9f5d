"""Host CPU per second from /proc: the whole machine, the stack's processes, the load generator.

A local run shares the machine's cores between the arms, their runtimes and poolers, the
database and Locust. When the host is saturated, latency measures the machine rather than
Lambda; these samples let the report and the summary say when that happened.

Figures are percentages of the whole machine (all cores = 100 %), over the interval since the
previous sample:
- `cpu_percent`: every process on the host (/proc/stat, idle and iowait counted as idle);
- `stack_cpu_percent`: processes carrying the stack's tag (PostgreSQL, extensions, PgBouncers,
  runtimes) plus this process (the gateway, the function models, the recorder);
- `load_cpu_percent`: Locust's processes (by their command line, among this process's
  descendants: another run's Locust on the same machine is not ours).
A process that exits between two samples loses its last partial interval; a process first
seen is counted from its start, which is within the interval for all but the first sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from local.processes import TAG_ENV

PROC = Path("/proc")


def read_host_jiffies(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat's `cpu` line."""
    with (proc / "stat").open() as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    total = sum(fields[:8])
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


def process_jiffies(pid: int, proc: Path = PROC) -> int | None:
    """utime + stime of one process, or None once it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


@dataclass
class CpuSampler:
    """Keeps the previous readings so each sample is the use over the last interval."""

    tag: str | None
    tag_env: str = TAG_ENV
    own_pid: int = field(default_factory=os.getpid)
    proc: Path = PROC
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _host: tuple[int, int] | None = None
    _seen: dict[int, int] = field(default_factory=dict)
    _kind: dict[int, str | None] = field(default_factory=dict)

    def _classify(self, pid: int) -> str | None:
        """'stack', 'load' or None (someone else's); read once per pid."""
        if pid in self._kind:
            return self._kind[pid]
        kind: str | None = None
        if pid == self.own_pid:
            kind = "stack"
        else:
            try:
                cmdline = (self.proc / str(pid) / "cmdline").read_bytes()
                if b"locust" in cmdline and self._descends_from_us(pid):
                    kind = "load"
                elif self.tag is not None:
                    environ = (self.proc / str(pid) / "environ").read_bytes().split(b"\0")
                    if f"{self.tag_env}={self.tag}".encode() in environ:
                        kind = "stack"
            except OSError:  # gone, or not ours to read
                kind = None
        self._kind[pid] = kind
        return kind

    def _descends_from_us(self, pid: int) -> bool:
        """True when `pid` is a child, grandchild, ... of this process (our Locust, not some
        other run's on the same machine)."""
        for _ in range(64):
            try:
                text = (self.proc / str(pid) / "stat").read_text()
            except OSError:
                return False
            pid = int(text.rsplit(")", 1)[1].split()[1])
            if pid == self.own_pid:
                return True
            if pid <= 1:
                return False
        return False

    def sample(self) -> dict[str, float | int] | None:
        """This interval's use in % of the machine; None on the first call (no interval yet)."""
        busy, total = read_host_jiffies(self.proc)
        used = {"stack": 0, "load": 0}
        alive: set[int] = set()
        present = [int(e.name) for e in self.proc.iterdir() if e.name.isdigit()]
        for pid in present:
            kind = self._classify(pid)
            if kind is None:
                continue
            now = process_jiffies(pid, self.proc)
            if now is None:
                continue
            alive.add(pid)
            used[kind] += now - self._seen.get(pid, 0 if self._host is not None else now)
            self._seen[pid] = now
        for pid in [p for p in self._seen if p not in alive]:
            del self._seen[pid]
        listed = set(present)
        self._kind = {p: k for p, k in self._kind.items() if p in listed}
        previous, self._host = self._host, (busy, total)
        if previous is None or total <= previous[1]:
            return None
        elapsed = total - previous[1]  # jiffies over all cores
        return {
            "cores": self.cores,
            "cpu_percent": round(100 * (busy - previous[0]) / elapsed, 1),
            "stack_cpu_percent": round(100 * max(used["stack"], 0) / elapsed, 1),
            "load_cpu_percent": round(100 * max(used["load"], 0) / elapsed, 1),
        }
