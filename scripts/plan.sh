#!/usr/bin/env bash
# The main job: show what a stack creates, its policy verdicts and its monthly cost,
# offline (no cloud account, no Pulumi CLI). Usage: bash scripts/plan.sh [STACK] [options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --all-packages --frozen --quiet
exec uv run groundwork plan "${@:-staging}"
