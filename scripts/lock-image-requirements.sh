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
#
# Usage: scripts/lock-image-requirements.sh [--runtime-only | --print-runtime]
#   --print-runtime writes the runtime export (no header) to stdout and changes
#   nothing; the lock-file test compares it with the committed file.
set -euo pipefail
cd "$(dirname "$0")/.."

# Locked because a dependency declares them, but never imported in the image: typer
# needs rich (and its pygments/markdown-it) only for coloured help and pretty
# tracebacks, which the image turns off with TYPER_USE_RICH=0 (Dockerfile). ~12 MB.
# A package listed here must not be importable in the image: tests/image checks it.
IMAGE_EXCLUDED_PACKAGES=(rich pygments markdown-it-py mdurl)

export_runtime() {
    uv export --package groundwork-app --no-dev --frozen --no-emit-workspace \
        "${IMAGE_EXCLUDED_PACKAGES[@]/#/--no-emit-package=}" -q "$@"
}

case "${1:-}" in
    --print-runtime)
        export_runtime --no-header
        exit 0
        ;;
    "" | --runtime-only) ;;
    *)
        echo "unknown option: $1 (usage: $0 [--runtime-only | --print-runtime])" >&2
        exit 2
        ;;
esac

export_runtime -o services/app/requirements.lock

if [[ "${1:-}" != "--runtime-only" ]]; then
    uv pip compile services/app/requirements-build.in --generate-hashes --universal \
        --python-version 3.11 -q -o services/app/requirements-build.lock
fi
