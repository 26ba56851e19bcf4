"""Shared fixtures for the AWS suite: mock-runtime runs of components and whole stacks."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import keyword
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
from moto.logs.exceptions import ResourceNotFoundException
from moto.logs.responses import LogsResponse

from groundwork.mockrun import GroundworkMocks, ProgramRun, RecordedResource, run_program
from stacks import program
from tests.failing_program import failure_of
from tests.moto_server import moto_server, use_test_credentials

# Most tests build the stack without a domain; that is only allowed when plain HTTP is
# asked for explicitly (test_stack.py covers the refusal and the HTTPS variants).
AWS_CONFIG = {"aws:region": "us-east-1", "groundwork:insecureHttp": "true"}


class PasswordMocks(GroundworkMocks):
    """GroundworkMocks plus a recognisable value for every generated password.

    Lets tests follow a generated secret to where it must (and must not) end up.
    """

    def __init__(self) -> None:
        super().__init__(region="us-east-1")

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated-{args.name}-value"
        if args.typ == "random:index/randomId:RandomId":
            # byte_length "random" bytes, hex-encoded; new ones whenever the keepers
            # change, as the provider replaces the resource then.
            size = int(args.inputs["byteLength"])
            seed = args.name + json.dumps(args.inputs.get("keepers"), sort_keys=True)
            state["hex"] = hashlib.sha256(seed.encode()).hexdigest()[: 2 * size]
        if args.typ == "aws:acm/certificate:Certificate":
            state["domainValidationOptions"] = [
                {
                    "domainName": args.inputs["domainName"],
                    "resourceRecordName": f"_x.{args.inputs['domainName']}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_y.acm-validations.aws.",
                }
            ]
        return resource_id, state


class CountingMocks(PasswordMocks):
    """Mocks that remember every resource the program asked to create."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.created.append(args.typ)
        return super().new_resource(args)


def run_stack(stack: str, **config: str) -> ProgramRun:
    full = {**AWS_CONFIG, "groundwork:environment": stack}
    full.update({f"groundwork:{k}": v for k, v in config.items()})
    return run_program(program, stack=stack, config=full, mocks=PasswordMocks())


def run_component(build: Callable[[], object], stack: str = "test") -> ProgramRun:
    """Run ``build`` (which creates one component) as a whole program under mocks."""

    def component_program() -> None:
        build()

    return run_program(component_program, stack=stack, config=AWS_CONFIG, mocks=PasswordMocks())


def run_failing(stack: str, config: dict[str, str], mocks: GroundworkMocks) -> BaseException:
    """Run the program expecting it to raise; return the exception."""
    return failure_of(lambda: run_program(program, stack=stack, config=config, mocks=mocks))


@cache
def taggable(type_token: str) -> bool:
    """Whether the provider resource behind ``type_token`` accepts a ``tags`` input."""
    package, path, cls_name = type_token.split(":")
    if package != "aws" or path.startswith("index"):
        return False
    module_name = path.split("/")[0]
    # Python keywords get a trailing underscore in the SDK (aws:lambda -> pulumi_aws.lambda_).
    module_name = f"{module_name}_" if keyword.iskeyword(module_name) else module_name
    module = importlib.import_module(f"pulumi_aws.{module_name}")
    cls = getattr(module, cls_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def container_definitions(resource: RecordedResource) -> list[dict[str, Any]]:
    return json.loads(resource.inputs["containerDefinitions"])


def ids_by_name(run: ProgramRun, type_token: str) -> dict[str, str]:
    """Map the (mock) id of each resource of ``type_token`` to its logical name."""
    return {r.state["id"]: r.name for r in run.of_type(type_token)}


@pytest.fixture(scope="session")
def staging() -> ProgramRun:
    """Staging with `queue=sqs`: the opt-in that meets the $100 staging target (most
    staging tests exercise the SQS wiring through it; `staging_rabbitmq` is the default)."""
    return run_stack("staging", queue="sqs")


@pytest.fixture(scope="session")
def production() -> ProgramRun:
    return run_stack("production")


@pytest.fixture(scope="session")
def staging_rabbitmq() -> ProgramRun:
    """Staging as it deploys by default: the Amazon MQ broker, as production."""
    return run_stack("staging", queue="rabbitmq")


@pytest.fixture(scope="session")
def production_sqs() -> ProgramRun:
    return run_stack("production", queue="sqs")


@pytest.fixture
def counting_mocks() -> CountingMocks:
    return CountingMocks()


@pytest.fixture
def helpers() -> Any:
    class _Helpers:
        run_stack = staticmethod(run_stack)
        run_component = staticmethod(run_component)
        taggable = staticmethod(taggable)
        container_definitions = staticmethod(container_definitions)
        ids_by_name = staticmethod(ids_by_name)
        run_failing = staticmethod(run_failing)
        CountingMocks = globals()["CountingMocks"]

    return _Helpers


# --- moto's standalone server: real HTTP on loopback, as boto3 talks to AWS ------------


def _associate_kms_key(self: LogsResponse) -> str:
    """AssociateKmsKey as the CloudWatch Logs API documents it (moto 5 lacks it): the key
    ARN becomes the group's ``kmsKeyId``; ResourceNotFoundException for a missing group."""
    name = self._get_param("logGroupName")
    group = self.logs_backend.groups.get(name)
    if group is None:
        raise ResourceNotFoundException()
    group.kms_key_id = self._get_param("kmsKeyId")
    return ""


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    use_test_credentials(monkeypatch)
    monkeypatch.setattr(LogsResponse, "associate_kms_key", _associate_kms_key, raising=False)
    with moto_server(monkeypatch) as url:
        yield url
