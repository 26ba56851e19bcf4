"""The local development environment: ``groundwork dev`` (``command``) and the loopback
PostgreSQL / Redis / RabbitMQ / PgBouncer servers it and the test suites start
(``servers``). Not used by ``groundwork plan`` or ``groundwork ops``."""
