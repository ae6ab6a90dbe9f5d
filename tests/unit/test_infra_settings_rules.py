"""infra/settings.py without synthesis: each rule at its boundary and its whole one-line message
(key, value, rule, a fix); the cases are the mutants scripts/mutation found unchecked."""

from __future__ import annotations

import pytest

from functions.contract import ARMS
from infra.settings import Settings, SettingsError, context_key, defaults_as_context


def refusal(context: dict[str, object]) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.from_context(context.get)
    return str(info.value)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"arms": "standard,lmi,x"},
            "context 'arms'=standard,lmi,x: unknown arm 'lmi', arms are "
            f"{', '.join(ARMS)}; set -c arms=standard,managed",
        ),
        ({"arms": ""}, "context 'arms'=: at least one arm is needed; set -c arms=standard,managed"),
        (
            {"arms": "managed,managed"},
            "context 'arms'=managed,managed: an arm is listed twice; set -c arms=standard,managed",
        ),
        (
            {"memoryMb": "127", "arms": "standard"},
            "context 'memoryMb'=127: Lambda memory is 128..10240 MB; set -c memoryMb=2048",
        ),
        (
            {"memoryMb": "10241"},
            "context 'memoryMb'=10241: Lambda memory is 128..10240 MB; set -c memoryMb=2048",
        ),
        (
            {"memoryMb": "2047"},
            "context 'memoryMb'=2047: Lambda Managed Instances needs >= 2048 MB (every arm gets "
            "the same memory); set -c memoryMb=2048",
        ),
        (
            {"memoryGibPerVcpu": "3"},
            "context 'memoryGibPerVcpu'=3: must be one of 2, 4, 8; set -c memoryGibPerVcpu=2",
        ),
        (
            {"memoryGibPerVcpu": "8", "memoryMb": "4096"},
            "context 'memoryMb'=4096: a managed execution environment needs >= 1 vCPU, i.e. >= "
            "8192 MB at memoryGibPerVcpu=8; set -c memoryMb=8192",
        ),
        (
            {"perEnvironmentMaxConcurrency": "-1"},
            "context 'perEnvironmentMaxConcurrency'=-1: must be 1..64 (64 per vCPU, 1 vCPU per "
            "execution environment); set -c perEnvironmentMaxConcurrency=16",
        ),
        (  # Node.js: its own default (64 per vCPU) is the value suggested
            {"perEnvironmentMaxConcurrency": "65", "runtime": "nodejs"},
            "context 'perEnvironmentMaxConcurrency'=65: must be 1..64 (64 per vCPU, 1 vCPU per "
            "execution environment); set -c perEnvironmentMaxConcurrency=64",
        ),
        (
            {"timeoutSeconds": "0"},
            "context 'timeoutSeconds'=0: Lambda timeout is 1..900 s; set -c timeoutSeconds=29",
        ),
        (
            {"timeoutSeconds": "901"},
            "context 'timeoutSeconds'=901: Lambda timeout is 1..900 s; set -c timeoutSeconds=29",
        ),
        (
            {"managedInstanceTypes": ""},
            "context 'managedInstanceTypes'=: at least one instance type; "
            "set -c managedInstanceTypes=m8g.large",
        ),
        (
            {"managedInstanceTypes": "m8g.large,bogus"},
            "context 'managedInstanceTypes'=m8g.large,bogus: 'bogus' is not an EC2 instance type "
            "name; set -c managedInstanceTypes=m8g.large",
        ),
        (
            {"minExecutionEnvironments": "-1"},
            "context 'minExecutionEnvironments'=-1: needs 0 <= minExecutionEnvironments <= "
            "maxExecutionEnvironments (6) <= 15000; set -c minExecutionEnvironments=3",
        ),
        (
            {"maxExecutionEnvironments": "15001"},
            "context 'minExecutionEnvironments'=3: needs 0 <= minExecutionEnvironments <= "
            "maxExecutionEnvironments (15001) <= 15000; set -c minExecutionEnvironments=3",
        ),
        (
            {"maxVcpuCount": "11"},
            "context 'maxVcpuCount'=11: must be 12..15000 (the CDK CapacityProvider refuses fewer "
            "than 12); set -c maxVcpuCount=16",
        ),
        (
            {"maxVcpuCount": "15001"},
            "context 'maxVcpuCount'=15001: must be 12..15000 (the CDK CapacityProvider refuses "
            "fewer than 12); set -c maxVcpuCount=16",
        ),
        (
            {"minExecutionEnvironments": "5", "memoryMb": "8192", "maxExecutionEnvironments": "9"},
            "context 'maxVcpuCount'=16: 5 minimum execution environments x 4 vCPU need 20 vCPUs; "
            "the version would never become ACTIVE; set -c maxVcpuCount=20",
        ),
        (
            {"arms": "managed,managed-direct", "memoryMb": "8192"},
            "context 'maxVcpuCount'=16: 3 minimum execution environments x 4 vCPU x 2 managed "
            "arms need 24 vCPUs; the version would never become ACTIVE; set -c maxVcpuCount=24",
        ),
        (
            {"minAcu": "-0.5"},
            "context 'minAcu'=-0.5: ACU is 0..256 in steps of 0.5; set -c minAcu=0.5",
        ),
        (
            {"maxAcu": "256.5"},
            "context 'maxAcu'=256.5: ACU is 0..256 in steps of 0.5; set -c maxAcu=4",
        ),
        ({"maxAcu": "4.2"}, "context 'maxAcu'=4.2: ACU is 0..256 in steps of 0.5; set -c maxAcu=4"),
        (
            {"maxAcu": "0.5", "minAcu": "0"},
            "context 'maxAcu'=0.5: Aurora Serverless v2 needs maxAcu >= 1; set -c maxAcu=4",
        ),
        (
            {"minAcu": "8", "maxAcu": "4.5"},
            "context 'minAcu'=8.0: min ACU is above maxAcu (4.5); set -c minAcu=4.5",
        ),
        (
            {"postgresVersion": "16.4"},
            "context 'postgresVersion'=16.4: Aurora PostgreSQL 17 versions known here are 17.4, "
            "17.5, 17.6, 17.7, 17.9; set -c postgresVersion=17.7",
        ),
        (
            {"dbName": "Pool"},
            "context 'dbName'=Pool: must be a lower-case PostgreSQL identifier; "
            "set -c dbName=poolbench",
        ),
        (
            {"maxAzs": "1"},
            "context 'maxAzs'=1: Aurora needs subnets in >= 2 zones (2..6); set -c maxAzs=2",
        ),
        (
            {"maxAzs": "7"},
            "context 'maxAzs'=7: Aurora needs subnets in >= 2 zones (2..6); set -c maxAzs=2",
        ),
        (
            {"natGateways": "-1"},
            "context 'natGateways'=-1: must be 0..maxAzs (2); set -c natGateways=1",
        ),
        (
            {"natGateways": "3"},
            "context 'natGateways'=3: must be 0..maxAzs (2); set -c natGateways=1",
        ),
        (
            {"poolMode": "tx"},
            "context 'poolMode'=tx: must be one of transaction, session, statement; "
            "set -c poolMode=transaction",
        ),
        (
            {"defaultPoolSize": "0"},
            "context 'defaultPoolSize'=0: must be >= 1; set -c defaultPoolSize=20",
        ),
        (
            {"maxClientConn": "0"},
            "context 'maxClientConn'=0: must be >= 1; set -c maxClientConn=1000",
        ),
        (
            {"serverIdleTimeout": "0"},
            "context 'serverIdleTimeout'=0: must be >= 1; set -c serverIdleTimeout=600",
        ),
        (
            {"minPoolSize": "-1"},
            "context 'minPoolSize'=-1: must be 0..defaultPoolSize; set -c minPoolSize=0",
        ),
        (
            {"minPoolSize": "21"},
            "context 'minPoolSize'=21: must be 0..defaultPoolSize; set -c minPoolSize=0",
        ),
        (
            {"stackName": "1abc"},
            "context 'stackName'=1abc: not a CloudFormation stack name; "
            "set -c stackName=PoolbenchStack",
        ),
        (
            {"apiStage": "a-b"},
            "context 'apiStage'=a-b: stage names are [A-Za-z0-9_]; set -c apiStage=prod",
        ),
        ({"apiName": ""}, "context 'apiName'=: must not be empty; set -c apiName=poolbench"),
        (
            {"apiRateLimit": "0"},
            "context 'apiRateLimit'=0: throttle limits must be >= 1; set -c apiRateLimit=500",
        ),
        (
            {"logRetentionDays": "2"},
            "context 'logRetentionDays'=2: not a CloudWatch Logs retention; "
            "set -c logRetentionDays=14",
        ),
        (
            {"minExecutionEnvironments": "0"},
            "context 'minExecutionEnvironments'=0: Lambda accepts a minimum of 0 only when "
            "maxExecutionEnvironments is 0 too; set -c minExecutionEnvironments=3",
        ),
        (
            {"minExecutionEnvironments": "0", "maxExecutionEnvironments": "1"},
            "context 'minExecutionEnvironments'=0: Lambda accepts a minimum of 0 only when "
            "maxExecutionEnvironments is 0 too; set -c minExecutionEnvironments=3",
        ),
        (
            {"managedInstanceTypes": "m8g.large,t4g.large"},
            "context 'managedInstanceTypes'=m8g.large,t4g.large: 't4g.large' is burstable (t*); "
            "Managed Instances run C, M and R families; set -c managedInstanceTypes=m8g.large",
        ),
        (  # 128 MB at 8 GiB per vCPU: 1/64 vCPU, so one request per environment
            {
                "arms": "standard",
                "memoryMb": "128",
                "memoryGibPerVcpu": "8",
                "perEnvironmentMaxConcurrency": "2",
            },
            "context 'perEnvironmentMaxConcurrency'=2: must be 1..1 (64 per vCPU, 0.015625 vCPU "
            "per execution environment); set -c perEnvironmentMaxConcurrency=1",
        ),
        (
            {"bundle": "maybe"},
            "context 'bundle'='maybe': expected bool; set -c bundle=<bool>",
        ),
        ({"memoryMb": "1.5"}, "context 'memoryMb'='1.5': expected int; set -c memoryMb=<int>"),
        ({"minAcu": "x"}, "context 'minAcu'='x': expected float; set -c minAcu=<float>"),
    ],
)
def test_each_refusal_is_the_whole_sentence(context: dict[str, object], message: str) -> None:
    assert refusal(context) == message


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"perEnvironmentMaxConcurrency": "48"},
            "context 'perEnvironmentMaxConcurrency'=48: 48 workers x 64 MiB + 160 MiB pooler = "
            "3232 MiB exceed 80% of the 2048 MiB execution environment; "
            "set -c perEnvironmentMaxConcurrency=23 (or keep it and set -c memoryMb=4096)",
        ),
        (  # the bigger environment offered is exactly the largest Lambda allows
            {"perEnvironmentMaxConcurrency": "100", "memoryMb": "4096"},
            "context 'perEnvironmentMaxConcurrency'=100: 100 workers x 64 MiB + 160 MiB pooler = "
            "6560 MiB exceed 80% of the 4096 MiB execution environment; "
            "set -c perEnvironmentMaxConcurrency=48 (or keep it and set -c memoryMb=10240)",
        ),
        (  # the next size up would be 10241 MB, past Lambda's limit: only fewer slots
            {"memoryMb": "6145", "memoryGibPerVcpu": "4", "perEnvironmentMaxConcurrency": "75"},
            "context 'perEnvironmentMaxConcurrency'=75: 75 workers x 64 MiB + 160 MiB pooler = "
            "4960 MiB exceed 80% of the 6145 MiB execution environment; "
            "set -c perEnvironmentMaxConcurrency=74",
        ),
        (  # 4120 MB x 80 % = 3296 MiB: exactly 49 workers and the pooler
            {"perEnvironmentMaxConcurrency": "49", "memoryMb": "2072"},
            "context 'perEnvironmentMaxConcurrency'=49: 49 workers x 64 MiB + 160 MiB pooler = "
            "3296 MiB exceed 80% of the 2072 MiB execution environment; "
            "set -c perEnvironmentMaxConcurrency=23 (or keep it and set -c memoryMb=4120)",
        ),
        (
            {"perEnvironmentMaxConcurrency": "200", "memoryMb": "10240"},
            "context 'perEnvironmentMaxConcurrency'=200: 200 workers x 64 MiB + 160 MiB pooler = "
            "12960 MiB exceed 80% of the 10240 MiB execution environment; "
            "set -c perEnvironmentMaxConcurrency=125",
        ),
    ],
)
def test_the_memory_refusal_offers_fewer_slots_or_a_bigger_environment(
    context: dict[str, object], message: str
) -> None:
    assert refusal(context) == message


