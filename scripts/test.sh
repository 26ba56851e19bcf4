#!/usr/bin/env bash
# The whole test suite: lint, format, types, Dockerfile/workflow/rules linters, and
# pytest with coverage (real PostgreSQL/Redis/RabbitMQ/PgBouncer/Docker). The README's
# test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/ensure-uv.sh

# Bytecode precompiled, as in the image: many tests start service processes, and where
# PYTHONDONTWRITEBYTECODE is set each of them would otherwise compile its imports anew.
uv sync --all-packages --frozen --quiet --compile-bytecode
echo "== ruff"
uv run ruff check .
uv run ruff format --check .
echo "== mypy"; uv run mypy
echo "== hadolint"; uv run hadolint services/app/Dockerfile
echo "== actionlint"; uv run actionlint
echo "== zizmor"; uv run zizmor --quiet .github/workflows
echo "== promtool"; promtool check rules deploy/local/prometheus/*.rules.yml
echo "== pytest"
uv run pytest --cov --cov-report=term --cov-fail-under=80 "$@"
# The API suite once more with every database connection through PgBouncer in
# transaction mode (as RDS Proxy pools in production): proves nothing relies on
# session state or server-side prepared statements.
echo "== pytest (API through PgBouncer, transaction mode)"
GROUNDWORK_TEST_DB_VIA_PGBOUNCER=1 uv run pytest services/app/tests/api -q -m "not slow" -p no:cacheprovider
# And once with the prepared-statement cache on, as the stacks configure direct
# connections (Cloud SQL, RDS without RDS Proxy).
echo "== pytest (API and worker core with DB_STATEMENT_CACHE_SIZE=100, direct connections)"
DB_STATEMENT_CACHE_SIZE=100 uv run pytest services/app/tests/api services/app/tests/worker/test_handler.py \
  services/app/tests/worker/test_end_to_end.py -q -m "not slow" -k "not pgbouncer" -p no:cacheprovider
