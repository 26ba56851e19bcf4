"""CMEK (``groundwork:cmek``): each data store references its Cloud KMS key, each key is
usable by the store's service agent before the store is created, keys survive destroy,
and a live stack never switches encryption in place."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.gcp.kms import ENCRYPTER_DECRYPTER, EncryptionKeysArgs
from groundwork.mockrun import ProgramRun, RecordedResource
from stacks.config import ConfigError
from tests.gcp.helpers import PROJECT, PROJECT_NUMBER, REGION, GcpMocks, run_stack

KEY = "gcp:kms/cryptoKey:CryptoKey"
RING = "gcp:kms/keyRing:KeyRing"
GRANT = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
IDENTITY = "gcp:projects/serviceIdentity:ServiceIdentity"

# The agents that encrypt for each store (https://cloud.google.com/iam/docs/service-agents).
AGENT = {
    "sql": f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
    "redis": f"serviceAccount:service-{PROJECT_NUMBER}@cloud-redis.iam.gserviceaccount.com",
    "pubsub": f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com",
    "registry": f"serviceAccount:service-{PROJECT_NUMBER}"
    "@gcp-sa-artifactregistry.iam.gserviceaccount.com",
    "secrets": f"serviceAccount:service-{PROJECT_NUMBER}"
    "@gcp-sa-secretmanager.iam.gserviceaccount.com",
}


@pytest.fixture(scope="module")
def cmek_production(production: ProgramRun) -> ProgramRun:
    return production


def _keys(run_: ProgramRun) -> dict[str, RecordedResource]:
    """Key name (location-qualified for secrets) -> key."""
    rings = {r.state["id"]: r for r in run_.of_type(RING)}
    found = {}
    for key in run_.of_type(KEY):
        ring = rings[key.inputs["keyRing"]]
        name = key.inputs["name"]
        found[f"{name}@{ring.inputs['location']}" if name == "secrets" else name] = key
    return found


def _grant_of(run_: ProgramRun, key: RecordedResource) -> RecordedResource:
    (grant,) = [g for g in run_.of_type(GRANT) if g.inputs["cryptoKeyId"] == key.state["id"]]
    return grant


def _stores_without_secret_key(run_: ProgramRun) -> dict[str, list[tuple[RecordedResource, Any]]]:
    return {
        "sql": [
            (r, r.inputs.get("encryptionKeyName"))
            for r in run_.of_type("gcp:sql/databaseInstance:DatabaseInstance")
        ],
        "redis": [
            (r, r.inputs.get("customerManagedKey"))
            for r in run_.of_type("gcp:redis/instance:Instance")
        ],
        "pubsub": [(r, r.inputs.get("kmsKeyName")) for r in run_.of_type("gcp:pubsub/topic:Topic")],
        "registry": [
            (r, r.inputs.get("kmsKeyName"))
            for r in run_.of_type("gcp:artifactregistry/repository:Repository")
        ],
    }


def _stores(run_: ProgramRun) -> dict[str, list[tuple[RecordedResource, Any]]]:
    """Key name -> (store, the key reference it carries)."""
    secrets = run_.of_type("gcp:secretmanager/secret:Secret")
    return {
        **_stores_without_secret_key(run_),
        "secrets@global": [
            (s, s.inputs["replication"]["auto"]["customerManagedEncryption"]["kmsKeyName"])
            for s in secrets
        ],
    }


def test_production_encrypts_every_data_store_with_its_own_key(production: ProgramRun) -> None:
    keys = _keys(production)
    assert sorted(keys) == ["pubsub", "redis", "registry", "secrets@global", "sql"]
    for name, stores in _stores(production).items():
        assert stores, name
        for store, reference in stores:
            assert reference == keys[name].state["id"], (name, store.name)


def test_keys_sit_where_each_service_requires_them(production: ProgramRun) -> None:
    """Cloud SQL, Memorystore and Artifact Registry need a key in their own region; Secret
    Manager with automatic replication needs a ``global`` key (CustomerManagedEncryption:
    "For secrets using the Automatic replication policy type, Cloud KMS CryptoKeys must
    reside in global")."""
    rings = {r.state["id"]: r.inputs["location"] for r in production.of_type(RING)}
    where = {k: rings[key.inputs["keyRing"]] for k, key in _keys(production).items()}
    assert where == {
        "sql": REGION,
        "redis": REGION,
        "pubsub": REGION,
        "registry": REGION,
        "secrets@global": "global",
    }


def test_user_managed_secrets_get_a_key_in_each_replica_location() -> None:
    graph = run_stack("production", {"secretReplication": "user-managed"})
    keys = _keys(graph)
    assert "secrets@global" not in keys
    for secret in graph.of_type("gcp:secretmanager/secret:Secret"):
        (replica,) = secret.inputs["replication"]["userManaged"]["replicas"]
        assert replica["location"] == REGION
        assert (
            replica["customerManagedEncryption"]["kmsKeyName"]
            == keys[f"secrets@{REGION}"].state["id"]
        )


def test_each_key_is_granted_to_the_agent_of_its_store(production: ProgramRun) -> None:
    for name, key in _keys(production).items():
        grant = _grant_of(production, key)
        assert (
            grant.inputs["role"]
            == ENCRYPTER_DECRYPTER
            == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
        )
        assert grant.inputs["member"] == AGENT[name.split("@")[0]], name


def test_agents_that_need_generating_exist_before_their_grant(production: ProgramRun) -> None:
    """Cloud SQL's and Secret Manager's CMEK guides create the agent first (`gcloud beta
    services identity create`): binding a principal that does not exist fails."""
    identities = {
        r.inputs["service"]: r.urn
        for r in production.of_type(IDENTITY)
        if "gcp:EncryptionKeys$" in r.urn
    }
    expected = {
        "sql": "sqladmin.googleapis.com",
        "pubsub": "pubsub.googleapis.com",
        "registry": "artifactregistry.googleapis.com",
        "secrets": "secretmanager.googleapis.com",
    }
    keys = _keys(production)
    for name, service in expected.items():
        key = keys[name if name != "secrets" else "secrets@global"]
        assert identities[service] in _grant_of(production, key).depends_on, name


def test_every_store_is_created_after_its_grant(production: ProgramRun) -> None:
    """The first `up` on an empty project: Cloud SQL, Memorystore and Artifact Registry
    check the key when the create request arrives and fail it when the agent cannot use
    it (Cloud SQL CMEK guide: grant the key *before* creating the instance); Pub/Sub
    refuses publishes and Secret Manager refuses versions it cannot encrypt."""
    keys = _keys(production)
    for name, stores in _stores(production).items():
        grant = _grant_of(production, keys[name])
        for store, _ in stores:
            assert grant.urn in store.depends_on, (name, store.name)


def test_keys_survive_destroy_and_rings_never_reuse_a_name(production: ProgramRun) -> None:
    """A destroyed key version makes its data unreadable, and key rings cannot be deleted
    (the provider's destroy only forgets them): keys are protected in production, and a
    ring's name carries a random suffix so a re-created stack never hits "already
    exists" on the ring it left behind."""
    for key in production.of_type(KEY):
        assert key.protect and key.retain_on_delete, key.name
        assert key.inputs["rotationPeriod"] == "7776000s"
        assert key.inputs["destroyScheduledDuration"] == "2592000s"
    for ring in production.of_type(RING):
        assert ring.protect and ring.retain_on_delete
        (suffix,) = [
            r for r in production.of_type("random:index/randomId:RandomId") if "keyring" in r.name
        ]
        assert ring.inputs["name"].endswith("-" + suffix.state["hex"]), ring.inputs["name"]
        assert len(ring.inputs["name"]) <= 63


def test_staging_defaults_to_google_managed_keys(staging: ProgramRun) -> None:
    assert not staging.of_type(KEY) and not staging.of_type(RING)
    for name, stores in _stores_without_secret_key(staging).items():
        assert all(reference is None for _, reference in stores), name
    for secret in staging.of_type("gcp:secretmanager/secret:Secret"):
        assert not secret.inputs["replication"]["auto"].get("customerManagedEncryption")


def test_encryption_keys_args_reject_wrong_locations() -> None:
    with pytest.raises(ValueError, match="global"):
        EncryptionKeysArgs(PROJECT, "1", REGION, secret_locations=["global", REGION])
    with pytest.raises(ValueError, match="86400s"):
        EncryptionKeysArgs(PROJECT, "1", REGION, rotation_period="3600s")


# --- a live stack never switches encryption ----------------------------------------


class LiveRepositoryMocks(GcpMocks):
    """``artifactregistry.getRepository`` answers as for the live repository (or its
    absence: the data source's "not found", or another API error)."""

    def __init__(self, kms_key: str | None, error: str | None = None) -> None:
        super().__init__(region=REGION, gcp_project=PROJECT)
        self.kms_key = kms_key
        self.error = error

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "gcp:artifactregistry/getRepository:getRepository":
            repo = f"projects/{PROJECT}/locations/{REGION}/repositories/{args.args['repositoryId']}"
            if self.error is not None:
                return {}, [("repositoryId", self.error)]
            if self.kms_key is None:
                return {}, [("repositoryId", f"{repo} not found")]
            return {"name": args.args["repositoryId"], "kmsKeyName": self.kms_key}, []
        return super().call(args)


LIVE_KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/r/cryptoKeys/registry"


@pytest.mark.parametrize(
    ("stack", "live_key", "setting"),
    [("production", "", "true"), ("staging", LIVE_KEY, "false"), ("staging", "", "true")],
)
def test_switching_cmek_on_a_live_stack_is_refused_naming_the_key(
    stack: str, live_key: str, setting: str
) -> None:
    """CMEK is fixed at create on Cloud SQL (``encryption_key_name``), Memorystore ("You
    can't enable CMEK on existing Memorystore for Redis instances",
    https://cloud.google.com/memorystore/docs/redis/about-cmek) and Artifact Registry
    ("This value may not be changed after the Repository has been created", provider
    docstring): the toggle would replace the stores."""
    with pytest.raises(ConfigError, match=r"groundwork:cmek = .*cannot switch encryption"):
        run_stack(stack, {"cmek": setting}, mocks=LiveRepositoryMocks(live_key))


@pytest.mark.parametrize(
    ("stack", "live_key"), [("production", LIVE_KEY), ("staging", ""), ("production", None)]
)
def test_unchanged_cmek_and_first_deploy_pass(stack: str, live_key: str | None) -> None:
    graph = run_stack(stack, mocks=LiveRepositoryMocks(live_key))
    assert bool(graph.of_type(KEY)) == (stack == "production")


def test_a_failed_repository_lookup_stops_the_deploy() -> None:
    mocks = LiveRepositoryMocks(
        None, error="googleapi: Error 403: Permission 'artifactregistry.repositories.get' denied"
    )
    with pytest.raises(ConfigError, match=r"needs artifactregistry\.repositories\.get"):
        run_stack("production", mocks=mocks)


def test_stores_wait_for_the_grants_to_propagate(production: ProgramRun) -> None:
    """IAM: "In most cases, policy changes take effect within 2 minutes ... it can take
    7 minutes or more" (https://cloud.google.com/iam/docs/access-change-propagation). A
    grant that exists is not yet a grant Cloud SQL sees: the stores wait behind one
    dynamic resource that is created 120 s after the last grant."""
    (wait,) = production.of_type("pulumi-python:dynamic:Resource")
    assert "kms-grants-propagated" in wait.name
    assert wait.inputs["seconds"] == 120
    assert {g.urn for g in production.of_type(GRANT)} <= set(wait.depends_on)
    for name, stores in _stores(production).items():
        for store, _ in stores:
            assert wait.urn in store.depends_on, (name, store.name)
