#!/usr/bin/env bash
# Regenerate the hashed requirement files the service image installs from.
#
# services/app/requirements.lock       runtime deps, exported from the root uv.lock
#                                      (offline; tests/image/test_lockfiles.py fails
#                                      when it is stale)
# services/app/requirements-build.lock uv + hatchling for the build stage, compiled
#                                      from services/app/requirements-build.in
#                                      (needs the package index)
#
# The image's build context is services/app alone, so it cannot see the workspace
# lock; these exports carry the exact locked versions and hashes into it.
set -euo pipefail
cd "$(dirname "$0")/.."

uv export --package groundwork-app --no-dev --frozen --no-emit-workspace \
    -q -o services/app/requirements.lock

if [[ "${1:-}" != "--runtime-only" ]]; then
    uv pip compile services/app/requirements-build.in --generate-hashes --universal \
        --python-version 3.11 -q -o services/app/requirements-build.lock
fi
