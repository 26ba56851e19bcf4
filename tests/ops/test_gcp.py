"""Cloud Run operations through the real google-cloud-run clients and a local gRPC server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from groundwork.ops import gcp
from groundwork.ops.errors import (
    OpsError,
    RevisionNotReadyError,
    RolledBackError,
    TaskFailedError,
    UserError,
)
from groundwork.ops.outputs import StackOutputs


def no_sleep(_: float) -> None:
    pass


def _migrate(run_api: Any, job: str, image: str | None = None) -> gcp.ExecutionResult:
    """``run_migrate_job`` on the fake Cloud Run API, polling without sleeping."""
    return gcp.run_migrate_job(
        run_api.clients["jobs"],
        run_api.clients["executions"],
        job,
        image=image,
        poll_seconds=0,
        sleep=no_sleep,
    )


def test_migrate_job_updates_image_runs_and_waits(run_api: Any) -> None:
    job = run_api.fake.add_job("groundwork-staging-migrate", "europe-docker.pkg.dev/p/r/app:v1")
    result = _migrate(run_api, job, "europe-docker.pkg.dev/p/r/app:v2")
    assert result.succeeded == 1
    assert result.name.startswith(f"{job}/executions/")
    execution = run_api.fake.executions[result.name]
    assert execution.labels["image"] == "europe-docker.pkg.dev/p/r/app:v2"
    assert int(execution.labels["polls"]) == run_api.fake.execution_polls
    assert run_api.fake.calls[:3] == ["GetJob", "UpdateJob", "RunJob"]


def test_migrate_job_skips_update_when_image_is_current(run_api: Any) -> None:
    job = run_api.fake.add_job("m", "img:v1")
    _migrate(run_api, job, "img:v1")
    assert "UpdateJob" not in run_api.fake.calls


def test_failed_migrate_job_reports_condition_and_logs(run_api: Any) -> None:
    job = run_api.fake.add_job("m", "img:v1")
    run_api.fake.execution_fails = True
    with pytest.raises(TaskFailedError) as failure:
        _migrate(run_api, job)
    message = str(failure.value)
    assert "1 failed" in message
    assert "exit code 1" in message
    assert "logs: https://console.cloud.google.com/logs?exec=" in message


def test_unknown_job_is_a_user_error(run_api: Any) -> None:
    with pytest.raises(UserError, match="not found"):
        _migrate(run_api, f"{run_api.module.PARENT}/jobs/nope")


def _api(run_api: Any, candidate_ok: bool = True) -> str:
    return run_api.fake.add_service(
        "groundwork-production-api",
        [("api-00001-aaa", True), ("api-00002-bbb", True), ("api-00003-ccc", candidate_ok)],
        serving="api-00002-bbb",
    )


def _shift(
    run_api: Any, service: str, steps: list[int], health: Callable[[], None] = lambda: None
) -> gcp.ShiftReport:
    """``shift_traffic`` on the fake Cloud Run API, without baking or sleeping."""
    return gcp.shift_traffic(
        run_api.clients["services"],
        run_api.clients["revisions"],
        service,
        steps,
        health,
        bake_seconds=0,
        sleep=no_sleep,
    )


def test_shift_traffic_walks_the_canary_steps(run_api: Any) -> None:
    service = _api(run_api)
    checks: list[list[tuple[str, int]]] = []

    def health() -> None:
        checks.append(run_api.fake.updates[-1])

    report = _shift(run_api, service, [10, 50, 100], health)
    assert report.candidate == "api-00003-ccc"
    assert report.applied_steps == [10, 50, 100]
    assert run_api.fake.updates == [
        [("api-00003-ccc", 10), ("api-00002-bbb", 90)],
        [("api-00003-ccc", 50), ("api-00002-bbb", 50)],
        [("api-00003-ccc", 100)],
    ]
    # The health check ran after every step, against the split of that step.
    assert checks == run_api.fake.updates
    served = gcp.current_split(run_api.clients["services"].get_service(name=service))
    assert served == [("api-00003-ccc", 100)]


def test_failed_health_check_rolls_back_to_the_original_split(run_api: Any) -> None:
    service = _api(run_api)
    from groundwork.ops.errors import SmokeTestError

    def health() -> None:
        if run_api.fake.updates[-1][0][1] == 50:
            raise SmokeTestError("GET /health/ready returned 503")

    with pytest.raises(RolledBackError, match=r"failed at 50%.*503.*api-00002-bbb 100%"):
        _shift(run_api, service, [10, 50, 100], health)
    assert run_api.fake.updates[-1] == [("api-00002-bbb", 100)]


def test_service_not_ready_after_a_step_rolls_back(run_api: Any) -> None:
    service = _api(run_api)
    run_api.fake.fail_update_at = 1
    with pytest.raises(RolledBackError, match=r"failed at 10%.*revision crashed under load"):
        _shift(run_api, service, [10, 100])
    assert run_api.fake.updates[-1] == [("api-00002-bbb", 100)]


def test_a_revision_that_is_not_ready_gets_no_traffic(run_api: Any) -> None:
    service = _api(run_api, candidate_ok=False)
    with pytest.raises(RevisionNotReadyError, match="api-00003-ccc is not ready: container failed"):
        _shift(run_api, service, [10, 100])
    assert run_api.fake.updates == []


def test_rollback_sends_everything_to_the_previous_ready_revision(run_api: Any) -> None:
    service = _api(run_api)
    _shift(run_api, service, [100])
    before, target = gcp.rollback_traffic(
        run_api.clients["services"], run_api.clients["revisions"], service
    )
    assert before == [("api-00003-ccc", 100)]
    assert target == "api-00002-bbb"
    assert run_api.fake.updates[-1] == [("api-00002-bbb", 100)]


def test_rollback_skips_revisions_that_never_became_ready(run_api: Any) -> None:
    service = run_api.fake.add_service(
        "svc", [("s-1", True), ("s-2", False), ("s-3", True)], serving="s-3"
    )
    _, target = gcp.rollback_traffic(
        run_api.clients["services"], run_api.clients["revisions"], service
    )
    assert target == "s-1"


def test_rollback_with_nothing_older_says_so(run_api: Any) -> None:
    service = run_api.fake.add_service("svc", [("s-1", True)], serving="s-1")
    with pytest.raises(UserError, match="no ready revision older than s-1"):
        gcp.rollback_traffic(run_api.clients["services"], run_api.clients["revisions"], service)


def test_service_ready_reports_the_condition(run_api: Any) -> None:
    service = _api(run_api)
    assert gcp.service_ready(run_api.clients["services"], service).startswith("https://")
    run_api.fake.services[service].terminal_condition = run_api.module.run_v2.Condition(
        type_="Ready", state=run_api.module.FAILED, message="quota exceeded"
    )
    with pytest.raises(RevisionNotReadyError, match="quota exceeded"):
        gcp.service_ready(run_api.clients["services"], service)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("10,50,100", True),
        ("100", True),
        ("50,10,100", False),
        ("10,50", False),
        ("0,100", False),
        ("a,100", False),
        ("10,10,100", False),
    ],
)
def test_parse_steps(raw: str, ok: bool) -> None:
    if ok:
        assert gcp.parse_steps(raw)[-1] == 100
    else:
        with pytest.raises(UserError, match="--steps"):
            gcp.parse_steps(raw)


def test_names_from_outputs_require_a_gcp_stack() -> None:
    outputs = StackOutputs("production", {"cloud": "gcp", "project": "p", "region": "r"}, "t")
    names = gcp.GcpNames.from_outputs(outputs)
    assert names.service("api") == "projects/p/locations/r/services/api"
    assert names.job("projects/x/locations/y/jobs/m") == "projects/x/locations/y/jobs/m"
    with pytest.raises(OpsError, match="deployed to aws"):
        gcp.GcpNames.from_outputs(StackOutputs("s", {"cloud": "aws"}, "t"))
