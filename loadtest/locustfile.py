"""Locust load for poolbench: the same closed-loop users on every arm, like `ab -c`.

Run it plainly against any target (the outputs file names the API and its arms):

    locust -f loadtest/locustfile.py --headless -u 200 -r 200 --outputs-file outputs.json \
        --requests-per-arm 1000 --sleep-ms 5000 --queries 2 --hold true

- One user class per arm; `-u` is users per arm x arms, and each arm gets exactly its share
  through `fixed_count` (weights would only be equal on average).
- Users never wait between requests; a request is
  `GET <ApiUrl>/<arm>?sleep_ms=..&queries=..&hold=..` named after the arm;
  anything but 2xx is a failure (Locust's default).
- `--requests-per-arm N` stops each arm after exactly N requests, then ends the run. With
  `--processes`/workers the master splits N per arm over the workers by the users each runs.
- `--requests-dir D` writes one CSV row per request into D, a file per Locust process
  (workers too): the exact latencies every percentile is computed from (loadtest/records.py).
- `--ramp-interval S` swaps the constant load for a ramp (users double at most every S seconds).

Everything Locust-specific lives here; the checks and arithmetic are in locust-free modules
(`plan`, `budget`, `target`) so they can be unit-tested without gevent's monkey-patching.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from locust import HttpUser, LoadTestShape, constant, events, task
from locust import stats as locust_stats
from locust.runners import MasterRunner, WorkerRunner

from input_errors import InputError
from loadtest.budget import ArmBudget, split_budget
from loadtest.plan import LoadPlan, make_plan, ramp_users_per_arm
from loadtest.records import RecordWriter

logger = logging.getLogger("poolbench.loadtest")

BUDGET_MESSAGE = "poolbench_budget"
"""Master -> worker: this worker's share of each arm's budget, `{arm: n}`."""
DONE_MESSAGE = "poolbench_done"
"""Worker -> master: this worker completed its shares (its stats were sent just before)."""
REQUEST_TIMEOUT_S = 120.0
"""A request that hangs longer than API Gateway ever would (29 s) is a failure, not a hang."""


class _RunState:
    """Per-process state of one run: the plan (master/local), the runner, the budget."""

    def __init__(self) -> None:
        self.plan: LoadPlan | None = None
        self.runner: Any = None
        self.budget = ArmBudget()
        self.budget_ready = Event()
        self.workers_pending: set[str] = set()
        self.budget_sent = False
        self.records: RecordWriter | None = None


_STATE = _RunState()

EES_SUFFIX = "_ees"
"""`<csv prefix>_ees-<pid>.jsonl`: per second and arm, the EEs that served a request."""


class ServingEEs:
    """Which execution environment served each successful request, per arm per second.

    Every response names its EE (`ee` in the body, docs/contracts.md), on AWS and locally, so
    counting distinct EEs per second from the responses gives the same figure on both
    targets, where CloudWatch has none. A request marks its EE busy in every second from its
    start to its end. Each process writes its own file at quit (workers included); the
    analysis takes the union.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, str], set[str]] = {}

    def on_request(
        self,
        name: str,
        response: Any = None,
        exception: Any = None,
        start_time: float | None = None,
        **_kwargs: Any,
    ) -> None:
        if exception is not None or response is None:
            return
        try:
            ee = response.json().get("ee")
        except Exception:  # not a handler's body (a gateway error page): nothing to count
            return
        if not isinstance(ee, str) or not ee:
            return
        end = time.time()
        for second in range(int(start_time if start_time is not None else end), int(end) + 1):
            self.seen.setdefault((second, name), set()).add(ee)

    def write(self, prefix: str) -> None:
        if not self.seen:
            return
        path = Path(f"{prefix}{EES_SUFFIX}-{os.getpid()}.jsonl")
        with path.open("w", encoding="utf-8") as fh:
            for (second, arm), ees in sorted(self.seen.items()):
                fh.write(json.dumps({"epoch": second, "arm": arm, "ees": sorted(ees)}) + "\n")
        self.seen = {}


_EES = ServingEEs()
_PARKED = Event()  # never set: users whose arm is finished wait here until the run ends


