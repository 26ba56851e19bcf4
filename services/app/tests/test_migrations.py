from __future__ import annotations

from groundwork.devenv.servers import DevServers


def test_migrations_create_schema_and_roll_back(service_env: dict[str, str], servers: DevServers):
    from groundwork_app import migrate

    def query(sql: str) -> str:
        return servers.postgres.psql(sql, database="groundwork").strip()

    tables = query(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'public'"
    )
    assert tables == "alembic_version,jobs,outbox,processed_messages"
    index = query("SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_unsent_idx'")
    assert "WHERE (sent_at IS NULL)" in index
    # 0002: the lease columns and the reconciler's partial index.
    columns = query(
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_name = 'jobs' AND column_name LIKE 'lease%'"
    )
    assert columns == "lease_expires_at,lease_owner"
    unfinished = query("SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_unfinished_idx'")
    assert "'queued'" in unfinished and "'processing'" in unfinished

    migrate.downgrade("base")
    after = query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> "
        "'alembic_version'"
    )
    assert after == "0"
    migrate.upgrade()
    version = query("SELECT version_num FROM alembic_version")
    assert version == "0002"
