"""The Node.js function in a local EE, under the real AWS runtime client (npm aws-lambda-ric 4).

What the client does, read in its source (functions/nodejs/node_modules/aws-lambda-ric/
index.mjs, 4.0.2; github aws/aws-lambda-nodejs-runtime-interface-client, src/):
- `ignition()` (worker/ignition): with AWS_LAMBDA_MAX_CONCURRENCY set (`isMultiConcurrentMode`,
  the variable's presence, not its value) the main thread only starts a `WorkerManager`; unset,
  the main thread itself is the runtime: a standard, single-request EE.
- `WorkerManager.start()` (worker/worker-manager): `getWorkerCount()` worker threads, from
  AWS_LAMBDA_NODEJS_WORKER_COUNT, else 8 x the CPUs of the cgroup's cpu.max (os.cpus() when
  unlimited). Each thread runs `createRuntime()`: it loads the handler (init runs once per
  thread) and polls /next on its own.
- `Runtime.processMultiConcurrent()` (runtime/runtime): `await next()`, then the invoke is
  started with `setImmediate` and not awaited, and the loop polls again at once. So a thread
  holds any number of invokes in flight (async handlers); the client sets no per-thread or
  per-EE limit: the platform's Runtime API hands out at most AWS_LAMBDA_MAX_CONCURRENCY.
  `processSingleConcurrent()` awaits each invoke before the next poll: one at a time.
- `/next` goes through the native addon (rapid-client.node, `Next` is a Napi::AsyncWorker), so
  each waiting poll holds a thread of libuv's pool, which is per process (UV_THREADPOOL_SIZE,
  default 4) and shared by every worker thread: at most that many polls are open at once.

So the local EE runs the client as Lambda would, with the worker count set explicitly: the
client's default for a 1-vCPU EE (8), as the stack's default function (2048 MB at 2 GiB per
vCPU) gets, rather than 8 x this machine's cores. A managed EE of the local stack also gets
the UV_THREADPOOL_SIZE the CDK app sets (``threadpool_for``): workers + libuv's 4.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from functions import contract
from input_errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_FUNCTION_DIR = REPO_ROOT / "functions" / "nodejs"
PROJECT_NODE = REPO_ROOT / "node_modules" / ".bin" / "node"
# AWS's default for Node.js on Managed Instances: 64 concurrent requests per vCPU (FACTS.md).
NODE_SLOTS_PER_VCPU = 64


@dataclass(frozen=True)
class NodeRuntime:
    """How a local EE starts the Node.js function: node, the client, the handler, the threads."""

    node: Path = PROJECT_NODE
    code_dir: Path = NODE_FUNCTION_DIR
    handler: str = "index.handler"
    # AWS_LAMBDA_NODEJS_WORKER_COUNT for a managed EE (the client's default for 1 vCPU)
    workers_per_ee: int = contract.node_workers(1)
    memory_mb: int = 2048  # AWS_LAMBDA_FUNCTION_MEMORY_SIZE: the stack's function memory

    @property
    def client(self) -> Path:
        return self.code_dir / "node_modules" / "aws-lambda-ric" / "index.mjs"

    def check(self) -> NodeRuntime:
        """Fails before any EE starts when bootstrap has not built the runtime client."""
        missing = [
            str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)
            for p in (self.node, self.client, self.client.with_name("rapid-client.node"))
            if not p.exists()
        ]
        if missing:
            raise InputError(
                f"--runtime nodejs needs {', '.join(missing)}: run scripts/bootstrap"
                " (it installs Node 24 and builds aws-lambda-ric)"
            )
        if self.workers_per_ee < 1:
            raise InputError("the Node.js worker count per EE must be at least 1")
        return self

    def argv(self) -> list[str]:
        """The client's own entry point; it takes the handler from _HANDLER, not argv."""
        return [str(self.node), str(self.client)]

    def env(self, max_concurrency: int | None, function_name: str) -> dict[str, str]:
        """What Lambda sets and this client insists on: it fails every invoke (and so its
        EE) without the memory size and log group (`ContextBuilder.validateEnvironment`)."""
        env = {
            "_HANDLER": self.handler,
            "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs24.x",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        }
        if max_concurrency:
            env["AWS_LAMBDA_NODEJS_WORKER_COUNT"] = str(self.workers_per_ee)
        return env

    def threadpool_for(self, max_concurrency: int | None) -> dict[str, str]:
        """The function configuration a managed EE gets, as the CDK app sets it on AWS: a
        libuv pool that the worker threads' polls cannot fill (contract.node_threadpool_size,
        for the one vCPU the worker count models)."""
        if not max_concurrency:
            return {}
        size = contract.node_threadpool_size(self.workers_per_ee)
        return {contract.ENV_UV_THREADPOOL_SIZE: str(size)}

    def ready_pollers(self, max_concurrency: int | None, threadpool_size: int) -> int:
        """How many /next polls mean init is done: standard, the one runtime; managed, as many
        as can be open at once (the worker threads, bounded by libuv's pool, above)."""
        if not max_concurrency:
            return 1
        return min(self.workers_per_ee, threadpool_size)


def node_versions(runtime: NodeRuntime) -> dict[str, str]:
    """For the run's manifest: the Node that ran, the runtime client, the driver."""
    out = subprocess.run(
        [str(runtime.node), "--version"], capture_output=True, text=True, check=False
    )
    modules = runtime.code_dir / "node_modules"
    versions = {"node": out.stdout.strip().removeprefix("v") or "unknown"}
    for package in ("aws-lambda-ric", "pg"):
        manifest = modules / package / "package.json"
        versions[package] = str(json.loads(manifest.read_text())["version"])
    return versions