def _add_arguments(parser: Any) -> None:
    """Scenario knobs as Locust custom arguments, so they reach workers with the spawn message."""
    group = parser.add_argument_group("poolbench")
    group.add_argument(
        "--outputs-file",
        default=None,
        env_var="POOLBENCH_OUTPUTS_FILE",
        help="outputs file naming ApiUrl and Arms (cdk deploy / poolbench local up)",
    )
    group.add_argument("--stack", default=None, help="stack key, when the outputs file has several")
    group.add_argument(
        "--ees-prefix",
        default=None,
        help="where each process writes the EEs that served it (<prefix>_ees-<pid>.jsonl); "
        "default --csv's prefix (workers lose that one, so `poolbench run` passes this)",
    )
    group.add_argument("--arms", default="", help="comma-separated arms to drive (default: all)")
    group.add_argument("--sleep-ms", type=int, default=5000, help="handler sleep per request")
    group.add_argument("--queries", type=int, default=2, help="queries per request")
    group.add_argument(
        "--hold", choices=["true", "false"], default="true", help="hold one connection per request"
    )
    group.add_argument(
        "--requests-per-arm",
        type=int,
        default=0,
        help="stop after exactly this many requests per arm, then end the run (0 = no budget)",
    )
    group.add_argument(
        "--ramp-interval",
        type=float,
        default=0.0,
        help="ramp: double the users at most every this many seconds (0 = all at once)",
    )
    group.add_argument("--ramp-start", type=int, default=1, help="ramp: users per arm at start")
    group.add_argument(
        "--requests-dir",
        default=None,
        help="write one CSV row per request into this folder, a file per Locust process",
    )


class RampShape(LoadTestShape):
    """Users per arm start at `ramp_start` and double once per interval up to `-u`.

    `abstract = True` keeps Locust from picking this class up on its own (it runs any concrete
    shape class it finds in a locustfile, which would change every other preset); the init hook
    installs an instance only when `--ramp-interval` is given. A shape ignores `--run-time`
    (Locust arms that timer only after the shape ends), so the shape ends the run itself.
    """

    abstract = True

    def __init__(self, plan: LoadPlan) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.plan = plan

    def tick(self) -> tuple[int, float] | None:
        """Total users now, started all at once (spawn rate = total)."""
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if self.plan.run_time_s is not None and elapsed >= self.plan.run_time_s:
            return None
        assert self.plan.ramp_interval_s is not None
        per_arm = ramp_users_per_arm(
            elapsed,
            start=self.plan.ramp_start,
            target=self.plan.users_per_arm,
            interval_s=self.plan.ramp_interval_s,
        )
        total = per_arm * len(self.plan.arms)
        return total, float(total)


class ArmUser(HttpUser):
    """One closed-loop client of one arm; subclasses only name the arm."""

    abstract = True
    arm: ClassVar[str]
    wait_time = constant(0)
    fixed_count = 0  # set per run by the init hook: users per arm

    def __init__(self, environment: Any) -> None:
        # Workers learn the host from the master's spawn message (environment.host), not from
        # the class attribute Locust sets only on local and master runners.
        self.host = environment.host
        super().__init__(environment)  # type: ignore[no-untyped-call]

    @task
    def call_arm(self) -> None:
        """One request, if the arm's budget allows; otherwise park until the run ends."""
        options = self.environment.parsed_options
        if options.requests_per_arm:
            # Workers wait for the master's share; local runners have it from test_start.
            _STATE.budget_ready.wait()
            if not _STATE.budget.take(self.arm):
                # Parked, not stopped: a stopped user would be respawned by a ramp's next tick.
                _PARKED.wait()
        self.client.get(
            f"/{self.arm}",
            name=self.arm,
            params={
                "sleep_ms": options.sleep_ms,
                "queries": options.queries,
                "hold": options.hold,
            },
            timeout=REQUEST_TIMEOUT_S,
        )


class StandardUser(ArmUser):
    """The standard Lambda arm: one request per execution environment."""

    arm = "standard"


class ManagedUser(ArmUser):
    """The Lambda Managed Instances arm: many requests per execution environment."""

    arm = "managed"


class ProxyUser(ArmUser):
    """The standard-Lambda-behind-a-shared-pooler arm (RDS Proxy's stand-in)."""

    arm = "proxy"


class DirectUser(ArmUser):
    """Standard Lambda without a pooler: the handler connects straight to the database."""

    arm = "direct"


class ManagedDirectUser(ArmUser):
    """Managed Instances without a pooler: each slot's process holds its own connection."""

    arm = "managed-direct"


