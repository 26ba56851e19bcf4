"""Helpers: run GCP components and stacks under the Pulumi mock runtime (no network)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from groundwork.mockrun import GroundworkMocks, ProgramRun, RecordedResource, run_program

PROJECT = "acme-groundwork"
REGION = "europe-west1"
PROJECT_NUMBER = "111122223333"  # groundwork.mockrun.FAKE_GCP_PROJECT_NUMBER
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
# Two server CAs, as during Memorystore's CA rotation.
REDIS_CAS = (
    "-----BEGIN CERTIFICATE-----\nMIIBcurrent\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nMIIBnext\n-----END CERTIFICATE-----\n",
)
SQL_CA = "-----BEGIN CERTIFICATE-----\nMIIBsqlserverca\n-----END CERTIFICATE-----\n"
BASE_CONFIG = {"groundwork:cloud": "gcp", "gcp:project": PROJECT, "gcp:region": REGION}


class GcpMocks(GroundworkMocks):
    """The shared mocks plus the provider-computed fields these tests look at.

    ``live_api_traffic``: the ``trafficStatuses`` a live API service reports to the
    ``cloudrunv2.getService`` lookup; None means no such service yet (first deploy).
    """

    def __init__(
        self,
        *,
        live_api_traffic: list[dict[str, Any]] | None = None,
        lookup_error: str | None = None,
        live_secret_replication: dict[str, Any] | None = None,
        secret_lookup_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live_secret_replication = live_secret_replication
        """The ``replication`` a live secret reports to ``getSecret``; None: no secret."""
        self.secret_lookup_error = secret_lookup_error
        self.live_api_traffic = live_api_traffic
        self.lookup_error = lookup_error
        """A failure other than "not found" the ``getService`` lookup reports."""
        self.service_lookups: list[dict[str, Any]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "gcp:secretmanager/getSecret:getSecret":
            if self.secret_lookup_error is not None:
                return {}, [("secretId", self.secret_lookup_error)]
            if self.live_secret_replication is None:
                return {}, [("secretId", f"projects/p/secrets/{args.args['secretId']} not found")]
            return {
                "secretId": args.args["secretId"],
                "replications": [self.live_secret_replication],
            }, []
        if args.token == "gcp:cloudrunv2/getService:getService":
            self.service_lookups.append(dict(args.args))
            if self.lookup_error is not None:
                return {}, [("name", self.lookup_error)]
            if self.live_api_traffic is None:
                # How the provider reports a missing service: a data-source error the
                # program can catch, not an RPC failure.
                return {}, [("name", f"Service {args.args.get('name')} not found")]
            return {"name": args.args["name"], "trafficStatuses": self.live_api_traffic}, []
        return super().call(args)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state.setdefault("result", f"generated-{args.name}")
        if args.typ == "gcp:secretmanager/secretVersion:SecretVersion":
            state.setdefault("version", "1")
        if args.typ == "gcp:compute/globalAddress:GlobalAddress":
            state.setdefault("address", "203.0.113.10")
        if args.typ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
            state.setdefault("uptimeCheckId", f"{args.name}-check")
        if args.typ == "gcp:sql/databaseInstance:DatabaseInstance":
            state["serverCaCerts"] = [{"cert": SQL_CA}]
        if args.typ == "gcp:redis/instance:Instance":
            state["serverCaCerts"] = [{"cert": pem} for pem in REDIS_CAS]
        if args.typ == "gcp:secretmanager/secret:Secret":
            state.setdefault("secretId", args.inputs.get("secretId", args.name))
        return resource_id, state


def run(
    program: Callable[[], object],
    stack: str = "staging",
    *,
    mocks: GcpMocks | None = None,
    **config: str,
) -> ProgramRun:
    """Run ``program`` (usually a lambda building one component) as a stack."""

    def _program() -> None:
        program()

    return run_program(
        _program,
        stack=stack,
        config={**BASE_CONFIG, **config},
        mocks=mocks or GcpMocks(region=REGION, gcp_project=PROJECT),
    )


def run_stack(
    stack: str, overrides: Mapping[str, str] | None = None, *, mocks: GcpMocks | None = None
) -> ProgramRun:
    from stacks import program

    config = {**BASE_CONFIG, **{f"groundwork:{k}": v for k, v in (overrides or {}).items()}}
    return run_program(
        program,
        stack=stack,
        config=config,
        mocks=mocks or GcpMocks(region=REGION, gcp_project=PROJECT),
    )


def by_name(run_: ProgramRun, type_token: str) -> dict[str, RecordedResource]:
    return {r.name: r for r in run_.of_type(type_token)}


def env_of(container: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split a recorded Cloud Run container's envs into plain values and secret refs."""
    plain: dict[str, Any] = {}
    secret: dict[str, dict[str, Any]] = {}
    for env in container.get("envs", []):
        if env.get("valueSource"):
            secret[env["name"]] = env["valueSource"]["secretKeyRef"]
        else:
            plain[env["name"]] = env.get("value")
    return plain, secret


def containers(run_: ProgramRun) -> dict[str, dict[str, Any]]:
    """Process name (api, worker, relay, migrate) -> its recorded container."""
    found: dict[str, dict[str, Any]] = {}
    for service in run_.of_type("gcp:cloudrunv2/service:Service"):
        # The app container first; the Managed Prometheus sidecar follows it.
        container = service.inputs["template"]["containers"][0]
        found[container["name"]] = container
    for job in run_.of_type("gcp:cloudrunv2/job:Job"):
        (container,) = job.inputs["template"]["template"]["containers"]
        found[container["name"]] = container
    return found
