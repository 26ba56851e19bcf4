"""The worker: queue consumers, Pub/Sub push receiver, job handler and DLQ tooling."""