ARM_USERS: Mapping[str, type[ArmUser]] = {
    cls.arm: cls for cls in (StandardUser, ManagedUser, ProxyUser, DirectUser, ManagedDirectUser)
}


def _fail(message: str) -> None:
    """Bad input ends the process with one line and exit code 2, like `poolbench`."""
    sys.stderr.write(f"poolbench: error: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


def _plan_from_options(options: Any) -> LoadPlan:
    return make_plan(
        outputs_file=options.outputs_file,
        stack=options.stack,
        host=options.host,
        arms=options.arms,
        num_users=options.num_users,
        requests_per_arm=options.requests_per_arm,
        ramp_interval_s=options.ramp_interval,
        ramp_start=options.ramp_start,
        run_time_s=options.run_time,
        sleep_ms=options.sleep_ms,
        queries=options.queries,
    )


def _on_init(environment: Any, runner: Any, **_kwargs: Any) -> None:
    """Resolve the plan (master/local), choose the users and the shape, wire the budget."""
    _STATE.runner = runner
    environment.events.test_start.add_listener(_on_test_start)
    # Recorded before the budget sees it: the last request's row is written before "done".
    environment.events.request.add_listener(_record_request)
    environment.events.request.add_listener(_on_request)
    prefix = environment.parsed_options.ees_prefix or environment.parsed_options.csv_prefix
    if prefix and not isinstance(runner, MasterRunner):
        environment.events.request.add_listener(_EES.on_request)
        environment.events.quitting.add_listener(lambda **_kw: _EES.write(prefix))
    environment.events.test_stop.add_listener(_flush_records)
    environment.events.quitting.add_listener(_close_records)
    if isinstance(runner, WorkerRunner):
        # Everything comes from the master: host and custom options with the spawn message,
        # the budget share with BUDGET_MESSAGE.
        runner.register_message(BUDGET_MESSAGE, _on_budget_message)
        return
    try:
        plan = _plan_from_options(environment.parsed_options)
    except InputError as exc:
        _fail(str(exc))
        return
    if plan.requests_per_arm and plan.ramp_interval_s and isinstance(runner, MasterRunner):
        _fail("--requests-per-arm with --ramp-interval needs a single process (no --processes)")
    _STATE.plan = plan
    environment.host = plan.base_url
    chosen = [ARM_USERS[arm] for arm in plan.arms]
    for user_class in chosen:
        user_class.fixed_count = plan.users_per_arm
        user_class.host = plan.base_url
    environment.user_classes[:] = chosen
    if plan.ramp_interval_s:
        shape = RampShape(plan)
        shape.runner = runner
        environment.shape_class = shape
    if environment.parsed_options.csv_prefix:
        environment.events.quitting.add_listener(_let_csv_writer_catch_up)
    if isinstance(runner, MasterRunner):
        runner.register_message(DONE_MESSAGE, _on_done_message)
        environment.events.spawning_complete.add_listener(_on_master_spawning_complete)
    logger.info(
        "poolbench: %s users per arm on %s at %s%s",
        plan.users_per_arm,
        ",".join(plan.arms),
        plan.base_url,
        f", {plan.requests_per_arm} requests per arm" if plan.requests_per_arm else "",
    )


def _let_csv_writer_catch_up(**_kwargs: Any) -> None:
    """Give Locust's CSV writer one more pass before it closes its files.

    It rewrites locust_stats.csv once a second and never at shutdown (locustio/locust#1806),
    so a run that ends between two passes would leave the last requests out of the CSV while
    the printed summary has them; the request budget must be exact in both.
    """
    gevent.sleep(locust_stats.CSV_STATS_INTERVAL_SEC + 0.25)


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    """A fresh budget per test: local runners hold it whole, workers wait for their share."""
    _STATE.budget = ArmBudget()
    _STATE.budget_ready.clear()
    _STATE.budget_sent = False
    plan = _STATE.plan
    if plan is None or plan.requests_per_arm is None or isinstance(_STATE.runner, MasterRunner):
        return  # a worker (no plan), no budget, or a master that hands out shares later
    _STATE.budget.assign(dict.fromkeys(plan.arms, plan.requests_per_arm))
    _STATE.budget_ready.set()


def _record_request(
    name: str,
    response_time: float,
    start_time: float | None = None,
    response: Any = None,
    exception: Any = None,
    **_kwargs: Any,
) -> None:
    """One row per finished request (success or failure) in this process's record file."""
    records = _STATE.records
    if records is None:
        directory = getattr(_STATE.runner.environment.parsed_options, "requests_dir", None)
        if not directory:
            return
        role = "worker" if isinstance(_STATE.runner, WorkerRunner) else "local"
        records = _STATE.records = RecordWriter(Path(directory), role)
    status = getattr(response, "status_code", None)
    records.write(
        start=float(start_time or 0.0),
        arm=name,
        latency_ms=float(response_time),
        ok=exception is None,
        status=int(status) if isinstance(status, int) else None,
        body=getattr(response, "content", None),
        error=exception,
    )


def _flush_records(**_kwargs: Any) -> None:
    if _STATE.records is not None:
        _STATE.records.flush()


def _close_records(**_kwargs: Any) -> None:
    """Every process closes its own file when it quits (Locust fires `quitting` in each)."""
    if _STATE.records is not None:
        _STATE.records.close()


def _on_request(name: str, **_kwargs: Any) -> None:
    """Count a finished request of a budgeted arm; end (or report) when every arm is done."""
    budget = _STATE.budget
    if not budget.assigned:
        return
    budget.complete(name)
    if budget.report_done_once():
        _finish()


def _finish() -> None:
    """This process completed its budget: quit (local) or tell the master (worker)."""
    runner = _STATE.runner
    if isinstance(runner, WorkerRunner):
        # Stats first, on the same ordered channel, so the master has every request before
        # it sees "done" and quits.
        data: dict[str, Any] = {}
        runner.environment.events.report_to_master.fire(  # type: ignore[no-untyped-call]
            client_id=runner.client_id, data=data
        )
        runner.send_message("stats", data)
        runner.send_message(DONE_MESSAGE, {"shares": _STATE.budget.shares})
        return
    logger.info("poolbench: every arm completed its request budget, ending the run")
    gevent.spawn(runner.quit)


def _on_budget_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    """Worker: take this worker's share and release its users."""
    shares = {str(arm): int(count) for arm, count in msg.data.items()}
    _STATE.budget.assign(shares)
    _STATE.budget_ready.set()
    logger.info("poolbench: budget share %s", shares)
    if _STATE.budget.report_done_once():
        _finish()


def _on_master_spawning_complete(user_count: int, **_kwargs: Any) -> None:
    """Master: once every worker reported its users, split each arm's budget by them."""
    plan = _STATE.plan
    if plan is None or plan.requests_per_arm is None or _STATE.budget_sent:
        return
    _STATE.budget_sent = True
    gevent.spawn(_send_shares, _STATE.runner, plan)


def _send_shares(runner: Any, plan: LoadPlan) -> None:
    """Wait until the workers' reported users add up, then send every worker its shares."""
    assert plan.requests_per_arm is not None
    names = {arm: ARM_USERS[arm].__name__ for arm in plan.arms}
    deadline = 60.0
    waited = 0.0
    while True:
        clients = sorted(
            runner.clients.ready + runner.clients.spawning + runner.clients.running,
            key=lambda client: runner.get_worker_index(client.id),
        )
        counts = {
            arm: [int(client.user_classes_count.get(name, 0)) for client in clients]
            for arm, name in names.items()
        }
        if all(sum(per_worker) == plan.users_per_arm for per_worker in counts.values()):
            break
        if waited >= deadline:
            logger.error("poolbench: workers never reported all users %s; quitting", counts)
            runner.environment.process_exit_code = 2
            runner.quit()
            return
        gevent.sleep(0.05)
        waited += 0.05
    splits = {arm: split_budget(plan.requests_per_arm, counts[arm]) for arm in plan.arms}
    _STATE.workers_pending = {client.id for client in clients}
    for position, client in enumerate(clients):
        shares = {arm: splits[arm][position] for arm in plan.arms}
        runner.send_message(BUDGET_MESSAGE, shares, client_id=client.id)
    logger.info("poolbench: budget per worker %s", splits)


def _on_done_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    """Master: a worker finished its shares; quit when the last one has."""
    _STATE.workers_pending.discard(msg.node_id)
    if not _STATE.workers_pending and _STATE.budget_sent:
        logger.info("poolbench: every arm completed its request budget, ending the run")
        gevent.spawn(environment.runner.quit)


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
