"""Cache (components/gcp/cache.py): auth, TLS, private access, HA, replacement."""

from __future__ import annotations

import pulumi
import pytest

from components.gcp.cache import Cache, CacheArgs, CacheTier
from tests.gcp.helpers import run


def test_cache_defaults_basic_auth_tls_private_access() -> None:
    graph = run(lambda: Cache("cache", CacheArgs(network_id="vpc-id", reserved_ip_range="psa")))
    redis = graph.one("gcp:redis/instance:Instance").inputs
    assert redis["tier"] == "BASIC"
    assert redis["authEnabled"] is True
    assert redis["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert redis["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis["authorizedNetwork"] == "vpc-id"
    assert redis["reservedIpRange"] == "psa"
    assert redis["persistenceConfig"]["persistenceMode"] == "DISABLED"
    assert len(redis["name"]) <= 40


def test_cache_production_is_standard_ha_with_persistence() -> None:
    graph = run(
        lambda: Cache(
            "cache",
            CacheArgs(
                network_id="vpc",
                tier=CacheTier.STANDARD_HA,
                memory_size_gb=5,
                persistence=True,
                deletion_protection=True,
            ),
        )
    )
    redis = graph.one("gcp:redis/instance:Instance").inputs
    assert redis["tier"] == "STANDARD_HA"
    assert redis["memorySizeGb"] == 5
    assert redis["persistenceConfig"]["persistenceMode"] == "RDB"
    assert redis["deletionProtection"] is True


def test_cache_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="memory_size_gb"):
        CacheArgs(network_id="vpc", memory_size_gb=0)
    with pytest.raises(ValueError, match="PREMIUM"):
        CacheArgs(network_id="vpc", tier="PREMIUM")  # type: ignore[arg-type]


def test_cache_is_replaced_delete_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """tier, transit_encryption_mode, connect_mode and reserved_ip_range force a new
    instance (pulumi_gcp redis.Instance docstrings; Memorystore cannot change tier in
    place). The name is fixed, so the default create-first replacement would fail on
    "already exists": the instance must be deleted first (a disposable cache)."""
    import pulumi_gcp as gcp

    seen: list[pulumi.ResourceOptions] = []
    real = gcp.redis.Instance

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            seen.append(kwargs["opts"])  # type: ignore[arg-type]
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gcp.redis, "Instance", Recording)
    run(lambda: Cache("cache", CacheArgs(network_id="vpc-id")))
    assert [o.delete_before_replace for o in seen] == [True]
