"""The transactional outbox relay: committed outbox rows to the broker, and the
reconciler that ends jobs stuck past their deadline (``groundwork-app relay``)."""
