"""Run a Pulumi program under the SDK's mock runtime and record the resource graph.

This is what ``pulumi up`` would register, captured without the CLI, a backend or a
cloud account: tests assert on it, the policy pack is run over it, and
``groundwork plan`` prices it. Provider-computed outputs (ids, ARNs, endpoints) are
filled with deterministic fakes so the program's ``apply`` chains resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import wait_for_rpcs

FAKE_ACCOUNT = "123456789012"
FAKE_GCP_PROJECT_NUMBER = "111122223333"


@dataclass
class RecordedResource:
    """One registered resource: what ``pulumi preview`` would show for it."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    custom: bool
    parent: str
    provider: str = ""
    protect: bool = False
    retain_on_delete: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    # The options that decide what a replacement or a deletion does to the real thing:
    # the guard test (tests/plan/test_replacement_guard.py), `groundwork plan --against`
    # and the protection policy read them from here.
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    # ``pulumi.Alias(...)`` objects as the SDK sends them to a monitor that supports
    # alias specs (name, type, parentUrn, noParent, project, stack; empty = unchanged):
    # tests/test_urn_aliases.py resolves them to URNs the way the engine does.
    alias_specs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_component(self) -> bool:
        return not self.custom


@dataclass
class ProgramRun:
    """The graph one program run produced, plus its stack exports."""

    project: str
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> RecordedResource:
        found = self.of_type(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, found {len(found)}")
        return found[0]

    def named(self, name: str) -> RecordedResource:
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise KeyError(name)

    def by_urn(self) -> dict[str, RecordedResource]:
        return {r.urn: r for r in self.resources}

    def children(self, parent_urn: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == parent_urn]


def _fake_id(type_token: str, name: str) -> str:
    digest = hashlib.sha256(f"{type_token}/{name}".encode()).hexdigest()[:17]
    return f"{name}-{digest}"


class GroundworkMocks(pulumi.runtime.Mocks):
    """Deterministic stand-ins for what providers compute at create time."""

    def __init__(self, region: str = "us-east-1", gcp_project: str = "groundwork-test") -> None:
        self.region = region
        self.gcp_project = gcp_project

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = args.resource_id or _fake_id(args.typ, args.name)
        state = dict(args.inputs)
        # Provider-computed attributes first: some (an RDS ARN) have a documented shape
        # the generic default below does not follow.
        extra = _COMPUTED.get(args.typ)
        if extra is not None:
            for key, value in extra(args, self).items():
                state.setdefault(key, value)
        if args.typ.startswith("aws:"):
            service = args.typ.split(":")[1].split("/")[0]
            state.setdefault(
                "arn", f"arn:aws:{service}:{self.region}:{FAKE_ACCOUNT}:{args.name}/{resource_id}"
            )
        state.setdefault("id", resource_id)
        state.setdefault("name", state.get("name") or args.name)
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{suffix}" for suffix in "abcdef"]
            return {
                "names": names,
                "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
                "state": "available",
            }, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": FAKE_ACCOUNT,
                "arn": f"arn:aws:iam::{FAKE_ACCOUNT}:root",
                "userId": "AIDAMOCK",
                "id": FAKE_ACCOUNT,
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {
                "name": self.region,
                "region": self.region,
                "id": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
            }, []
        if token == "aws:index/getPartition:getPartition":
            # The partition follows the region, as in AWS: us-gov-* and cn-* regions live
            # in their own partitions, whose ARNs start arn:aws-us-gov: / arn:aws-cn:.
            if self.region.startswith("us-gov-"):
                return {
                    "partition": "aws-us-gov",
                    "dnsSuffix": "amazonaws.com",
                    "id": "aws-us-gov",
                }, []
            if self.region.startswith("cn-"):
                return {"partition": "aws-cn", "dnsSuffix": "amazonaws.com.cn", "id": "aws-cn"}, []
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if token == "aws:elb/getServiceAccount:getServiceAccount":
            return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}, []
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "mock-token",
                "proxyEndpoint": f"https://{FAKE_ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com",
                "authorizationToken": "bW9jaw==",
                "id": self.region,
            }, []
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            import json

            statements = []
            for st in args.args.get("statements", []) or []:
                statements.append({k: v for k, v in st.items() if v is not None})
            return {
                "json": json.dumps({"Version": "2012-10-17", "Statement": statements}),
                "id": "policy",
            }, []
        if token == "aws:ssm/getParameter:getParameter":
            # The public AMI parameters (NAT instance) name an image id.
            return {
                "name": args.args.get("name", ""),
                "value": "ami-0123456789abcdef0",
                "type": "String",
                "id": args.args.get("name", ""),
            }, []
        if token.startswith("gcp:organizations/getProject"):
            return {
                "projectId": self.gcp_project,
                "number": FAKE_GCP_PROJECT_NUMBER,
                "name": self.gcp_project,
                "id": f"projects/{self.gcp_project}",
            }, []
        if token.startswith("gcp:organizations/getClientConfig"):
            return {
                "project": self.gcp_project,
                "region": "europe-west1",
                "accessToken": "mock",
                "id": "client",
            }, []
        return {}, []


