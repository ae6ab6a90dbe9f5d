"""Scenario presets and the exact Locust command line for a run folder.

A preset is a named, frozen set of knobs; `resolve_scenario` applies the user's overrides and
checks them (one-line `InputError`s, before anything starts); `locust_command` turns the result
into the argv the orchestrator runs, so the command is recorded verbatim and anyone can re-run it
by hand against the same outputs file.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from input_errors import InputError
from loadtest.records import REQUESTS_DIR
from loadtest.target import select_arms

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
"""The locustfile every preset runs; absolute, so the command works from any directory."""

CSV_PREFIX = "locust"
"""`--csv <run>/locust` gives the contract's locust_stats.csv, locust_stats_history.csv, ..."""


@dataclass(frozen=True)
class Preset:
    """A named scenario. Users are per arm; exactly one of requests_per_arm and duration_s."""

    name: str
    description: str
    users: int
    requests_per_arm: int | None
    duration_s: int | None
    sleep_ms: int
    queries: int
    hold: bool
    spawn_rate: float | None = None
    """Users started per second over all arms; None starts them all at once, like `ab -c`."""
    ramp_interval_s: int | None = None
    """Double the users at most once per this many seconds (the `ramp` shape); None = no ramp."""
    ramp_start: int = 1
    """Users per arm at the start of a ramp."""
    faults: tuple[str, ...] = ()
    """`run --fault` specs the preset injects (KIND@SECONDS), unless --fault is given."""
    slots_per_ee: int | None = None
    """The local managed arm's requests per EE unless --slots-per-ee is given; None: the
    stack's default (Python's 16 per vCPU)."""
    target_utilisation: float | None = None
    """The local managed scaler's target unless --target-utilisation is given; None: the
    stack's default."""


SEED = Preset(
    name="seed",
    description="the article's `ab -c 100 -n 1000` per arm: 5 s requests, two queries",
    users=100,
    requests_per_arm=1000,
    duration_s=None,
    sleep_ms=5000,
    queries=2,
    hold=True,
    # The source experiment's capacity provider let 64 requests share one EE (its
    # ExecutionEnvironmentConcurrencyLimit).
    slots_per_ee=64,
)

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        SEED,
        Preset(
            name="smoke",
            description="a few short requests per arm; finishes in seconds (tests, checks)",
            users=4,
            requests_per_arm=12,
            duration_s=None,
            sleep_ms=200,
            queries=2,
            hold=True,
        ),
        replace(
            SEED,
            name="failover",
            description="the seed load with a database fast restart 20 s in (db-restart@20)",
            faults=("db-restart@20",),
        ),
        Preset(
            name="ramp",
            description="users double at most every 15 s up to 100 per arm, then hold (LMI's pace)",
            users=100,
            requests_per_arm=None,
            duration_s=90,
            sleep_ms=5000,
            queries=2,
            hold=True,
            ramp_interval_s=15,
            ramp_start=4,
            # AWS says traffic that more than doubles within the scaling window may be
            # throttled; a 50% target is the headroom that absorbs one doubling.
            target_utilisation=0.5,
        ),
    )
}


@dataclass(frozen=True)
class Scenario:
    """A preset with overrides applied and checked: everything one Locust run needs."""

    preset: str
    arms: tuple[str, ...]
    users: int
    """Users per arm (the manifest's `users`); Locust's `-u` is `total_users`."""
    requests_per_arm: int | None
    duration_s: int | None
    spawn_rate: float
    sleep_ms: int
    queries: int
    hold: bool
    processes: int
    ramp_interval_s: int | None
    ramp_start: int

    @property
    def total_users(self) -> int:
        """Users over all arms: Locust's `-u`."""
        return self.users * len(self.arms)

    def to_manifest(self) -> dict[str, object]:
        """The manifest's `scenario` object (docs/contracts.md), plus the ramp knobs."""
        data = asdict(self)
        data["arms"] = list(self.arms)
        return data


