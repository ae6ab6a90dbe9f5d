"""What each arm would cost on AWS at the load a run measured: a pure model over a price table.

The question is not only "how many DB connections" but "at what bill": standard Lambda pays per
GB-second of billed duration, Managed Instances pay for whole instances (plus a 15% fee) however
busy they are, and a proxy bills a minimum capacity even when idle. Every figure comes with the
assumptions it rests on, so a reader can see which part is measured and which is assumed.

Prices live in files (analysis/prices/aws.toml, region-keyed, each price with its source and
date); `load_prices(path)` reads a user's override in the same shape (TOML or JSON).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions import contract
from input_errors import InputError

if TYPE_CHECKING:
    from analysis.locust_results import LocustArmStats

DEFAULT_PRICES = Path(__file__).parent / "prices" / "aws.toml"
DEFAULT_REGION = "us-east-1"
LOCAL_LABEL = "estimated from a local run, priced as if on AWS"
PRICES_IN_RUN_FOLDER = ("prices.toml", "prices.json")
"""A run folder holding one of these is priced with it (the sweep copies `--prices` there)."""


@dataclass(frozen=True)
class InstancePrice:
    usd_per_hour: float
    vcpus: int
    source: str


@dataclass(frozen=True)
class PriceTable:
    """One region's prices, in USD."""

    region: str
    requests_per_million: float
    arm64_gb_second: float
    managed_fee_share: float
    aurora_acu_hour: float
    proxy_acu_hour: float
    proxy_minimum_acu: float
    instances: dict[str, InstancePrice]
    sources: dict[str, str]
    """price name -> 'source, as of date', quoted in the assumptions."""


@dataclass(frozen=True)
class Deployment:
    """What the model must know about the deployment that a run folder does not record.

    Defaults are the CDK app's (cdk.json): 2048 MB, 2 GiB per vCPU, m8g.large, 3 instances.
    """

    region: str = DEFAULT_REGION
    memory_mb: int = 2048
    memory_gib_per_vcpu: float = 2.0
    instance_type: str = "m8g.large"
    min_instances: int = 3
    """Lambda launches three instances for AZ resiliency, whatever the EE count."""
    aurora_acu: float | None = None
    """The cluster's ACU (measured peak on AWS); None: unknown, the proxy minimum applies."""

    @property
    def vcpus_per_ee(self) -> float:
        return self.memory_mb / 1024 / self.memory_gib_per_vcpu


@dataclass(frozen=True)
class ArmLoad:
    """What an arm did in the run: requests over seconds, mean billed duration, peak EEs."""

    arm: str
    requests: int
    load_seconds: float
    mean_duration_ms: float | None
    execution_environments: float | None


@dataclass(frozen=True)
class Cost:
    usd_per_million_requests: float | None
    usd_per_hour_at_this_load: float | None
    assumptions: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "usd_per_million_requests": self.usd_per_million_requests,
            "usd_per_hour_at_this_load": self.usd_per_hour_at_this_load,
            "assumptions": list(self.assumptions),
        }


def _price(entry: Any, key: str, where: str, field: str = "usd") -> tuple[float, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get(field), int | float):
        raise InputError(f"{where}: {key} needs a number '{field}' (see {DEFAULT_PRICES})")
    if not entry.get("source") or not entry.get("as_of"):
        raise InputError(f"{where}: {key} needs 'source' and 'as_of' (where and when it was read)")
    return float(entry[field]), f"{entry['source']}, as of {entry['as_of']}"


