"""Each AWS component in isolation: secure defaults and every option."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from components.aws import (
    Alarms,
    AlarmsArgs,
    Cache,
    CacheArgs,
    ContainerService,
    ContainerServiceArgs,
    Database,
    DatabaseArgs,
    DeploymentMode,
    Edge,
    EdgeArgs,
    EncryptionKey,
    EncryptionKeyArgs,
    ImageSource,
    NatStrategy,
    Network,
    NetworkArgs,
    ProcessSize,
    RabbitMqJobQueue,
    RabbitMqJobQueueArgs,
    SecretStore,
    SecretStoreArgs,
    ServiceFirewall,
    ServiceFirewallArgs,
)
from components.aws.alb import INSECURE_HTTP_WARNING, TLS_POLICY, bounded_name
from components.aws.container_service import fargate_memory_options, source_fingerprint
from components.aws.network import plan_subnets
from groundwork.mockrun import FAKE_ACCOUNT, ProgramRun

CLIENTS = {"api": "sg-api", "worker": "sg-worker"}
SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


def _policy(run: ProgramRun, suffix: str) -> dict[str, Any]:
    resource = next(
        r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith(suffix)
    )
    return json.loads(resource.inputs["policy"])


# --- EncryptionKey ----------------------------------------------------------------------


def test_key_rotates_and_scopes_log_service(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: EncryptionKey(
            "k",
            EncryptionKeyArgs(description="d", service_principals=["logs.us-east-1.amazonaws.com"]),
        )
    )
    key = run.one("aws:kms/key:Key").inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
    statements = json.loads(key["policy"])["Statement"]
    logs = next(
        s for s in statements if s["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    )
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        "arn:aws:logs:us-east-1:123456789012:*"
    )
    assert run.one("aws:kms/alias:Alias").inputs["name"] == "alias/k"
    with pytest.raises(ValueError, match="7 to 30"):
        EncryptionKeyArgs(description="d", deletion_window_days=3)


# --- Network ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nat", "zones", "gateways"),
    [
        (NatStrategy.NONE, 2, 0),
        (NatStrategy.SINGLE, 3, 1),
        (NatStrategy.ONE_PER_AZ, 3, 3),
    ],
)
def test_nat_strategies(nat: NatStrategy, zones: int, gateways: int, helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Network(
            "n",
            NetworkArgs(
                availability_zones=zones, nat=nat, interface_endpoints=nat is NatStrategy.NONE
            ),
        )
    )
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == gateways
    assert len(run.of_type("aws:ec2/eip:Eip")) == gateways
    assert len(run.of_type("aws:ec2/subnet:Subnet")) == 3 * zones
    nat_ids = {r.state["id"] for r in run.of_type("aws:ec2/natGateway:NatGateway")}
    private = [r for r in run.of_type("aws:ec2/routeTable:RouteTable") if "-private-rt-" in r.name]
    used = [route.get("natGatewayId") for r in private for route in r.inputs.get("routes", [])]
    assert set(used) == nat_ids if gateways else used == []
    isolated = run.named("n-isolated-rt").inputs
    assert not isolated.get("routes")


def test_network_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Network("n", NetworkArgs(interface_endpoints=True)))
    default_sg = run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default_sg["ingress"] == [] and default_sg["egress"] == []
    assert not any(s.inputs["mapPublicIpOnLaunch"] for s in run.of_type("aws:ec2/subnet:Subnet"))
    flow = run.one("aws:ec2/flowLog:FlowLog").inputs
    assert flow["trafficType"] == "ALL" and flow["logDestinationType"] == "cloud-watch-logs"
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 30
    endpoints = {
        r.inputs["serviceName"]: r.inputs["vpcEndpointType"]
        for r in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert endpoints == {
        "com.amazonaws.us-east-1.s3": "Gateway",
        **{
            f"com.amazonaws.us-east-1.{s}": "Interface"
            for s in ("ecr.api", "ecr.dkr", "secretsmanager", "logs")
        },
    }


def test_subnet_plan_does_not_overlap() -> None:
    import ipaddress

    plan = plan_subnets("10.40.0.0/16", 3)
    nets = [ipaddress.ip_network(c) for c in plan.public + plan.private + plan.isolated]
    assert len(nets) == 9
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(n.prefixlen == 20 for n in map(ipaddress.ip_network, plan.private))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cidr_block": "10.0.0.0/24"}, "/16 to /20"),
        ({"cidr_block": "nope"}, "not a CIDR block"),
        ({"availability_zones": 4}, "use 2 or 3"),
        ({"nat": "double"}, "not a valid NatStrategy"),
    ],
)
def test_network_rejects_bad_args(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkArgs(**kwargs)


# --- ServiceFirewall --------------------------------------------------------------------


def test_firewall_exposes_only_alb(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ServiceFirewall("fw", ServiceFirewallArgs(vpc_id="vpc-1", vpc_cidr="10.40.0.0/16"))
    )
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    by_group: dict[str, list[dict[str, Any]]] = {}
    for rule in ingress:
        by_group.setdefault(groups[rule.inputs["securityGroupId"]], []).append(rule.inputs)
    assert set(by_group) == {"fw-alb", "fw-api"}  # worker, relay, migrate: no ingress
    assert sorted(
        (r["fromPort"], r.get("cidrIpv4") or r.get("cidrIpv6")) for r in by_group["fw-alb"]
    ) == [(80, "0.0.0.0/0"), (80, "::/0"), (443, "0.0.0.0/0"), (443, "::/0")]
    (api,) = by_group["fw-api"]
    assert groups[api["referencedSecurityGroupId"]] == "fw-alb" and api["fromPort"] == 8000
    with pytest.raises(ValueError, match="only 80 and 443"):
        ServiceFirewallArgs(vpc_id="v", vpc_cidr="10.0.0.0/16", public_ports=(22,))


# --- Database ---------------------------------------------------------------------------


def _db(**kwargs: Any) -> DatabaseArgs:
    return DatabaseArgs(
        vpc_id="vpc-1", subnet_ids=SUBNETS, client_security_group_ids=CLIENTS, **kwargs
    )


def test_database_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Database("db", _db()))
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["engine"] == "postgres" and db["engineVersion"] == "17"
    assert db["manageMasterUserPassword"] is True and "password" not in db
    assert db["storageEncrypted"] is True and db["kmsKeyId"] == db["masterUserSecretKmsKeyId"]
    assert db["publiclyAccessible"] is False and db["iamDatabaseAuthenticationEnabled"] is True
    assert db["performanceInsightsEnabled"] is True and db["performanceInsightsKmsKeyId"]
    assert db["monitoringInterval"] == 60 and db["monitoringRoleArn"]
    assert set(db["enabledCloudwatchLogsExports"]) >= {"postgresql", "upgrade"}
    assert db["maxAllocatedStorage"] == 100 and db["autoMinorVersionUpgrade"] is True
    assert db["copyTagsToSnapshot"] is True and db["backupRetentionPeriod"] == 7
    assert db["maintenanceWindow"] and db["backupWindow"]
    assert db["skipFinalSnapshot"] is False
    params = run.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == "postgres17"
    values = {p["name"]: p["value"] for p in params["parameters"]}
    assert values["rds.force_ssl"] == "1" and values["log_min_duration_statement"] == "500"
    assert run.of_type("aws:rds/proxy:Proxy") == []
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {
        (groups[r.inputs["securityGroupId"]], r.inputs["referencedSecurityGroupId"]) for r in rules
    } == {("db-sg", "sg-api"), ("db-sg", "sg-worker")}


def test_database_waits_for_the_monitoring_policy_and_its_log_groups(helpers: Any) -> None:
    # RDS validates the enhanced-monitoring role when the instance is created; a role
    # without its policy attached yet fails CreateDBInstance. RDS creates a missing
    # /aws/rds/instance/<id>/<log> group itself, unencrypted and never expiring.
    run = helpers.run_component(lambda: Database("db", _db()))
    (instance,) = run.of_type("aws:rds/instance:Instance")
    assert run.named("db-monitoring-policy").urn in instance.depends_on
    groups = {g.inputs["name"]: g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {
        f"/aws/rds/instance/db/{log}" for log in instance.inputs["enabledCloudwatchLogsExports"]
    }
    assert {g.urn for g in groups.values()} <= set(instance.depends_on)


def test_database_proxy_uses_end_to_end_iam(helpers: Any) -> None:
    run = helpers.run_component(lambda: Database("db", _db(proxy=True)))
    proxy = run.one("aws:rds/proxy:Proxy")
    assert proxy.inputs["requireTls"] is True and proxy.inputs["engineFamily"] == "POSTGRESQL"
    # No secret at all: nothing for a rotation to invalidate.
    assert proxy.inputs["defaultAuthScheme"] == "IAM_AUTH" and not proxy.inputs.get("auths")
    # Targets started before the role can connect register as AUTH_FAILURE.
    assert run.named("db-proxy-connect").urn in proxy.depends_on
    assert run.one("aws:rds/proxyTarget:ProxyTarget").inputs["dbInstanceIdentifier"] == "db"
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    edges = {
        (
            groups[r.inputs["securityGroupId"]],
            groups.get(
                r.inputs["referencedSecurityGroupId"], r.inputs["referencedSecurityGroupId"]
            ),
        )
        for r in rules
    }
    # Clients reach only the proxy; the database admits only the proxy.
    assert edges == {
        ("db-proxy-sg", "sg-api"),
        ("db-proxy-sg", "sg-worker"),
        ("db-sg", "db-proxy-sg"),
    }
    (statement,) = _policy(run, "db-proxy-connect")["Statement"]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == (
        f"arn:aws:rds-db:us-east-1:{FAKE_ACCOUNT}:dbuser:db-DB-POSTGRES/groundwork_app"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deletion_protection": True, "final_snapshot": False}, "final_snapshot"),
        ({"read_replica": True}, "ManageMasterUserPassword"),
        ({"app_username": "groundwork"}, "differ"),
        ({"allocated_storage_gb": 200, "max_allocated_storage_gb": 100}, "below"),
        ({"monitoring_interval_seconds": 7}, "monitoring_interval"),
    ],
)
def test_database_rejects_conflicts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _db(**kwargs)


# --- Cache ------------------------------------------------------------------------------


def _cache(**kwargs: Any) -> CacheArgs:
    return CacheArgs(
        vpc_id="vpc-1",
        subnet_ids=SUBNETS,
        client_security_group_ids=CLIENTS,
        secrets_kms_key_arn="arn:aws:kms:us-east-1:1:key/s",
        **kwargs,
    )


def test_cache_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Cache("cache", _cache()))
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert group["engine"] == "valkey" and group["transitEncryptionEnabled"] is True
    assert group["transitEncryptionMode"] == "required"
    assert group["atRestEncryptionEnabled"] is True and group["kmsKeyId"]
    password = run.one("random:index/randomPassword:RandomPassword")
    assert group["authToken"] == password.state["result"]
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    assert version["secretString"] == password.state["result"]
    assert run.one("aws:secretsmanager/secret:Secret").inputs["kmsKeyId"].endswith("key/s")
    assert group["automaticFailoverEnabled"] is False and group["numCacheClusters"] == 1


def test_cache_high_availability(helpers: Any) -> None:
    caches: list[Cache] = []
    run = helpers.run_component(
        lambda: caches.append(
            Cache("cache", _cache(nodes=2, automatic_failover=True, snapshot_retention_days=7))
        )
    )
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert group["multiAzEnabled"] is True and group["snapshotRetentionLimit"] == 7
    assert caches[0].member_cluster_ids == ["cache-001", "cache-002"]
    with pytest.raises(ValueError, match="nodes >= 2"):
        _cache(automatic_failover=True)


# --- RabbitMqJobQueue -------------------------------------------------------------------


def _broker(**kwargs: Any) -> RabbitMqJobQueueArgs:
    return RabbitMqJobQueueArgs(
        vpc_id="vpc-1",
        subnet_ids=SUBNETS,
        client_security_group_ids=CLIENTS,
        secrets_kms_key_arn="arn:aws:kms:us-east-1:1:key/s",
        **{
            "broker_name": "b",
            "management_client_security_group_ids": {"migrate": "sg-migrate"},
            **kwargs,
        },
    )


@pytest.mark.parametrize(
    ("mode", "instance", "subnets"),
    [
        (DeploymentMode.SINGLE_INSTANCE, "mq.t3.micro", 1),
        (DeploymentMode.CLUSTER_MULTI_AZ, "mq.m5.large", 3),
    ],
)
def test_broker(mode: DeploymentMode, instance: str, subnets: int, helpers: Any) -> None:
    brokers: list[RabbitMqJobQueue] = []
    run = helpers.run_component(
        lambda: brokers.append(
            RabbitMqJobQueue("mq", _broker(deployment_mode=mode, instance_type=instance))
        )
    )
    broker = run.one("aws:mq/broker:Broker").inputs
    assert broker["engineType"] == "RabbitMQ" and broker["engineVersion"] == "3.13"
    assert broker["publiclyAccessible"] is False and broker["deploymentMode"] == mode.value
    assert len(broker["subnetIds"]) == subnets
    assert broker["logs"] == {"general": True} and broker["autoMinorVersionUpgrade"] is True
    assert broker["maintenanceWindowStartTime"]["timeZone"] == "UTC"
    passwords = {
        r.name: r.state["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
    }
    # Amazon MQ's API creates one user, the administrator; the application's user is
    # made by migrate through the management API (rabbitmq-basic-elements-user.html).
    assert broker["users"] == [{"username": "gwadmin", "password": passwords["mq-admin-password"]}]
    stored = {
        json.loads(v.inputs["secretString"])["username"]: json.loads(v.inputs["secretString"])
        for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert stored == {
        "gwadmin": {"username": "gwadmin", "password": passwords["mq-admin-password"]},
        "groundwork": {"username": "groundwork", "password": passwords["mq-password"]},
    }
    # A random suffix: create-before-delete never collides with the broker it replaces.
    suffix = run.one("random:index/randomId:RandomId").state["hex"]
    assert broker["brokerName"] == f"b-{suffix}"
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {(r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"]) for r in rules} == {
        (5671, "sg-api"),
        (5671, "sg-worker"),
        (443, "sg-migrate"),
    }


def test_broker_name_suffix_changes_exactly_with_a_replacement(helpers: Any) -> None:
    """aws.mq.Broker replaces the broker when deployment mode, subnets or users change;
    the name suffix (RandomId keepers) must change with them, and only with them."""

    def name_of(**kwargs: Any) -> str:
        run = helpers.run_component(lambda: RabbitMqJobQueue("mq", _broker(**kwargs)))
        return str(run.one("aws:mq/broker:Broker").inputs["brokerName"])

    base = name_of()
    assert name_of(instance_type="mq.m5.large") == base  # an in-place update
    assert name_of(admin_username="ops") != base
    assert name_of(deployment_mode="CLUSTER_MULTI_AZ", instance_type="mq.m5.large") != base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deployment_mode": "CLUSTER_MULTI_AZ"}, "mq.m5"),
        ({"engine_version": "3.12"}, "quorum"),
        ({"admin_username": "groundwork"}, "differ"),
        ({"broker_name": "x" * 45}, "suffix"),
    ],
)
def test_broker_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _broker(**kwargs)


# --- SecretStore -------------------------------------------------------------------------


def test_app_secrets(helpers: Any) -> None:
    run = helpers.run_component(lambda: SecretStore("s", SecretStoreArgs(recovery_window_days=7)))
    secrets = {r.name: r.inputs for r in run.of_type("aws:secretsmanager/secret:Secret")}
    assert set(secrets) == {"s-jwt-secret", "s-webhook-secret", "s-llm-api-key"}
    assert all(s["kmsKeyId"] and s["recoveryWindowInDays"] == 7 for s in secrets.values())
    assert all(
        p.inputs["length"] == 64 for p in run.of_type("random:index/randomPassword:RandomPassword")
    )
    versions = {r.name: r for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    assert versions["s-llm-api-key-version"].ignore_changes == ["secretString"]
    # Rotations write 'NEW OLD' into Secrets Manager; a later `pulumi up` must keep it.
    assert versions["s-jwt-secret-version"].ignore_changes == ["secretString"]
    with pytest.raises(ValueError, match="at least 32"):
        SecretStoreArgs(generated_length=16)


# --- Edge -----------------------------------------------------------------


def _alb(**kwargs: Any) -> EdgeArgs:
    return EdgeArgs(vpc_id="vpc-1", subnet_ids=SUBNETS, security_group_id="sg-alb", **kwargs)


def test_alb_http_only_is_loud(helpers: Any, caplog: pytest.LogCaptureFixture) -> None:
    run = helpers.run_component(lambda: Edge("edge", _alb()))
    (listener,) = run.of_type("aws:lb/listener:Listener")
    assert listener.inputs["port"] == 80 and listener.inputs["defaultActions"][0]["type"] == (
        "forward"
    )
    assert INSECURE_HTTP_WARNING.startswith("INSECURE")
    lb = run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["dropInvalidHeaderFields"] is True and lb["internal"] is False
    assert lb["accessLogs"]["enabled"] is True
    tg = run.one("aws:lb/targetGroup:TargetGroup").inputs
    # Process only: ECS replaces tasks failing it; a Redis blip must not cycle them all.
    assert tg["healthCheck"]["path"] == "/health/live" and tg["deregistrationDelay"] == 30
    assert tg["targetType"] == "ip"
    pab = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        pab[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    sse = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json.loads(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["ElbAccountDelivers"]["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}
    assert sids["DenyInsecureTransport"]["Effect"] == "Deny"
    assert run.of_type("aws:wafv2/webAcl:WebAcl") == []


def test_alb_https_with_certificate_and_waf(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Edge(
            "edge",
            _alb(
                domain="api.example.com",
                certificate_arn="arn:aws:acm:us-east-1:1:certificate/x",
                waf=True,
                deletion_protection=True,
            ),
        )
    )
    listeners = {r.inputs["port"]: r.inputs for r in run.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["sslPolicy"] == TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listeners[443]["certificateArn"].endswith("certificate/x")
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert run.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"]
    acl = run.one("aws:wafv2/webAcl:WebAcl").inputs
    rules = {r["name"]: r for r in acl["rules"]}
    assert rules["rate-limit-per-ip"]["statement"]["rateBasedStatement"]["limit"] == 2000
    assert "AWSManagedRulesCommonRuleSet" in rules
    assert run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert run.of_type("aws:acm/certificate:Certificate") == []


def test_alb_certificate_from_hosted_zone(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Edge("edge", _alb(domain="api.example.com", hosted_zone_id="Z123"))
    )
    assert run.one("aws:acm/certificate:Certificate").inputs["validationMethod"] == "DNS"
    assert run.one("aws:acm/certificateValidation:CertificateValidation")
    alias = next(r for r in run.of_type("aws:route53/record:Record") if r.name == "edge-alias")
    assert alias.inputs["type"] == "A" and alias.inputs["name"] == "api.example.com"


def test_alb_and_target_group_names_fit_32_characters(helpers: Any) -> None:
    long_name = "a-very-long-service-name-production-edge"
    runs = [
        helpers.run_component(partial(Edge, long_name, _alb(container_port=port)))
        for port in (8000, 9000)
    ]
    names = []
    for run in runs:
        alb = run.one("aws:lb/loadBalancer:LoadBalancer").inputs["name"]
        tg = run.one("aws:lb/targetGroup:TargetGroup").inputs["name"]
        assert len(alb) <= 32 and len(tg) <= 32
        assert not alb.endswith("-") and not tg.endswith("-")
        names.append((alb, tg))
    # The ALB keeps its name; a target group that must be replaced (new port) gets a new
    # one, or creating the replacement would collide with the one still in use.
    assert names[0][0] == names[1][0] and names[0][1] != names[1][1]
    keepers = runs[0].one("random:index/randomId:RandomId").inputs["keepers"]
    assert keepers["port"] == "8000" and keepers["vpc_id"] == "vpc-1"


def test_bounded_name_keeps_cut_names_apart() -> None:
    assert bounded_name("short", "alb") == "short-alb"
    first = bounded_name("service-one-production-edge-xx", "alb")
    second = bounded_name("service-one-production-edge-yy", "alb")
    assert first != second and len(first) == len(second) == 32
    assert bounded_name("x" * 40, "api-abcdef", suffix_is_unique=True) == "x" * 21 + "-api-abcdef"


def test_alb_rejects_domain_without_certificate() -> None:
    with pytest.raises(ValueError, match="certificate_arn"):
        _alb(domain="api.example.com")


# --- ContainerService -------------------------------------------------------------------


def _service(**kwargs: Any) -> ContainerServiceArgs:
    base: dict[str, Any] = {
        "vpc_id": "vpc-1",
        "subnet_ids": SUBNETS[:2],
        "security_group_ids": {p: f"sg-{p}" for p in ("api", "worker", "relay", "migrate")},
        "target_group_arn": "arn:tg",
        "load_balancer_arn_suffix": "app/lb/1",
        "target_group_arn_suffix": "targetgroup/tg/1",
        "environment": {"APP_ENV": "staging"},
        "secrets": {"JWT_SECRET": "arn:aws:secretsmanager:us-east-1:1:secret:jwt"},
        "secret_arns": ["arn:aws:secretsmanager:us-east-1:1:secret:jwt"],
        "kms_key_arns": ["arn:aws:kms:us-east-1:1:key/s"],
        "broker_name": "b",
        "image": ImageSource(tag="abc123"),
    }
    base.update(kwargs)
    return ContainerServiceArgs(**base)


def test_container_service_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: ContainerService("app", _service()))
    repo = run.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    image = run.one("docker:index/image:Image").inputs
    assert image["build"]["platform"] == "linux/amd64"
    assert image["build"]["context"] == "services/app"
    assert image["imageName"].endswith(":abc123")
    cluster = run.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        (c,) = helpers.container_definitions(td)
        process = c["name"]
        assert "@sha256:" in c["image"]  # deployed by digest, not by tag
        assert c["command"] == [process] and c["user"] == "10001:10001"
        assert c["readonlyRootFilesystem"] is True and c["stopTimeout"] == 30
        assert c["mountPoints"][0]["containerPath"] == "/tmp"
        assert c["logConfiguration"]["logDriver"] == "awslogs"
        assert c["secrets"] == [
            {"name": "JWT_SECRET", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:jwt"}
        ]
        assert "JWT_SECRET" not in {e["name"] for e in c["environment"]}
        assert td.inputs["executionRoleArn"] != td.inputs["taskRoleArn"]
        assert td.inputs["skipDestroy"] is True
        if process == "migrate":
            assert "healthCheck" not in c
        else:
            assert c["healthCheck"]["command"] == ["CMD", "groundwork-app", "healthcheck", process]
    for service in run.of_type("aws:ecs/service:Service"):
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
        assert service.inputs["enableExecuteCommand"] is False
    execution = _policy(run, "app-execution-policy")["Statement"]
    assert {s["Sid"]: s["Resource"] for s in execution}["ReadTaskSecrets"] == [
        "arn:aws:secretsmanager:us-east-1:1:secret:jwt"
    ]
    # The task role gets no policy at all unless ECS Exec is on.
    assert [r.name for r in run.of_type("aws:iam/rolePolicy:RolePolicy")] == [
        "app-execution-policy"
    ]


def test_container_service_autoscaling(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ContainerService(
            "app", _service(api=ProcessSize(256, 512, 2, 6), worker=ProcessSize(256, 512, 1, 4))
        )
    )
    targets = {r.name: r.inputs for r in run.of_type("aws:appautoscaling/target:Target")}
    assert (
        targets["app-api-scaling"]["minCapacity"],
        targets["app-api-scaling"]["maxCapacity"],
    ) == (2, 6)
    policies = {
        r.name: r.inputs["targetTrackingScalingPolicyConfiguration"]
        for r in run.of_type("aws:appautoscaling/policy:Policy")
    }
    assert policies["app-api-cpu"]["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    requests = policies["app-api-requests"]["predefinedMetricSpecification"]
    assert requests["predefinedMetricType"] == "ALBRequestCountPerTarget"
    assert requests["resourceLabel"] == "app/lb/1/targetgroup/tg/1"
    metrics = {
        m["id"]: m
        for m in policies["app-worker-queue-depth"]["customizedMetricSpecification"]["metrics"]
    }
    depth = metrics["depth"]["metricStat"]["metric"]
    assert depth["namespace"] == "AWS/AmazonMQ" and depth["metricName"] == "MessageCount"
    assert {d["name"]: d["value"] for d in depth["dimensions"]} == {
        "Broker": "b",
        "VirtualHost": "/",
        "Queue": "jobs",
    }
    assert metrics["backlog"]["expression"] == "depth / workers"
    assert metrics["backlog"]["returnData"] is True


def test_container_service_exec_and_spot(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ContainerService("app", _service(ecs_exec=True, worker_spot=True))
    )
    services = {r.name: r.inputs for r in run.of_type("aws:ecs/service:Service")}
    assert all(s["enableExecuteCommand"] for s in services.values())
    assert services["app-worker"]["capacityProviderStrategies"][0]["capacityProvider"] == (
        "FARGATE_SPOT"
    )
    assert services["app-api"]["capacityProviderStrategies"][0]["capacityProvider"] == "FARGATE"
    exec_policy = _policy(run, "app-task-exec")["Statement"][0]
    assert all(a.startswith("ssmmessages:") for a in exec_policy["Action"])


@pytest.mark.parametrize("ecs_exec", [False, True])
def test_writable_paths_on_a_read_only_root(ecs_exec: bool, helpers: Any) -> None:
    # ECS Exec's SSM agent crashes on a read-only root unless its state and log
    # directories are writable volumes; without ECS Exec only /tmp is writable.
    run = helpers.run_component(lambda: ContainerService("app", _service(ecs_exec=ecs_exec)))
    expected = {"/tmp"} | ({"/var/lib/amazon", "/var/log/amazon"} if ecs_exec else set())
    for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        (c,) = helpers.container_definitions(td)
        assert c["readonlyRootFilesystem"] is True
        mounts = {m["containerPath"]: m["sourceVolume"] for m in c["mountPoints"]}
        assert set(mounts) == expected
        assert set(mounts.values()) == {v["name"] for v in td.inputs["volumes"]}


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [
        (256, 512, True),
        (256, 2048, True),
        (256, 1536, False),  # between 1024 and 2048: refused
        (1024, 3072, True),
        (1024, 3000, False),  # not a whole GiB
        (4096, 30720, True),
        (8192, 20480, True),
        (8192, 18432, False),  # 4 GiB steps above 4 vCPU
        (16384, 122880, True),
        (768, 2048, False),
    ],
)
def test_fargate_sizes(cpu: int, memory: int, ok: bool) -> None:
    assert (memory in fargate_memory_options(cpu)) is ok
    if ok:
        ProcessSize(cpu, memory).validate("api")
    else:
        with pytest.raises(ValueError, match="Fargate allows"):
            ProcessSize(cpu, memory).validate("api")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker": ProcessSize(256, 4096)}, "memory_mb"),
        ({"worker": ProcessSize(256, 512, 0, 2)}, "at least 1"),
        ({"relay_count": 0}, "relay_count"),
        ({"security_group_ids": {"api": "sg"}}, "lacks"),
        ({"environment": {"JWT_SECRET": "x"}}, "both plain environment and secrets"),
    ],
)
def test_container_service_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _service(**kwargs)


def test_source_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    first = source_fingerprint(tmp_path)
    (tmp_path / "__pycache__" / "y.pyc").write_bytes(b"more junk")
    assert source_fingerprint(tmp_path) == first
    (tmp_path / "app.py").write_text("print(2)")
    assert source_fingerprint(tmp_path) != first
    assert first.startswith("src-") and len(first) == 20


# --- Alarms -----------------------------------------------------------------------------


def _alarms(**kwargs: Any) -> AlarmsArgs:
    return AlarmsArgs(
        load_balancer_arn_suffix="app/lb/1",
        target_group_arn_suffix="tg/1",
        cluster_name="c",
        service_names={"api": "a", "worker": "w", "relay": "r"},
        db_instance_identifier="db",
        db_allocated_storage_gb=20,
        cache_cluster_ids=["cache-001"],
        broker_name="b",
        **kwargs,
    )


def test_alarms(helpers: Any) -> None:
    run = helpers.run_component(lambda: Alarms("al", _alarms(email="oncall@example.com")))
    assert run.one("aws:sns/topic:Topic").inputs["kmsMasterKeyId"]
    sub = run.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (sub["protocol"], sub["endpoint"]) == ("email", "oncall@example.com")
    alarms = {
        r.name.removeprefix("al-"): r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert set(alarms) == {
        "alb-5xx-rate",
        "api-p95-latency",
        "api-unhealthy-hosts",
        "api-cpu",
        "api-memory",
        "worker-cpu",
        "worker-memory",
        "db-cpu",
        "db-free-storage",
        "db-connections",
        "cache-001-memory",
        "cache-001-cpu",
        "cache-001-evictions",
        "queue-depth",
        "dlq-depth",
        # RabbitMQ blocks publishers at its memory or disk limit (rabbitmq.com/docs/alarms).
        "broker-memory",
        "broker-disk",
        "broker-cpu",
        "cache-001-replication-lag",
        "api-tasks-below-desired",
        "worker-tasks-below-desired",
        "relay-tasks-below-desired",
    }
    rate = next(q for q in alarms["alb-5xx-rate"]["metricQueries"] if q.get("expression"))
    assert "requests" in rate["expression"] and alarms["alb-5xx-rate"]["threshold"] == 1
    assert alarms["api-p95-latency"]["extendedStatistic"] == "p95"
    assert alarms["api-p95-latency"]["threshold"] == 2
    assert alarms["api-cpu"]["threshold"] == 80 and alarms["api-memory"]["threshold"] == 85
    assert alarms["dlq-depth"]["dimensions"]["Queue"] == "jobs.dlq"
    assert alarms["dlq-depth"]["threshold"] == 0
    assert alarms["db-free-storage"]["threshold"] == 20 * 1024**3 * 0.1
    key_policy = json.loads(run.one("aws:kms/key:Key").inputs["policy"])
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy["Statement"]
    )
    body = json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    titles = {w["properties"]["title"] for w in body["widgets"]}
    assert {
        "API latency (s)",
        "API errors",
        "API throughput (requests/min)",
        "Queue depth",
    } <= titles


def test_stuck_jobs_alarm_counts_the_safety_nets_log_lines(helpers: Any) -> None:
    """The service logs these exact events when a job had to be ended by a net
    (services/app/src/groundwork_app/worker/terminal.py); one filter per log group
    feeds one metric, alarmed on any occurrence."""
    from groundwork_app.worker import terminal

    source = Path(terminal.__file__).read_text()
    for event in ("jobs past their deadline failed", "job ended by its dead letter"):
        assert f'"{event}"' in source
    run = helpers.run_component(
        lambda: Alarms("al", _alarms(job_log_group_names=["/ecs/worker", "/ecs/relay"]))
    )
    filters = run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    assert sorted(f.inputs["logGroupName"] for f in filters) == ["/ecs/relay", "/ecs/worker"]
    for f in filters:
        assert '$.event = "jobs past their deadline failed"' in f.inputs["pattern"]
        assert '$.event = "job ended by its dead letter"' in f.inputs["pattern"]
    metric = {f.inputs["metricTransformation"]["name"] for f in filters}
    stuck = next(
        r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if r.name == "al-stuck-jobs"
    )
    assert {stuck["metricName"]} == metric
    assert (stuck["namespace"], stuck["threshold"], stuck["statistic"]) == ("Groundwork", 0, "Sum")


def _queries(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm["metricQueries"]}


def test_alarms_optional_signals_and_autoscaling_ceiling(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Alarms(
            "al",
            _alarms(
                db_proxy_name="px",
                db_freeable_memory_bytes=100.0,
                service_max_counts={"api": 6, "worker": 4},
                nat_gateways=2,
            ),
        )
    )
    alarms = {
        r.name.removeprefix("al-"): r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert alarms["db-freeable-memory"]["threshold"] == 100
    assert alarms["db-proxy-auth-failures"]["dimensions"] == {"ProxyName": "px"}
    assert alarms["db-proxy-auth-failures"]["metricName"] == "ClientConnectionsSetupFailedAuth"
    # The API autoscales on CPU at 60 %: 80 % is an incident only once it cannot add tasks.
    at_max = _queries(alarms["api-cpu"])["at_max"]["expression"]
    assert at_max == "IF(running >= 6, usage, 0)"
    assert _queries(alarms["worker-memory"])["at_max"]["expression"].startswith("IF(running >= 4")
    memory = _queries(alarms["broker-memory"])
    assert memory["used"]["metric"]["metricName"] == "RabbitMQMemUsed"
    assert memory["limit"]["metric"]["metricName"] == "RabbitMQMemLimit"
    (nat,) = alarms["nat-port-allocation"]["metricQueries"]
    assert "ErrorPortAllocation" in nat["expression"] and nat["period"] == 60
    below = _queries(alarms["relay-tasks-below-desired"])
    assert below["missing"]["expression"] == "desired - running"


def test_alarms_without_email(helpers: Any) -> None:
    run = helpers.run_component(lambda: Alarms("al", _alarms()))
    assert run.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    with pytest.raises(ValueError, match="e-mail"):
        _alarms(email="nope")
