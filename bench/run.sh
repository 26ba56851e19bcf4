#!/usr/bin/env bash
# `make bench`: every benchmark against its same-run baseline; tables on stdout, JSON in
# bench/results/, process logs in bench/results/logs/. Needs `bash scripts/bootstrap.sh`
# (PostgreSQL, Redis, RabbitMQ, uv) once. Only loopback servers are started.
#
#   bash bench/run.sh                  # all of them (2-3 h on 2 shared cores, mostly the pipeline)
#   BENCH_QUICK=1 bash bench/run.sh    # one short repetition each (~3 min), for a sanity check
#   BENCH_ONLY="api startup" bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

command -v uv >/dev/null || { echo "bench: uv not found; run: bash scripts/bootstrap.sh" >&2; exit 2; }
# Bytecode precompiled, as the image ships it: uv installs without, and where
# PYTHONDONTWRITEBYTECODE is set Python never caches it, so every process the benches
# start would compile all it imports from source (~60 % of the API's start-up).
uv sync --all-packages --quiet --compile-bytecode

if [ "${BENCH_QUICK:-}" = 1 ]; then
  declare -A quick_args=(
    [api]="--reps 1 --duration 3 --warmup 1"
    [pipeline]="--reps 1 --jobs 300 --jobs-slow 600 --run-seconds 3 --jobs-drain-max 1200 --groundwork-sweep 16,256 --celery-sweep 16,256 --celery-green-sweep 256"
    [startup]="--reps 2"
    [stack_eval]="--reps 1"
  )
fi

for bench in ${BENCH_ONLY:-api pipeline startup stack_eval}; do
  echo "== bench/${bench}.py"
  args=()
  if [ "${BENCH_QUICK:-}" = 1 ]; then
    # Separate result files, so a sanity check never overwrites the real numbers.
    read -r -a args <<<"${quick_args[$bench]} --name ${bench}-quick"
  fi
  uv run python -m "bench.${bench}" "${args[@]}"
  echo
done
echo "results: bench/results/*.json (see docs/performance.md for how to read them)"