def _aws_db(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    identifier = args.inputs.get("identifier") or args.name
    host = f"{args.name}.abcdefghij.{m.region}.rds.amazonaws.com"
    return {
        "address": host,
        "endpoint": f"{host}:5432",
        "port": 5432,
        "resourceId": f"db-{args.name.upper()[:20]}",
        # arn:aws:rds:<region>:<account>:db:<identifier>
        "arn": f"arn:aws:rds:{m.region}:{FAKE_ACCOUNT}:db:{identifier}",
        "masterUserSecrets": [
            {
                "secretArn": f"arn:aws:secretsmanager:{m.region}:"
                f"{FAKE_ACCOUNT}:secret:rds!{args.name}",
                "kmsKeyId": "mock",
                "secretStatus": "active",
            }
        ],
    }


def _aws_acm(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    domain = str(args.inputs.get("domainName", "example.com"))
    return {
        "domainValidationOptions": [
            {
                "domainName": domain,
                "resourceRecordName": f"_0123456789abcdef.{domain}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": "_fedcba9876543210.acm-validations.aws.",
            }
        ],
        "status": "ISSUED",
    }


def _aws_lb(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {
        "dnsName": f"{args.name}-123456.{m.region}.elb.amazonaws.com",
        "arnSuffix": f"app/{args.name}/0123456789abcdef",
        "zoneId": "Z35SXDOTRQ7X7K",
    }


def _aws_tg(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {"arnSuffix": f"targetgroup/{args.name}/0123456789abcdef"}


def _aws_redis(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {
        "primaryEndpointAddress": f"master.{args.name}.abc123.use1.cache.amazonaws.com",
        "memberClusters": [f"{args.name}-001", f"{args.name}-002"],
    }


def _aws_broker(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    host = f"b-{args.name}.mq.{m.region}.amazonaws.com"
    return {
        "instances": [
            {
                "endpoints": [f"amqps://{host}:5671"],
                "consoleUrl": f"https://{host}",
                "ipAddress": "",
            }
        ]
    }


def _aws_ecr(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {
        "repositoryUrl": f"{FAKE_ACCOUNT}.dkr.ecr.{m.region}.amazonaws.com/{args.name}",
        "registryId": FAKE_ACCOUNT,
    }


def _docker_image(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    name = str(args.inputs.get("imageName", args.name))
    return {"repoDigest": f"{name.split(':')[0]}@sha256:{'0' * 64}", "imageName": name}


def _gcp_sql(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {
        "connectionName": f"{m.gcp_project}:europe-west1:{args.name}",
        "privateIpAddress": "10.60.0.3",
        "selfLink": f"https://sql/{args.name}",
    }


def _gcp_redis(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {
        "host": "10.60.1.4",
        "port": 6378,
        "authString": "mock-auth",
        "serverCaCerts": [{"cert": "mock"}],
    }


def _gcp_run(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {"uri": f"https://{args.name}-abc123-ew.a.run.app", "latestReadyRevision": "rev-1"}


def _gcp_sa(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    account = str(args.inputs.get("accountId", args.name))
    return {
        "email": f"{account}@{m.gcp_project}.iam.gserviceaccount.com",
        "member": f"serviceAccount:{account}@{m.gcp_project}.iam.gserviceaccount.com",
    }


def _gcp_service_identity(
    args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks
) -> dict[str, Any]:
    agent = str(args.inputs.get("service", "x.googleapis.com")).split(".")[0]
    email = f"service-{FAKE_GCP_PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com"
    return {"email": email, "member": f"serviceAccount:{email}"}


def _gcp_registry(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    return {"registryUri": f"europe-west1-docker.pkg.dev/{m.gcp_project}/{args.name}"}


def _aws_sqs(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    name = str(args.inputs.get("name") or args.name)
    return {"url": f"https://sqs.{m.region}.amazonaws.com/{FAKE_ACCOUNT}/{name}"}


def _random_id(args: pulumi.runtime.MockResourceArgs, m: GroundworkMocks) -> dict[str, Any]:
    # Derived from the inputs (keepers included) like a real RandomId is renewed with
    # them: a name suffix then changes exactly when its keepers do, which is what
    # `groundwork plan --against` needs to see a create-before-delete name.
    import json

    seed = json.dumps({"name": args.name, "inputs": args.inputs}, sort_keys=True, default=str)
    length = int(args.inputs.get("byteLength") or 8)
    digest = hashlib.sha256(seed.encode()).hexdigest()[: 2 * length]
    return {"hex": digest, "dec": str(int(digest, 16)), "b64Url": digest, "b64Std": digest}


_COMPUTED: dict[
    str, Callable[[pulumi.runtime.MockResourceArgs, GroundworkMocks], dict[str, Any]]
] = {
    "random:index/randomId:RandomId": _random_id,
    "aws:rds/instance:Instance": _aws_db,
    "aws:rds/proxy:Proxy": lambda a, m: {
        "endpoint": f"{a.name}.proxy-abc.{m.region}.rds.amazonaws.com",
        # arn:aws:rds:<region>:<account>:db-proxy:prx-<id>: the prx- id is what
        # rds-db:connect names (RDS User Guide, rds-proxy-iam-setup).
        "arn": f"arn:aws:rds:{m.region}:{FAKE_ACCOUNT}:db-proxy:prx-"
        + hashlib.sha256(a.name.encode()).hexdigest()[:17],
    },
    "aws:acm/certificate:Certificate": _aws_acm,
    "aws:lb/loadBalancer:LoadBalancer": _aws_lb,
    "aws:lb/targetGroup:TargetGroup": _aws_tg,
    "aws:elasticache/replicationGroup:ReplicationGroup": _aws_redis,
    "aws:mq/broker:Broker": _aws_broker,
    "aws:sqs/queue:Queue": _aws_sqs,
    "aws:ec2/instance:Instance": lambda a, m: {"primaryNetworkInterfaceId": f"eni-{a.name}"},
    "aws:ecr/repository:Repository": _aws_ecr,
    "docker:index/image:Image": _docker_image,
    "gcp:sql/databaseInstance:DatabaseInstance": _gcp_sql,
    "gcp:redis/instance:Instance": _gcp_redis,
    "gcp:cloudrunv2/service:Service": _gcp_run,
    "gcp:serviceaccount/account:Account": _gcp_sa,
    "gcp:artifactregistry/repository:Repository": _gcp_registry,
    "gcp:projects/serviceIdentity:ServiceIdentity": _gcp_service_identity,
}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps each registration's parent and options."""

    def __init__(self, mocks: pulumi.runtime.Mocks, project: str, stack: str) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self._lock = threading.Lock()
        self._project = project
        self._stack = stack

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The SDK reads project/stack from context variables, which its executor
        # threads do not inherit; the monitor knows them for certain.
        if parent:
            type_ = parent.split("::")[2].split("$").pop() + "$" + type_
        return f"urn:pulumi:{self._stack}::{self._project}::{type_}::{name}"

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        registration = self.resources.get(response.urn)
        inputs = pulumi_mocks.rpc.deserialize_properties(request.object)
        record = RecordedResource(
            urn=response.urn,
            type=request.type,
            name=request.name,
            inputs=_plain(inputs),
            state=_plain(registration.state if registration else {}),
            custom=bool(request.custom),
            parent=request.parent,
            provider=request.provider,
            protect=bool(request.protect),
            retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
            ignore_changes=list(request.ignoreChanges),
            depends_on=list(request.dependencies),
            delete_before_replace=bool(request.deleteBeforeReplace),
            replace_on_changes=list(request.replaceOnChanges),
            aliases=[a.urn for a in request.aliases if a.urn] + list(request.aliasURNs),
            alias_specs=[
                {
                    "name": a.spec.name,
                    "type": a.spec.type,
                    "project": a.spec.project,
                    "stack": a.spec.stack,
                    "parentUrn": a.spec.parentUrn,
                    "noParent": a.spec.noParent,
                }
                for a in request.aliases
                if a.HasField("spec")
            ],
        )
        with self._lock:
            self.recorded.append(record)
        return response


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _asset(value: pulumi.Asset | pulumi.Archive) -> dict[str, Any]:
    """An asset or archive by what it holds, as the engine compares them.

    The engine identifies an asset by the SHA-256 of its contents, not by the object or
    the checkout it was read from (pulumi/sdk/go/common/resource/asset.go: `Hash`); the
    object's repr carries a memory address, which made every plan of the same tree show
    the function's code as changed.
    """
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "text", "sha256": hashlib.sha256(value.text.encode()).hexdigest()}
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        path = Path(str(value.path))
        kind = "file" if isinstance(value, pulumi.FileAsset) else "directory"
        return {kind: path.name, "sha256": _content_hash(path) if path.exists() else None}
    if isinstance(value, pulumi.RemoteAsset | pulumi.RemoteArchive):
        return {"uri": str(value.uri)}
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {str(k): _plain(v) for k, v in sorted(value.assets.items())}}
    return {"asset": type(value).__name__}


def _plain(value: Any) -> Any:
    """Drop the SDK's unknown/secret sentinels so the graph is plain data."""
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return _asset(value)
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
            return _plain(value.get("value"))
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


_RUN_LOCK = threading.Lock()


@contextlib.contextmanager
def _fresh_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    previous = None
    with contextlib.suppress(RuntimeError):
        previous = asyncio.get_event_loop_policy().get_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(previous)


def run_program(
    program: Callable[[], None],
    *,
    stack: str,
    config: Mapping[str, str] | None = None,
    project: str = "groundwork",
    mocks: pulumi.runtime.Mocks | None = None,
) -> ProgramRun:
    """Run ``program`` as stack ``stack`` with ``config`` (full keys, e.g. ``aws:region``).

    Exceptions raised by the program propagate unchanged so callers can tell a
    configuration error (``pulumi.RunError``) from a bug.
    """
    config = dict(config or {})
    region = config.get("aws:region") or config.get("gcp:region") or "us-east-1"
    mocks = mocks or GroundworkMocks(
        region=region, gcp_project=config.get("gcp:project", "groundwork-test")
    )
    monitor = _RecordingMonitor(mocks, project, stack)
    with _RUN_LOCK, _fresh_event_loop() as loop:
        pulumi_settings.ROOT.set(None)
        pulumi_settings.SETTINGS.outputs.clear()  # a failed run leaves tasks of a closed loop
        pulumi.runtime.set_all_config(config, [])
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=False, monitor=monitor
        )
        root = pulumi_settings.get_root_resource()
        try:
            program()
            loop.run_until_complete(wait_for_rpcs())
        finally:
            exports = dict(getattr(root, "outputs", {}) or {})
            pulumi_settings.ROOT.set(None)
        outputs = {key: _resolve(loop, value) for key, value in exports.items()}
    return ProgramRun(
        project=project, stack=stack, resources=list(monitor.recorded), outputs=outputs
    )


def _resolve(loop: asyncio.AbstractEventLoop, value: Any) -> Any:
    if isinstance(value, pulumi.Output):

        async def _get() -> Any:
            return await value.future()

        return _plain(loop.run_until_complete(_get()))
    if isinstance(value, dict):
        return {k: _resolve(loop, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(loop, v) for v in value]
    return _plain(value)
