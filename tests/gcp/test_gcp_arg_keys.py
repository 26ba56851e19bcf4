"""Item 2 of issue 19 on GCP: the stack builds every Args a config value reaches before
any resource, each cloud rule has one owner (the component's Args), and each bad value
gives one ConfigError naming its config key, not a component's field."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.args import FROM_RESOURCE, ArgError
from components.gcp import ApiExposure, CacheArgs, DatabaseArgs, EdgeArgs, ServiceSize
from stacks.arg_keys import CONFIG_KEYS, config_keys
from stacks.config import ConfigError, build_settings
from stacks.gcp import build_config_args
from tests.gcp.helpers import PROJECT, REGION, GcpMocks, run_stack

STAGING = {"cloud": "gcp"}
PRODUCTION = {"cloud": "gcp", "domain": "api.example.com"}


@pytest.mark.parametrize(
    ("stack", "config", "key", "fragment"),
    [
        # Cloud Run: https://cloud.google.com/run/docs/configuring/services/memory-limits
        # (512 MiB to 32 GiB on gen2) and /cpu ("4 CPU requires at least 2 GiB").
        ("staging", {"gcpRunMemory": "64Gi"}, "gcpRunMemory", "512Mi-32Gi"),
        ("staging", {"gcpRunCpu": "3"}, "gcpRunCpu", "one of 1, 2, 4, 6, 8"),
        ("staging", {"gcpRunCpu": "4"}, "gcpRunMemory", "does not fit 4 vCPU"),
        ("staging", {"gcpApiMinInstances": "5"}, "gcpApiMinInstances", "maximum instances (3)"),
        ("staging", {"gcpWorkerMinInstances": "5"}, "gcpWorkerMinInstances", "maximum"),
        (
            "staging",
            {"dbAllocatedStorageGb": "50", "dbMaxStorageGb": "30"},
            "dbMaxStorageGb",
            "disk size (50 GB)",
        ),
        # Memorystore for Redis: 1 to 300 GB per instance.
        ("staging", {"gcpRedisMemoryGb": "400"}, "gcpRedisMemoryGb", "1-300"),
        ("staging", {"gcpRedisMemoryGb": "0"}, "gcpRedisMemoryGb", "1-300"),
        ("production", {"domain": "API.example.com"}, "domain", "lowercase DNS hostname"),
    ],
)
def test_a_bad_value_is_one_config_error_naming_its_key(
    stack: str, config: dict[str, str], key: str, fragment: str
) -> None:
    base = PRODUCTION if stack == "production" else STAGING
    settings = build_settings(stack, {**base, **config})
    exposure = ApiExposure.LOAD_BALANCER if settings.edge_load_balancer else ApiExposure.PUBLIC
    with pytest.raises(ConfigError) as caught:
        build_config_args(settings, REGION, {}, exposure)
    message = str(caught.value)
    assert message.startswith(f"groundwork:{key} = "), message
    assert fragment in message
    # The config key, never the component's field.
    for field in ("memory=", "min_instances", "max_instances", "disk_", "memory_size_gb"):
        assert field not in message, message


class CountingMocks(GcpMocks):
    def __init__(self) -> None:
        super().__init__(region=REGION, gcp_project=PROJECT)
        self.registered: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args.typ)
        return super().new_resource(args)


def test_the_stack_stops_before_registering_any_resource() -> None:
    """The same error from the whole program with nothing registered (not even the
    provider): Args built after resources left a half-created stack and a traceback."""
    mocks = CountingMocks()
    with pytest.raises(ConfigError, match="groundwork:gcpRunMemory = '64Gi'"):
        run_stack("staging", {"gcpRunMemory": "64Gi"}, mocks=mocks)
    assert mocks.registered == []
    # The same mocks do count registrations.
    run_stack("staging", mocks=mocks)
    assert mocks.registered


def test_every_arg_error_of_a_mapped_args_type_has_a_config_key() -> None:
    cases: list[tuple[type, str, Any]] = [
        (ServiceSize, "api", lambda: ServiceSize(cpu="3")),
        (ServiceSize, "api", lambda: ServiceSize(memory="64Gi")),
        (ServiceSize, "worker", lambda: ServiceSize(min_instances=4, max_instances=3)),
        (DatabaseArgs, "", lambda: DatabaseArgs(network_id="n", disk_autoresize_limit_gb=10)),
        (DatabaseArgs, "", lambda: DatabaseArgs(network_id="n", backup_retention_days=0)),
        (CacheArgs, "", lambda: CacheArgs(network_id="n", memory_size_gb=301)),
        (EdgeArgs, "", lambda: EdgeArgs(region=REGION, api_service_name="a", domain="A.b")),
    ]
    for args_type, scope, build in cases:
        with pytest.raises(ArgError) as caught:
            build()
        field = f"{scope}.{caught.value.field}" if scope else caught.value.field
        key = CONFIG_KEYS[(args_type, field)]
        expected = f"groundwork:{key} = "
        with pytest.raises(ConfigError, match=expected), config_keys(args_type, scope):
            build()


def test_an_unmapped_field_stays_a_programming_error() -> None:
    with pytest.raises(ArgError), config_keys(ServiceSize, "api"):
        ServiceSize(concurrency=0)


def test_a_placeholder_never_reaches_a_resource() -> None:
    from components.gcp import Cache
    from tests.gcp.helpers import run

    with pytest.raises(ValueError, match=r"CacheArgs\.network_id was never set"):
        run(lambda: Cache("cache", CacheArgs(network_id=FROM_RESOURCE)))


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_alarm_address_shape_is_one_settings_check_for_both_clouds(cloud: str) -> None:
    # Before, AWS checked it in its stack and GCP only in AlarmsArgs, after resources.
    with pytest.raises(ConfigError, match="groundwork:alarmEmail = 'oncall' is invalid: an e-mail"):
        build_settings("staging", {"cloud": cloud, "alarmEmail": "oncall"})
