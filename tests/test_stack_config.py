"""The stack settings model: per-environment defaults, overrides and clear errors."""

from __future__ import annotations

import pulumi
import pytest

from groundwork.mockrun import run_program
from stacks.config import KNOWN_KEYS, Cloud, ConfigError, Tier, build_settings, load_settings


def test_staging_and_production_defaults_differ_where_ha_matters():
    staging = build_settings("staging", {})
    production = build_settings("production", {})
    assert staging.environment is Tier.STAGING and production.is_production
    assert (staging.availability_zones, production.availability_zones) == (2, 3)
    assert (staging.nat, production.nat) == ("instance", "one-per-az")
    assert (staging.queue, production.queue) == ("sqs", "rabbitmq")
    assert (staging.cpu_architecture, production.cpu_architecture) == ("x86_64", "arm64")
    assert not staging.db_multi_az and production.db_multi_az
    assert (staging.db_backup_retention_days, production.db_backup_retention_days) == (7, 30)
    assert not staging.deletion_protection and production.deletion_protection
    assert staging.worker_spot and not production.worker_spot
    assert staging.api_spot and staging.relay_spot
    assert not production.api_spot and not production.relay_spot
    assert staging.ecs_exec and not production.ecs_exec


def test_overrides_win_and_strings_from_pulumi_config_are_coerced():
    settings = build_settings(
        "staging", {"cloud": "gcp", "dbMultiAz": "true", "apiMaxCount": "7", "costCenter": "ml"}
    )
    assert settings.cloud is Cloud.GCP
    assert settings.db_multi_az is True
    assert settings.api_max_count == 7
    assert settings.tags == {
        "environment": "staging",
        "service": "groundwork",
        "managed-by": "pulumi",
        "cost-center": "ml",
    }


def test_environment_may_be_set_explicitly_for_other_stack_names():
    assert build_settings("prod-eu", {"environment": "production"}).is_production


@pytest.mark.parametrize(
    ("stack", "values", "expected"),
    [
        (
            "staging",
            {"nat": "many"},
            "groundwork:nat = 'many' is invalid: must be one of none, instance, single",
        ),
        ("staging", {"cloud": "azure"}, "groundwork:cloud = 'azure' is invalid"),
        ("staging", {"vpcCidr": "10.0.0.0/24"}, "groundwork:vpcCidr = '10.0.0.0/24' is invalid"),
        ("staging", {"vpcCidr": "8.8.0.0/16"}, "must be a private (RFC 1918) range"),
        ("staging", {"vpcCidr": "banana"}, "must be an IPv4 CIDR block such as 10.40.0.0/16"),
        ("staging", {"dbMultiAz": "maybe"}, "groundwork:dbMultiAz = 'maybe' is invalid"),
        ("staging", {"logRetentionDays": "10"}, "groundwork:logRetentionDays = '10' is invalid"),
        ("staging", {"colour": "blue"}, "unknown config key groundwork:colour"),
        ("dev", {}, "groundwork:environment is 'dev'; allowed: staging, production"),
        (
            "staging",
            {"apiMinCount": "5", "apiMaxCount": "2"},
            "apiMinCount (5) exceeds apiMaxCount (2)",
        ),
        ("staging", {"workerMinCount": "4", "workerMaxCount": "1"}, "workerMinCount (4) exceeds"),
        ("staging", {"certificateArn": "arn:aws:acm:x"}, "certificateArn needs groundwork:domain"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(stack, values, expected):
    with pytest.raises(ConfigError) as excinfo:
        build_settings(stack, values)
    assert expected in str(excinfo.value)
    # A pulumi.RunError is printed by the Pulumi engine without a Python traceback.
    assert isinstance(excinfo.value, pulumi.RunError)


def test_every_model_field_has_a_known_camel_case_key():
    assert {"cloud", "environment", "nat", "dbMultiAz", "alarmEmail", "costCenter"} <= KNOWN_KEYS


def test_load_settings_reads_pulumi_config_and_stops_before_any_resource():
    def program() -> None:
        settings = load_settings()
        pulumi.export("nat", settings.nat)

    run = run_program(program, stack="production", config={"groundwork:nat": "single"})
    assert run.outputs == {"nat": "single"}

    def failing() -> None:
        load_settings()
        pulumi.CustomResource("test:index:Never", "never")  # must not be reached

    with pytest.raises(ConfigError):
        run_program(failing, stack="staging", config={"groundwork:nat": "bogus"})


def test_a_misspelled_key_fails_the_program_itself_naming_the_nearest_known_key():
    """`pulumi up` runs the program, not `groundwork plan`: the program must refuse a key
    it does not know, or `groundwork:dbMultiAZ true` deploys a single-AZ database."""

    def program() -> None:
        load_settings()
        pulumi.CustomResource("test:index:Never", "never")  # must not be reached

    with pytest.raises(ConfigError) as raised:
        run_program(
            program,
            stack="production",
            config={"groundwork:dbMultiAZ": "true", "aws:region": "us-east-1"},
        )
    message = str(raised.value)
    assert "unknown config key groundwork:dbMultiAZ" in message
    assert "did you mean groundwork:dbMultiAz?" in message
    # Other namespaces are not ours to judge.
    run = run_program(
        lambda: pulumi.export("ok", load_settings().nat),
        stack="staging",
        config={"aws:region": "us-east-1", "gcp:whatever": "x"},
    )
    assert run.outputs == {"ok": "instance"}  # the staging default
