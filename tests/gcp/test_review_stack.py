"""A GCP review stack (`review-pr-<n>`, staging's config copied in) shares no resource
name with staging in the project: Cloud Run services, service accounts, secrets, topics,
the Cloud SQL instance and buckets are all named per project, and a second create of a
name staging holds fails with 409 alreadyExists."""

from __future__ import annotations

from groundwork.mockrun import ProgramRun
from tests.gcp.helpers import run_stack

NAME_KEYS = {"name", "accountId", "secretId", "bucketId", "instance"}
# Named within their Cloud SQL instance, which differs: no clash.
INSTANCE_SCOPED = {"gcp:sql/database:Database", "gcp:sql/user:User"}
STAGING = {"environment": "staging", "domain": "api.staging.example.com"}


def names(run: ProgramRun) -> set[tuple[str, str]]:
    return {
        (r.type, value)
        for r in run.resources
        if r.custom and r.type not in INSTANCE_SCOPED
        for key, value in r.inputs.items()
        if key in NAME_KEYS and isinstance(value, str)
    }


def test_a_gcp_review_stack_takes_no_name_staging_holds() -> None:
    staging, review = run_stack("staging", STAGING), run_stack("review-pr-7", STAGING)
    assert all(not r.name.startswith("groundwork-staging") for r in review.resources)
    shared = names(staging) & names(review)
    assert not shared, sorted(shared)[:10]


def test_a_gcp_review_stack_protects_nothing_so_destroy_removes_it() -> None:
    # `pulumi destroy` refuses on a protected resource and leaves retained ones behind,
    # whose fixed names (secrets, topics) the next review-pr-7 would collide with.
    review = run_stack("review-pr-7", STAGING)
    kept = [r.name for r in review.resources if r.protect or r.retain_on_delete]
    assert kept == []
    assert all(r.inputs.get("deletionProtection") in (None, False) for r in review.resources)
