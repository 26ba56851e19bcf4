#!/usr/bin/env bash
# One-time machine set-up for groundwork on Debian/Ubuntu: uv and the Debian packages
# the tests start for real (PostgreSQL, Redis, RabbitMQ, PgBouncer, promtool, Docker,
# debootstrap). Idempotent: installs only what is missing. Needs root or sudo.
set -euo pipefail

packages=(postgresql redis-server rabbitmq-server pgbouncer prometheus docker.io docker-compose debootstrap make)
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap: run as root or install sudo" >&2; exit 2; }
  sudo_cmd=(sudo)
fi

missing=()
for pkg in "${packages[@]}"; do
  # A machine with Docker from Docker's own packages (GitHub's ubuntu runners: docker-ce,
  # containerd.io, the compose plugin) must not get Debian's docker.io: the two conflict.
  # A docker client alone (a static binary in /usr/local/bin, no engine) is not Docker:
  # the engine is what the image tests need, so only a dockerd or an answering engine counts.
  case "$pkg" in
    docker.io) { command -v dockerd >/dev/null 2>&1 || docker info >/dev/null 2>&1; } && continue ;;
    docker-compose) { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } && continue ;;
  esac
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their own servers where an init system exists; the test
# harness runs private instances on free ports instead, so the system ones are not needed.

source "$(dirname "$0")/ensure-uv.sh"

# The image tests need a Docker engine; start one when none answers.
if ! docker info >/dev/null 2>&1; then
  if command -v dockerd >/dev/null 2>&1; then
    echo "bootstrap: starting dockerd"
    ("${sudo_cmd[@]}" nohup dockerd >/tmp/groundwork-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
fi