def load_prices(region: str, path: Path | None = None) -> PriceTable:
    """The region's prices from `path` (TOML or JSON) or the shipped table; InputError names the
    file and what is wrong."""
    source = path or DEFAULT_PRICES
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the price file {source}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if source.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"price file {source} is not valid {source.suffix[1:]}: {exc}") from exc
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, dict) or region not in regions:
        known = ", ".join(regions) if isinstance(regions, dict) else "none"
        raise InputError(f"price file {source} has no region {region!r} (it has: {known})")
    table = regions[region]
    where = f"{source} [{region}]"
    names = {
        "requests": "lambda_requests_per_million",
        "gb_s": "lambda_arm64_gb_second",
        "aurora": "aurora_serverless_v2_acu_hour",
        "proxy": "rds_proxy_acu_hour",
    }
    values = {k: _price(table.get(n), n, where) for k, n in names.items()}
    fee = _price(
        table.get("managed_instances_fee_share"), "managed_instances_fee_share", where, "share"
    )
    proxy_entry = table["rds_proxy_acu_hour"]
    instances: dict[str, InstancePrice] = {}
    for name, entry in (table.get("ec2_on_demand") or {}).items():
        usd, said = _price(entry, f"ec2_on_demand.{name}", where, "usd_per_hour")
        vcpus = entry.get("vcpus")
        if not isinstance(vcpus, int) or vcpus < 1:
            raise InputError(f"{where}: ec2_on_demand.{name} needs 'vcpus', a whole number >= 1")
        instances[name] = InstancePrice(usd, vcpus, said)
    return PriceTable(
        region=region,
        requests_per_million=values["requests"][0],
        arm64_gb_second=values["gb_s"][0],
        managed_fee_share=fee[0],
        aurora_acu_hour=values["aurora"][0],
        proxy_acu_hour=values["proxy"][0],
        proxy_minimum_acu=float(proxy_entry.get("minimum_acu", 8)),
        instances=instances,
        sources={k: v[1] for k, v in values.items()} | {"fee": fee[1]},
    )


def _usd(value: float) -> str:
    """0.0000133334, not 1.33334e-05: prices as the price page prints them."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _requests_per_hour(load: ArmLoad) -> float:
    return load.requests / load.load_seconds * 3600


def _requests_cost(load: ArmLoad, prices: PriceTable) -> float:
    return _requests_per_hour(load) / 1e6 * prices.requests_per_million


def _finish(load: ArmLoad, per_hour: float | None, assumptions: list[str]) -> Cost:
    if per_hour is None or load.requests <= 0:
        return Cost(None, per_hour, assumptions)
    return Cost(per_hour / _requests_per_hour(load) * 1e6, per_hour, assumptions)


def standard_cost(load: ArmLoad, dep: Deployment, prices: PriceTable) -> Cost:
    """Requests plus GB-seconds of billed duration (arm64); billed duration is the measured mean
    response time, an upper bound of Lambda's own Duration."""
    gb = dep.memory_mb / 1024
    notes = [
        f"requests ${prices.requests_per_million}/M ({prices.sources['requests']})",
        f"arm64 ${_usd(prices.arm64_gb_second)}/GB-s at {dep.memory_mb} MB "
        f"({prices.sources['gb_s']})",
    ]
    if load.mean_duration_ms is None or load.load_seconds <= 0:
        return Cost(None, None, [*notes, "no mean duration or load time measured: no figure"])
    notes.append(
        f"billed duration = mean response time {load.mean_duration_ms:.1f} ms "
        "(Locust's, an upper bound of Lambda's Duration)"
    )
    duration_per_hour = (
        _requests_per_hour(load) * load.mean_duration_ms / 1000 * gb * prices.arm64_gb_second
    )
    return _finish(load, _requests_cost(load, prices) + duration_per_hour, notes)


def managed_instances(ees: float, dep: Deployment, instance_vcpus: int) -> int:
    """Instances the EEs need: EEs x vCPU per EE over the instance's vCPUs, rounded up, never
    fewer than the capacity provider's minimum."""
    needed = math.ceil(round(ees * dep.vcpus_per_ee / instance_vcpus, 9))
    return max(dep.min_instances, needed)


