"""The stack settings model: per-environment defaults, overrides and clear errors."""

from __future__ import annotations

import pulumi
import pytest

from groundwork.mockrun import run_program
from stacks.config import KNOWN_KEYS, Cloud, ConfigError, Tier, build_settings, load_settings


def test_staging_and_production_defaults_differ_where_ha_matters():
    staging = build_settings("staging", {})
    production = build_settings("production", {})
    assert staging.tier is Tier.STAGING and production.is_production
    assert (staging.availability_zones, production.availability_zones) == (2, 3)
    assert (staging.nat, production.nat) == ("instance", "one-per-az")
    # Staging runs the queue production runs (issue 21: same architecture per tier).
    assert staging.queue == production.queue == "rabbitmq"
    # Graviton on both tiers (Fargate Spot runs ARM64 on platform 1.4.0+): same image arch.
    assert (staging.cpu_architecture, production.cpu_architecture) == ("arm64", "arm64")
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


# --- worker capacity: concurrency from memory, LLM rate limit per task (issue 20) --------


def test_worker_concurrency_defaults_to_what_the_task_cpu_and_memory_hold():
    from stacks.config import (
        MAX_WORKER_CONCURRENCY,
        worker_concurrency_for,
        worker_cpu_bound,
        worker_memory_bound,
    )

    staging = build_settings("staging", {})  # 0.25 vCPU / 512 MB on Fargate
    assert staging.worker_concurrency is None
    # 0.25 vCPU x 70 % / 1.0 ms per job (0.39-0.94 measured on two machines,
    # docs/performance.md) = 175 jobs/s x 2 s in flight
    assert staging.worker_slots == worker_cpu_bound(0.25) == 350
    assert worker_memory_bound(512) > 350  # memory is not what binds here
    assert staging.worker_jobs_per_second == 350 / 2
    production = build_settings("production", {})  # 1 vCPU / 2 GB
    # 1 vCPU would complete 700 jobs/s: the slots stop at Cloud Run's cap of 1,000,
    # and they, not the CPU, bound the task's capacity.
    assert production.worker_slots == 1000
    assert production.worker_jobs_per_second == 500
    # Slots forced above what the CPU turns over: the CPU bounds the capacity.
    forced = build_settings("staging", {"workerConcurrency": "800"})
    assert forced.worker_jobs_per_second == pytest.approx(0.25 * 0.7 * 1000 / 1.0)
    # A 256 MB task cannot hold that many calls: the default shrinks, no OOM kill.
    small = build_settings("production", {"workerMemoryMb": "256", "workerCpu": "1024"})
    assert small.worker_slots == worker_memory_bound(256) < production.worker_slots
    assert worker_concurrency_for(30720, 16) == MAX_WORKER_CONCURRENCY
    # Cloud Run sizes from gcpRunCpu / gcpRunMemory, not the Fargate keys.
    gcp = build_settings("staging", {"cloud": "gcp"})
    assert (gcp.worker_task_vcpus, gcp.worker_task_memory_mb) == (1.0, 512)
    assert gcp.worker_slots == worker_concurrency_for(512, 1.0)
    assert build_settings("production", {"cloud": "gcp"}).worker_task_memory_mb == 1024


def test_worker_concurrency_above_the_memory_bound_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        build_settings("staging", {"workerMemoryMb": "256", "workerConcurrency": "900"})
    text = str(err.value)
    assert "groundwork:workerConcurrency (900)" in text and "workerMemoryMb" in text
    assert "raise workerMemoryMb or lower workerConcurrency" in text
    with pytest.raises(ConfigError, match="gcpRunMemory"):
        build_settings(
            "staging", {"cloud": "gcp", "gcpRunMemory": "256Mi", "workerConcurrency": "900"}
        )
    assert build_settings("staging", {"workerConcurrency": "64"}).worker_slots == 64


def test_llm_rate_limit_is_shared_by_the_most_worker_tasks_that_can_run():
    settings = build_settings("production", {"llmRequestsPerMinute": "5000"})
    assert settings.llm_requests_per_minute_per_task == 5000 // settings.worker_max_count
    assert build_settings("staging", {}).llm_requests_per_minute_per_task == 0
    with pytest.raises(ConfigError, match=r"llmRequestsPerMinute \(5\) is below"):
        build_settings("production", {"llmRequestsPerMinute": "5"})


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


def test_a_review_stack_name_resolves_to_the_staging_tier_at_its_smallest():
    from stacks.config import resource_prefix

    review = build_settings("review-pr-123", {})
    staging = build_settings("staging", {})
    assert review.tier is Tier.STAGING
    assert (review.api_max_count, review.worker_max_count) == (1, 1)
    assert review.db_backup_retention_days == 1 and review.log_retention_days == 7
    assert review.db_instance_class == staging.db_instance_class
    assert not review.deletion_protection
    # Its config (copied from staging) still wins over the review defaults.
    assert build_settings("review-pr-123", {"apiMaxCount": "2"}).api_max_count == 2
    assert resource_prefix(review, "review-pr-123") == "groundwork-pr123"
    assert resource_prefix(staging, "staging") == "groundwork-staging"


def test_a_review_stack_takes_a_hostname_of_its_own_and_never_production():
    review = build_settings(
        "review-pr-9",
        {
            "environment": "staging",
            "domain": "api.staging.example.com",
            "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x",
            "hostedZoneId": "Z0123456789EXAMPLE",
        },
    )
    assert review.domain == "pr9.api.staging.example.com"
    assert review.certificate_arn is None  # issued for the new name in the zone instead
    with pytest.raises(ConfigError, match="review stacks use the staging tier"):
        build_settings("review-pr-9", {"environment": "production"})
    with pytest.raises(ConfigError, match="review-pr-<pull request number>"):
        build_settings("review-mine", {})
