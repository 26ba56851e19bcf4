#!/usr/bin/env bash
# The main job: show what a stack creates, its policy verdicts and its monthly cost,
# offline (no cloud account, no Pulumi CLI). Usage: bash scripts/plan.sh [STACK] [options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv
fi
uv sync --all-packages --frozen --quiet
exec uv run groundwork plan "${@:-staging}"
