"""`run --target aws --fault db-restart@S`: the writer instance rebooted during the load.

A reboot, not a failover: the stack deploys a writer and no reader, and a reboot is what a
single-instance Aurora cluster's clients see of a failover (every connection cut, the
endpoint back once the instance is). With a reader, `aws rds failover-db-cluster` is the
closer test; poolbench does not do it for you. Whoever runs poolbench needs
rds:DescribeDBClusters on the cluster and rds:RebootDBInstance on its writer instance.
The in-environment faults (pooler-kill, runtime-kill) cannot be reached from outside Lambda.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from input_errors import InputError

AWS_FAULT_KINDS = ("db-restart",)


def check_aws_faults(kinds: list[str]) -> None:
    for kind in kinds:
        if kind not in AWS_FAULT_KINDS:
            raise InputError(
                f"--fault {kind} is local only: on AWS poolbench cannot reach inside an"
                " execution environment; use db-restart (a reboot of the writer instance)"
            )


def writer_instance(rds: Any, cluster: str) -> str:
    """The cluster's writer, from DescribeDBClusters."""
    (found,) = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"]
    for member in found.get("DBClusterMembers", []):
        if member.get("IsClusterWriter"):
            return str(member["DBInstanceIdentifier"])
    raise RuntimeError(f"cluster {cluster} has no writer instance")


def inject_aws(kind: str, outputs: Mapping[str, str], rds: Any) -> dict[str, str]:
    """Reboots the writer now (RebootDBInstance returns at once; the reboot takes a while)."""
    if kind != "db-restart":
        raise RuntimeError(f"{kind} cannot be injected on AWS")
    cluster = outputs["DbClusterIdentifier"]
    instance = writer_instance(rds, cluster)
    rds.reboot_db_instance(DBInstanceIdentifier=instance)
    return {"database": f"RebootDBInstance {instance} (writer of {cluster})"}
