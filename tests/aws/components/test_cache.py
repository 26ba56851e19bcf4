"""Cache (components/aws/cache.py): secure defaults and high availability."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import Cache, CacheArgs
from tests.aws.components.common import data_store_args


def _cache(**kwargs: Any) -> CacheArgs:
    return data_store_args(CacheArgs, **kwargs)


def test_cache_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Cache("cache", _cache()))
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert group["engine"] == "valkey" and group["transitEncryptionEnabled"] is True
    assert group["transitEncryptionMode"] == "required"
    assert group["atRestEncryptionEnabled"] is True and group["kmsKeyId"]
    password = run.one("random:index/randomPassword:RandomPassword")
    assert group["authToken"] == password.state["result"]
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    assert version["secretString"] == password.state["result"]
    assert run.one("aws:secretsmanager/secret:Secret").inputs["kmsKeyId"].endswith("key/s")
    assert group["automaticFailoverEnabled"] is False and group["numCacheClusters"] == 1


def test_cache_high_availability(helpers: Any) -> None:
    caches: list[Cache] = []
    run = helpers.run_component(
        lambda: caches.append(
            Cache("cache", _cache(nodes=2, automatic_failover=True, snapshot_retention_days=7))
        )
    )
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert group["multiAzEnabled"] is True and group["snapshotRetentionLimit"] == 7
    assert caches[0].member_cluster_ids == ["cache-001", "cache-002"]
    with pytest.raises(ValueError, match="nodes >= 2"):
        _cache(automatic_failover=True)
