"""Fixtures for the ops tests: fake AWS credentials for moto and a real local job API."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws

from tests.moto_server import use_test_credentials

JWT_SECRET = "s" * 40 + "-smoke-test-signing-key"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials moto accepts, and no chance of reaching a real account."""
    use_test_credentials(monkeypatch)


@dataclass
class JobApiState:
    """Behaviour switches of the local job API."""

    ready_status: int = 200
    polls_until_done: int = 2
    final_status: str = "succeeded"
    secret: str = JWT_SECRET
    jobs: dict[str, int] = field(default_factory=dict)
    seen_tokens: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: JobApiState

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                self.state.secret,
                algorithms=["HS256"],
                audience="groundwork-api",
                issuer="groundwork",
            )
        except jwt.PyJWTError:
            return False
        self.state.seen_tokens.append(claims)
        return True

    def do_GET(self) -> None:
        self.state.requests.append(f"GET {self.path}")
        if self.path == "/health/ready":
            self._send(
                self.state.ready_status,
                {"status": "ok" if self.state.ready_status == 200 else "down"},
            )
            return
        if self.path.startswith("/v1/jobs/"):
            if not self._authorized():
                self._send(401, {"detail": "unauthorized"})
                return
            job_id = self.path.rsplit("/", 1)[-1]
            if job_id not in self.state.jobs:
                self._send(404, {"detail": "not found"})
                return
            self.state.jobs[job_id] += 1
            done = self.state.jobs[job_id] >= self.state.polls_until_done
            status = self.state.final_status if done else "queued"
            self._send(200, {"id": job_id, "status": status})
            return
        self._send(404, {"detail": "not found"})

    def do_POST(self) -> None:
        self.state.requests.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/jobs":
            self._send(404, {"detail": "not found"})
            return
        if not self._authorized():
            self._send(401, {"detail": "unauthorized"})
            return
        if not body.get("prompt"):
            self._send(422, {"detail": "prompt required"})
            return
        job_id = str(uuid.uuid4())
        self.state.jobs[job_id] = 0
        self._send(202, {"id": job_id, "status": "queued"})


@dataclass
class JobApi:
    url: str
    state: JobApiState


@pytest.fixture
def job_api() -> Iterator[JobApi]:
    """A real HTTP server on 127.0.0.1 speaking the service's job API."""
    state = JobApiState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield JobApi(url=f"http://127.0.0.1:{server.server_address[1]}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- a small AWS world in moto that looks like a deployed groundwork stack ---------

REGION = "us-east-1"
CLUSTER = "groundwork-staging"
LOG_GROUP = "/ecs/groundwork-staging/migrate"


def container(name: str, image: str, prefix: str = "migrate") -> Any:
    return {
        "name": name,
        "image": image,
        "essential": True,
        "cpu": 256,
        "memory": 512,
        "command": ["migrate"],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": LOG_GROUP,
                "awslogs-region": REGION,
                "awslogs-stream-prefix": prefix,
            },
        },
    }


def build_stack() -> dict[str, Any]:
    """VPC, subnets, SG, cluster, migrate task definition, services with two revisions."""
    ec2 = boto3.client("ec2", region_name=REGION)
    ecs = boto3.client("ecs", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    # Fargate ENIs get private DNS names only with DNS hostnames on (as the stacks set).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"]
        for i in range(2)
    ]
    sg = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName=CLUSTER)
    migrate = ecs.register_task_definition(
        family="groundwork-staging-migrate",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[container("migrate", "repo/app:v1")],
        tags=[{"key": "environment", "value": "staging"}],
    )["taskDefinition"]["taskDefinitionArn"]
    services: dict[str, list[str]] = {}
    for process in ("api", "worker", "relay"):
        family = f"groundwork-staging-{process}"
        arns = [
            ecs.register_task_definition(
                family=family,
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="256",
                memory="512",
                containerDefinitions=[container(process, f"repo/app:v{rev}", process)],
            )["taskDefinition"]["taskDefinitionArn"]
            for rev in (1, 2)
        ]
        ecs.create_service(
            cluster=CLUSTER,
            serviceName=family,
            taskDefinition=arns[-1],
            desiredCount=1,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg]}
            },
        )
        services[process] = arns
    return {
        "cloud": "aws",
        "region": REGION,
        "api_url": "http://127.0.0.1:1",
        "cluster_name": CLUSTER,
        "api_service_name": "groundwork-staging-api",
        "worker_service_name": "groundwork-staging-worker",
        "relay_service_name": "groundwork-staging-relay",
        "migrate_task_definition_arn": migrate,
        "task_subnet_ids": subnets,
        "task_security_group_ids": [sg],
        "dlq_name": "jobs.dlq",
        "_revisions": services,
        "_vpc": vpc,
    }


@pytest.fixture
def stack(aws_env: None) -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield build_stack()


# --- a local gRPC stand-in for the Cloud Run v2 API -----------------------------------


def _load_fake_run() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "groundwork_tests_fake_run", Path(__file__).with_name("fake_run.py")
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


fake_run_module = _load_fake_run()


@dataclass
class RunApi:
    fake: Any
    clients: dict[str, Any]
    module: Any


@pytest.fixture
def run_api() -> Iterator[RunApi]:
    fake = fake_run_module.FakeRun()
    server, address = fake_run_module.serve(fake)
    clients = fake_run_module.clients(address)
    try:
        yield RunApi(fake=fake, clients=clients, module=fake_run_module)
    finally:
        clients["channel"].close()
        server.stop(grace=None)


BROKER_NAME = "groundwork-staging-broker"


def moto_broker() -> tuple[Any, Any, str]:
    """The staging RabbitMQ broker on moto: (mq client, cloudwatch client, broker id)."""
    mq = boto3.client("mq", region_name=REGION)
    broker_id = mq.create_broker(
        BrokerName=BROKER_NAME,
        EngineType="RABBITMQ",
        EngineVersion="3.13",
        HostInstanceType="mq.t3.micro",
        DeploymentMode="SINGLE_INSTANCE",
        PubliclyAccessible=False,
        AutoMinorVersionUpgrade=True,
        Users=[{"Username": "app", "Password": "x" * 16}],
    )["BrokerId"]
    return mq, boto3.client("cloudwatch", region_name=REGION), broker_id


def put_queue_depth(cloudwatch: Any, value: float, at: datetime, queue: str = "jobs.dlq") -> None:
    """One Amazon MQ ``MessageCount`` datapoint of ``queue`` on the staging broker."""
    dims = [
        {"Name": "Broker", "Value": BROKER_NAME},
        {"Name": "VirtualHost", "Value": "/"},
        {"Name": "Queue", "Value": queue},
    ]
    cloudwatch.put_metric_data(
        Namespace="AWS/AmazonMQ",
        MetricData=[
            {"MetricName": "MessageCount", "Dimensions": dims, "Value": value, "Timestamp": at}
        ],
    )


def moto_database(stack: dict[str, Any]) -> Any:
    """The staging RDS instance on moto, in the stack's task subnets; its rds client."""
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_subnet_group(
        DBSubnetGroupName="groundwork-staging-db",
        DBSubnetGroupDescription="db",
        SubnetIds=stack["task_subnet_ids"],
    )
    rds.create_db_instance(
        DBInstanceIdentifier="groundwork-staging-db",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="groundwork",
        ManageMasterUserPassword=True,
        DBSubnetGroupName="groundwork-staging-db",
        VpcSecurityGroupIds=stack["task_security_group_ids"],
        Tags=[{"Key": "environment", "Value": "staging"}],
    )
    return rds
