"""Adapters to the outside world: Redis, the message brokers, the LLM provider."""