def get_preset(name: str) -> Preset:
    """The preset called `name`; the error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r} (valid presets: {', '.join(PRESETS)})") from None


def resolve_scenario(
    preset: str,
    *,
    target_arms: Sequence[str],
    arms: str | Sequence[str] | None = None,
    users: int | None = None,
    requests_per_arm: int | None = None,
    duration_s: int | None = None,
    spawn_rate: float | None = None,
    sleep_ms: int | None = None,
    queries: int | None = None,
    hold: bool | None = None,
    processes: int = 1,
    ramp_interval_s: int | None = None,
    ramp_start: int | None = None,
) -> Scenario:
    """Apply overrides (None = the preset's value) to a preset and check the result.

    `target_arms` are the arms the target has (`Target.arms`); `arms` narrows them. Giving
    `requests_per_arm` drops the preset's duration and vice versa; giving both is an error.
    """
    base = get_preset(preset)
    wanted = arms if arms is None or isinstance(arms, str) else ",".join(arms)
    chosen = select_arms(tuple(target_arms), wanted, where="--arms")
    if requests_per_arm is not None and duration_s is not None:
        raise InputError("give --requests or --duration, not both")
    if requests_per_arm is not None:
        base = replace(base, requests_per_arm=requests_per_arm, duration_s=None)
    elif duration_s is not None:
        base = replace(base, requests_per_arm=None, duration_s=duration_s)
    checks: list[tuple[bool, str]] = [
        (users is not None and users < 1, f"--users must be at least 1 (got {users})"),
        (
            base.requests_per_arm is not None and base.requests_per_arm < 1,
            f"--requests must be at least 1 (got {base.requests_per_arm})",
        ),
        (
            base.duration_s is not None and base.duration_s < 1,
            f"--duration must be at least 1 second (got {base.duration_s})",
        ),
        (
            spawn_rate is not None and spawn_rate <= 0,
            f"--spawn-rate must be > 0 (got {spawn_rate})",
        ),
        (sleep_ms is not None and sleep_ms < 0, f"--sleep-ms must be >= 0 (got {sleep_ms})"),
        (queries is not None and queries < 0, f"--queries must be >= 0 (got {queries})"),
        (processes < 1, f"--processes must be at least 1 (got {processes})"),
        (
            ramp_interval_s is not None and ramp_interval_s < 1,
            f"--ramp-interval must be at least 1 second (got {ramp_interval_s})",
        ),
        (
            ramp_start is not None and ramp_start < 1,
            f"--ramp-start must be at least 1 (got {ramp_start})",
        ),
    ]
    for failed, message in checks:
        if failed:
            raise InputError(message)
    if base.requests_per_arm is None and base.duration_s is None:
        raise InputError(f"preset {base.name!r} needs --requests or --duration")
    per_arm = users if users is not None else base.users
    interval = ramp_interval_s if ramp_interval_s is not None else base.ramp_interval_s
    if interval is not None and base.requests_per_arm is not None and processes > 1:
        raise InputError(
            "a ramp with a request budget needs --processes 1 (the budget is split "
            "when all users have started, which a ramp never does at once)"
        )
    total = per_arm * len(chosen)
    return Scenario(
        preset=base.name,
        arms=chosen,
        users=per_arm,
        requests_per_arm=base.requests_per_arm,
        duration_s=base.duration_s,
        spawn_rate=float(spawn_rate if spawn_rate is not None else base.spawn_rate or total),
        sleep_ms=sleep_ms if sleep_ms is not None else base.sleep_ms,
        queries=queries if queries is not None else base.queries,
        hold=hold if hold is not None else base.hold,
        processes=processes,
        ramp_interval_s=interval,
        ramp_start=min(ramp_start if ramp_start is not None else base.ramp_start, per_arm),
    )


def free_port() -> int:
    """A TCP port free on this host right now, for the master of a `--processes` run.

    Locust's default 5557 would make two concurrent multi-process runs collide.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _number(value: float) -> str:
    """`200` rather than `200.0` on the command line, `0.5` kept."""
    return str(int(value)) if float(value).is_integer() else str(value)


def locust_command(
    scenario: Scenario,
    *,
    outputs_file: str | Path,
    run_dir: str | Path,
    stack: str | None = None,
    loglevel: str = "INFO",
    logfile: str | Path | None = None,
    python: str | None = None,
    master_port: int | None = None,
    html: bool = False,
) -> list[str]:
    """The argv of the headless Locust run for `scenario`, writing into `run_dir`.

    - `--only-summary`: the orchestrator shows its own progress; the summary still ends the log.
    - `--exit-code-on-error 0`: failed requests are a result (the seed expects some on LMI), so
      a non-zero exit means Locust itself failed (2 = bad input from the locustfile).
    - `--processes N` (N > 1) also pins the master port (a free one unless `master_port`).
    - `--requests-dir <run>/requests`: every process writes a row per request there
      (loadtest/records.py), the source of every percentile.
    """
    run = Path(run_dir)
    argv = [
        python or sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(scenario.total_users),
        "-r",
        _number(scenario.spawn_rate),
        "--outputs-file",
        str(outputs_file),
        "--arms",
        ",".join(scenario.arms),
        "--sleep-ms",
        str(scenario.sleep_ms),
        "--queries",
        str(scenario.queries),
        "--hold",
        "true" if scenario.hold else "false",
        "--csv",
        str(run / CSV_PREFIX),
        "--ees-prefix",
        str(run / CSV_PREFIX),
        "--csv-full-history",
        "--requests-dir",
        str(run / REQUESTS_DIR),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        loglevel,
    ]
    if stack is not None:
        argv += ["--stack", stack]
    if scenario.requests_per_arm is not None:
        argv += ["--requests-per-arm", str(scenario.requests_per_arm)]
    if scenario.duration_s is not None:
        argv += ["--run-time", f"{scenario.duration_s}s"]
    if scenario.ramp_interval_s is not None:
        argv += [
            "--ramp-interval",
            str(scenario.ramp_interval_s),
            "--ramp-start",
            str(scenario.ramp_start),
        ]
    if scenario.processes > 1:
        port = master_port if master_port is not None else free_port()
        argv += [
            "--processes",
            str(scenario.processes),
            "--master-bind-port",
            str(port),
            # Locust's master listens on every interface by default; these workers are local.
            "--master-bind-host",
            "127.0.0.1",
            "--master-port",
            str(port),
        ]
    if logfile is not None:
        argv += ["--logfile", str(logfile)]
    if html:
        argv += ["--html", str(run / "locust_report.html")]
    return argv