def test_workers_that_fill_the_headroom_exactly_are_accepted() -> None:
    # 2120 MB x 80 % = 1696 MiB = 24 workers x 64 MiB + 160 MiB
    s = Settings.from_context({"memoryMb": "2120", "perEnvironmentMaxConcurrency": "24"}.get)
    assert s.managed_memory_needed_mib == int(2120 * 0.8)
    assert "=25: 25 workers" in refusal({"memoryMb": "2120", "perEnvironmentMaxConcurrency": "25"})


@pytest.mark.parametrize(
    "context",
    [
        {
            "arms": "standard",
            "memoryMb": "128",
            "timeoutSeconds": "1",
            "perEnvironmentMaxConcurrency": "1",
        },
        {"memoryMb": "10240", "timeoutSeconds": "900", "maxVcpuCount": "15000"},
        {"minAcu": "0", "maxAcu": "1"},
        {"minAcu": "256", "maxAcu": "256"},
        {"maxAzs": "6", "natGateways": "6"},
        {"maxAzs": "2", "natGateways": "0"},
        {"minPoolSize": "20", "defaultPoolSize": "20"},
        {"defaultPoolSize": "1", "maxClientConn": "1", "serverIdleTimeout": "1"},
        {"apiRateLimit": "1", "apiBurstLimit": "1"},
        {"maxVcpuCount": "12"},
        {"minExecutionEnvironments": "6", "maxExecutionEnvironments": "6"},
        {"maxExecutionEnvironments": "15000", "maxVcpuCount": "15000"},
        {"perEnvironmentMaxConcurrency": "1"},
        {"apiStage": "Prod_2", "stackName": "Poolbench-Stack-2"},
        {"perEnvironmentMaxConcurrency": "49", "memoryMb": "4120"},
        {"minExecutionEnvironments": "0", "maxExecutionEnvironments": "0"},
        {"minExecutionEnvironments": "1", "maxExecutionEnvironments": "1"},
        # 3 minimum environments x 4 vCPU = 12 vCPUs: exactly the capacity provider's maximum
        {"memoryMb": "8192", "maxVcpuCount": "12"},
        {
            "arms": "standard",
            "memoryMb": "128",
            "memoryGibPerVcpu": "8",
            "perEnvironmentMaxConcurrency": "1",
        },
        {"perEnvironmentMaxConcurrency": "64", "memoryMb": "8192", "memoryGibPerVcpu": "8"},
    ],
)
def test_values_on_a_boundary_are_accepted(context: dict[str, object]) -> None:
    Settings.from_context(context.get)


