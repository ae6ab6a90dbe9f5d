"""`--fault db-restart` on AWS: the writer instance found and rebooted, against moto's server
(AWS cannot be reached here), and the in-environment faults refused in one line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from input_errors import InputError
from local.ports import claim_for_process
from poolbench.aws_faults import check_aws_faults, inject_aws


@pytest.fixture
def rds() -> Iterator[Any]:
    port = claim_for_process()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield boto3.client(
            "rds",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


def test_db_restart_reboots_the_clusters_writer(rds: Any) -> None:
    c = rds
    c.create_db_cluster(
        DBClusterIdentifier="poolbench-db",
        Engine="aurora-postgresql",
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-one-1",
    )
    c.create_db_instance(
        DBInstanceIdentifier="poolbench-db-writer",
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
        DBClusterIdentifier="poolbench-db",
    )

    done = inject_aws("db-restart", {"DbClusterIdentifier": "poolbench-db"}, c)

    assert done == {"database": "RebootDBInstance poolbench-db-writer (writer of poolbench-db)"}


def test_the_writer_is_rebooted_not_a_reader() -> None:
    """The exact calls, with botocore's Stubber: a cluster with a reader listed first."""
    client = boto3.client(
        "rds", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_response(
        "describe_db_clusters",
        {
            "DBClusters": [
                {
                    "DBClusterMembers": [
                        {"DBInstanceIdentifier": "reader-1", "IsClusterWriter": False},
                        {"DBInstanceIdentifier": "writer-1", "IsClusterWriter": True},
                    ]
                }
            ]
        },
        {"DBClusterIdentifier": "poolbench-db"},
    )
    stub.add_response("reboot_db_instance", {}, {"DBInstanceIdentifier": "writer-1"})
    with stub:
        inject_aws("db-restart", {"DbClusterIdentifier": "poolbench-db"}, client)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("kind", ["pooler-kill", "runtime-kill"])
def test_in_environment_faults_are_refused_on_aws(kind: str) -> None:
    with pytest.raises(InputError, match="local only"):
        check_aws_faults([kind])
