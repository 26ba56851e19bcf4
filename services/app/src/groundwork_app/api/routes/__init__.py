"""Routers: jobs, webhooks, health and metrics."""
