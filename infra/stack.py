"""The one stack: wires network, database, layer, arm functions, probe and API; writes the outputs.

The outputs are the target contract (docs/contracts.md): ``cdk deploy --outputs-file`` writes
them keyed by logical ID, so they are created on the stack itself with exactly those IDs.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, CfnParameter, CfnRule, CfnRuleAssertion, Fn, Stack, Tags
from constructs import Construct

from functions import contract
from infra.api import Api
from infra.assets import bundling_enabled, function_code, node_function_code
from infra.database import Database
from infra.functions import ArmFunctions
from infra.network import Network
from infra.pooler_layer import PoolerLayer
from infra.probe import Probe
from infra.settings import Settings

METRICS_SOURCE = "cloudwatch"

UNBUNDLED_MESSAGE = (
    "poolbench: this template was synthesized without bundling (-c bundle=false or an excluded "
    "stack), so its layer has no PgBouncer and its code no psycopg; deploy with "
    "'npx cdk deploy' (bundling on, Docker running) instead"
)
"""What CloudFormation answers when someone deploys an unbundled template."""


class PoolbenchStack(Stack):
    """Everything one benchmark deployment needs; ``cdk destroy`` removes all of it."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(
            scope,
            construct_id,
            description="poolbench: standard vs Lambda Managed Instances with an in-EE PgBouncer",
        )
        self.settings = settings
        # The proxy target group takes no tags (CloudFormation rejects them).
        Tags.of(self).add(
            "project", "poolbench", exclude_resource_types=["AWS::RDS::DBProxyTargetGroup"]
        )

        self.network = Network(self, "Network", settings=settings)
        # The pooler layer only when an arm runs the in-EE PgBouncer (direct arms do not).
        pooled = any(contract.arm(a).has_layer for a in settings.arms)
        self.layer = PoolerLayer(self, "Pooler", settings=settings) if pooled else None
        probe_code = function_code(self, settings, "probe")
        self.database = Database(
            self, "Database", settings=settings, network=self.network, setup_code=probe_code
        )
        self.database.admit(self.network.functions_sg, "poolbench standard functions")
        if settings.managed:
            self.database.admit(
                self.network.capacity_provider_sg, "Lambda Managed Instances capacity provider"
            )
        self.arms = ArmFunctions(
            self,
            "Functions",
            settings=settings,
            network=self.network,
            database=self.database,
            layer=self.layer.layer if self.layer else None,
            code=node_function_code(self, settings)
            if settings.runtime == "nodejs"
            else function_code(self, settings, "app"),
        )
        self.probe = Probe(
            self,
            "Probe",
            settings=settings,
            network=self.network,
            database=self.database,
            code=probe_code,
        )
        self.api = Api(self, "Api", settings=settings, functions=self.arms.functions)
        self.bundled = bundling_enabled(self, settings)
        if not self.bundled:
            self._refuse_deployment()
        self._outputs()

    def _refuse_deployment(self) -> None:
        """Make an unbundled template fail before CloudFormation creates anything.

        A template rule is checked when the stack or change set is created, before any
        resource. This one can never hold: its parameter allows only "false" and the rule
        asserts "true", so no ``--parameters`` value gets past it either.
        """
        bundled = CfnParameter(
            self,
            "AssetsBundled",
            type="String",
            default="false",
            allowed_values=["false"],
            description="poolbench: whether the assets were bundled (a synth without bundling)",
        )
        CfnRule(
            self,
            "AssetsMustBeBundled",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_equals(bundled.value_as_string, "true"),
                    assert_description=UNBUNDLED_MESSAGE,
                )
            ],
        )

    def _outputs(self) -> None:
        s = self.settings
        CfnOutput(self, "ApiUrl", value=self.api.url, description="Arm URL = ApiUrl + arm name")
        CfnOutput(self, "Arms", value=",".join(s.arms), description="Deployed arms, in order")
        CfnOutput(self, "MetricsSource", value=METRICS_SOURCE)
        CfnOutput(
            self, contract.OUT_RUNTIME, value=s.runtime, description="The function under test"
        )
        for arm, fn in self.arms.functions.items():
            CfnOutput(self, contract.function_name_output(arm), value=fn.function_name)
        if self.arms.capacity_provider is not None:
            CfnOutput(
                self,
                "CapacityProviderName",
                value=self.arms.capacity_provider.capacity_provider_name,
            )
            # The managed arm's capacity: the run compares it with the users arriving at once.
            for output, value in (
                ("ManagedPerEnvironmentMaxConcurrency", s.per_environment_max_concurrency),
                ("ManagedMinExecutionEnvironments", s.min_execution_environments),
                ("ManagedMaxExecutionEnvironments", s.max_execution_environments),
            ):
                CfnOutput(self, output, value=str(value))
        CfnOutput(
            self,
            "FunctionTimeoutSeconds",
            value=str(s.timeout_seconds),
            description="Every arm's timeout; a request's sleep must end well before it",
        )
        CfnOutput(self, "DbClusterIdentifier", value=self.database.cluster.cluster_identifier)
        CfnOutput(self, "ApiName", value=s.api_name)
        CfnOutput(self, "ApiStage", value=self.api.stage_name)
        CfnOutput(self, "ProbeFunctionName", value=self.probe.function.function_name)
        CfnOutput(self, "Region", value=Aws.REGION)
