"""The worker half: outbox relay, queue consumer, Pub/Sub push receiver and DLQ tooling."""
