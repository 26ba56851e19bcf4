from __future__ import annotations

from groundwork.devenv.servers import DevServers


def test_migrations_create_schema_and_roll_back(service_env: dict[str, str], servers: DevServers):
    from groundwork_app import migrate

    tables = servers.postgres.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'public'",
        database="groundwork",
    ).strip()
    assert tables == "alembic_version,jobs,outbox,processed_messages"
    index = servers.postgres.psql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_unsent_idx'",
        database="groundwork",
    )
    assert "WHERE (sent_at IS NULL)" in index
    # 0002: the lease columns and the reconciler's partial index.
    columns = servers.postgres.psql(
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_name = 'jobs' AND column_name LIKE 'lease%'",
        database="groundwork",
    ).strip()
    assert columns == "lease_expires_at,lease_owner"
    unfinished = servers.postgres.psql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_unfinished_idx'",
        database="groundwork",
    )
    assert "'queued'" in unfinished and "'processing'" in unfinished

    migrate.downgrade("base")
    after = servers.postgres.psql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> "
        "'alembic_version'",
        database="groundwork",
    ).strip()
    assert after == "0"
    migrate.upgrade()
    version = servers.postgres.psql(
        "SELECT version_num FROM alembic_version", database="groundwork"
    ).strip()
    assert version == "0002"
