"""PostgreSQL: schema, engine and the queries the API, relay and worker run."""
