"""GCP components: Cloud Run, Cloud SQL, Memorystore, Pub/Sub, Secret Manager, edge, alerts.

Each module holds one ``pulumi.ComponentResource`` with a typed ``...Args`` dataclass
whose defaults are the secure (and cheap) choice; ``stacks/gcp.py`` composes them.
"""

from components.gcp.alarms import Alarms, AlarmsArgs, Thresholds
from components.gcp.cache import Cache, CacheArgs, CacheTier
from components.gcp.database import Availability, Database, DatabaseArgs
from components.gcp.edge import Edge, EdgeArgs
from components.gcp.messaging import JobQueue, JobQueueArgs, PushSubscription, PushSubscriptionArgs
from components.gcp.naming import account_id, gcp_labels
from components.gcp.network import Network, NetworkArgs, carve
from components.gcp.registry import ContainerRegistry, RegistryArgs
from components.gcp.secrets import (
    SecretRef,
    SecretReplication,
    SecretSource,
    SecretSpec,
    SecretStore,
    SecretStoreArgs,
)
from components.gcp.services import (
    ApiExposure,
    ContainerService,
    ContainerServiceArgs,
    ServiceSize,
    TrafficStrategy,
)

__all__ = [
    "Alarms",
    "AlarmsArgs",
    "ApiExposure",
    "Availability",
    "Cache",
    "CacheArgs",
    "CacheTier",
    "ContainerRegistry",
    "ContainerService",
    "ContainerServiceArgs",
    "Database",
    "DatabaseArgs",
    "Edge",
    "EdgeArgs",
    "JobQueue",
    "JobQueueArgs",
    "Network",
    "NetworkArgs",
    "PushSubscription",
    "PushSubscriptionArgs",
    "RegistryArgs",
    "SecretRef",
    "SecretReplication",
    "SecretSource",
    "SecretSpec",
    "SecretStore",
    "SecretStoreArgs",
    "ServiceSize",
    "Thresholds",
    "TrafficStrategy",
    "account_id",
    "carve",
    "gcp_labels",
]