def test_the_api_burst_limit_is_checked_under_its_own_key() -> None:
    assert refusal({"apiBurstLimit": "0"}) == (
        "context 'apiBurstLimit'=0: throttle limits must be >= 1; set -c apiBurstLimit=1000"
    )


def test_context_strings_and_json_values_coerce_to_each_field_s_type() -> None:
    pairs = (
        ("True", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
    )
    for text, value in pairs:
        assert Settings.from_context({"nag": text}.get).nag is value
    assert Settings.from_context({"nag": False}.get).nag is False
    # JSON arrays from cdk.json are lists, not comma-separated strings
    s = Settings.from_context({"arms": ["managed", " proxy "], "postgresVersion": "17.5"}.get)
    assert s.arms == ("managed", "proxy")
    assert s.postgres_version == "17.5"
    assert Settings.from_context({"maxAcu": 8}.get).max_acu == 8.0
    assert Settings.from_context({"memoryMb": 4096.0}.get).memory_mb == 4096


def test_the_pooler_knobs_become_the_extension_s_environment() -> None:
    s = Settings(
        default_pool_size=5,
        min_pool_size=1,
        pool_mode="session",
        server_idle_timeout=33,
        max_client_conn=44,
    )
    assert s.pooler_environment() == {
        "POOL_MODE": "session",
        "DEFAULT_POOL_SIZE": "5",
        "MIN_POOL_SIZE": "1",
        "SERVER_IDLE_TIMEOUT": "33",
        "MAX_CLIENT_CONN": "44",
    }


def test_derived_properties() -> None:
    s = Settings(arms=("standard",), nat_gateways=0, memory_mb=4096, memory_gib_per_vcpu=4)
    assert (s.managed, s.proxy, s.isolated, s.managed_vcpus) == (False, False, True, 1.0)
    assert not Settings().isolated


def test_context_keys_are_the_fields_in_camel_case() -> None:
    assert context_key("memory_mb") == "memoryMb"
    assert context_key("api_gateway_cloud_watch_role") == "apiGatewayCloudWatchRole"
    assert context_key("nag") == "nag"
    defaults = defaults_as_context()
    assert defaults["managedInstanceTypes"] == ["m8g.large"]  # tuples as JSON lists
    assert defaults["arms"] == ["standard", "managed"]
    assert defaults["memoryMb"] == 2048
    assert Settings.from_context(defaults.get) == Settings()


def test_the_runtime_sets_the_default_slots_and_the_memory_model() -> None:
    assert refusal({"runtime": "ruby"}) == (
        "context 'runtime'=ruby: must be python or nodejs; set -c runtime=nodejs"
    )
    # 0 (the default) means the runtime's slots per vCPU times the EE's vCPUs
    assert Settings().per_environment_max_concurrency == 16
    assert Settings(memory_mb=4096).per_environment_max_concurrency == 32
    node = Settings(runtime="nodejs", memory_mb=4096)
    assert node.per_environment_max_concurrency == 128
    assert node.slot_memory_model == (192, 1, "Node.js requests")
    assert node.managed_memory_needed_mib == 192 + 128 * 1 + 160
    assert Settings().slot_memory_model == (0, 64, "workers")
    assert Settings(per_environment_max_concurrency=5).per_environment_max_concurrency == 5