def managed_cost(load: ArmLoad, dep: Deployment, prices: PriceTable) -> Cost:
    """Requests plus instance-hours x on-demand price x (1 + fee); no duration charge."""
    instance = prices.instances.get(dep.instance_type)
    if instance is None:
        raise InputError(
            f"the price table for {prices.region} has no EC2 price for {dep.instance_type}: "
            "add it under ec2_on_demand in a --prices file"
        )
    ees = load.execution_environments or 0.0
    count = managed_instances(ees, dep, instance.vcpus)
    notes = [
        f"requests ${prices.requests_per_million}/M ({prices.sources['requests']})",
        f"{count} x {dep.instance_type} (${instance.usd_per_hour}/h, {instance.vcpus} vCPU; "
        f"{instance.source}) for {ees:g} EEs x {dep.vcpus_per_ee:g} vCPU, minimum "
        f"{dep.min_instances} instances",
        f"management fee {prices.managed_fee_share:.0%} of the EC2 price ({prices.sources['fee']})",
    ]
    if load.execution_environments is None:
        notes.append("no EE count measured: the minimum instances")
    if load.load_seconds <= 0:
        return Cost(None, None, notes)
    instances_per_hour = count * instance.usd_per_hour * (1 + prices.managed_fee_share)
    return _finish(load, _requests_cost(load, prices) + instances_per_hour, notes)


def proxy_hourly(dep: Deployment, prices: PriceTable) -> tuple[float, str]:
    """RDS Proxy on Aurora Serverless v2: the cluster's ACU, billed at least the minimum."""
    acu = max(prices.proxy_minimum_acu, dep.aurora_acu or 0.0)
    said = "unknown" if dep.aurora_acu is None else f"{dep.aurora_acu:g}"
    return acu * prices.proxy_acu_hour, (
        f"RDS Proxy {acu:g} ACU x ${prices.proxy_acu_hour}/ACU-h (cluster ACU {said}, minimum "
        f"{prices.proxy_minimum_acu:g}; {prices.sources['proxy']})"
    )


def proxy_cost(load: ArmLoad, dep: Deployment, prices: PriceTable) -> Cost:
    """The standard arm's cost plus RDS Proxy's ACU-hours."""
    base = standard_cost(load, dep, prices)
    hourly, note = proxy_hourly(dep, prices)
    if base.usd_per_hour_at_this_load is None:
        return Cost(None, None, [*base.assumptions, note])
    return _finish(load, base.usd_per_hour_at_this_load + hourly, [*base.assumptions, note])


def arm_cost(load: ArmLoad, dep: Deployment, prices: PriceTable) -> Cost:
    """The arm's model by name; an unknown arm gets no figure."""
    if load.arm not in contract.ARMS:
        return Cost(None, None, [f"no cost model for arm {load.arm!r}"])
    spec = contract.arm(load.arm)
    # The in-EE pooler costs nothing beyond the function's own memory and time: an arm
    # without it is priced as its execution model; a shared pooler adds RDS Proxy's ACU-hours.
    if spec.managed:
        return managed_cost(load, dep, prices)
    if spec.pooler is contract.Pooler.SHARED:
        return proxy_cost(load, dep, prices)
    return standard_cost(load, dep, prices)


def aurora_cost(dep: Deployment, prices: PriceTable) -> Cost:
    """Aurora Serverless v2 per hour, shown apart from the arms: every arm shares it."""
    acu = dep.aurora_acu
    note = f"Aurora Serverless v2 ${prices.aurora_acu_hour}/ACU-h ({prices.sources['aurora']})"
    if acu is None:
        return Cost(None, None, [note, "cluster ACU unknown (local run): no figure"])
    return Cost(None, acu * prices.aurora_acu_hour, [note, f"{acu:g} ACU (peak measured)"])


def deployment_of(manifest: dict[str, Any], acu: float | None) -> Deployment:
    outputs = ((manifest.get("stack") or {}).get("outputs")) or {}
    region = str(outputs.get("Region") or DEFAULT_REGION)
    return Deployment(region=region, aurora_acu=acu)


def run_prices_file(run_dir: Path) -> Path | None:
    """The run folder's own price file, if the sweep (or a user) put one there."""
    return next((run_dir / n for n in PRICES_IN_RUN_FOLDER if (run_dir / n).is_file()), None)


def mean_ms(locust: dict[str, LocustArmStats]) -> dict[str, float | None]:
    """Each arm's mean response time from Locust's totals: the billed-duration estimate."""
    return {arm: stats.average_ms for arm, stats in locust.items()}
