#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim-bookworm from Debian's own packages.
#
# CI and developer machines here cannot pull from public container registries, but
# they reach Debian's mirror. This script debootstraps a bookworm minbase root
# filesystem with python3 + python3-venv, trusts this machine's CA bundle (so pip and
# uv inside `docker build` work through an intercepting egress proxy) and imports it
# as a local image. The service Dockerfile receives it via `--build-arg BASE_IMAGE=`;
# the Dockerfile's own default stays the official image, so nothing here leaks into
# what real registries build.
#
# Usage: scripts/build-base-image.sh [IMAGE_NAME] [--force]
#   IMAGE_NAME defaults to groundwork-test-base; an existing image is reused unless
#   --force is given (the image takes ~2 minutes to build).
set -euo pipefail

image="groundwork-test-base"
force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -*) echo "unknown option: $arg (usage: $0 [IMAGE_NAME] [--force])" >&2; exit 2 ;;
        *) image="$arg" ;;
    esac
done

if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image already exists (pass --force to rebuild)"
    exit 0
fi

for tool in debootstrap docker tar; do
    command -v "$tool" >/dev/null || {
        echo "$tool is required: apt-get install -y debootstrap docker.io" >&2
        exit 1
    }
done
if [[ $EUID -ne 0 ]]; then
    echo "debootstrap needs root (it creates device nodes and chroots)" >&2
    exit 1
fi

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -r "$ca_bundle" ]] || { echo "CA bundle $ca_bundle not readable (set CA_BUNDLE=)" >&2; exit 1; }

workdir="$(mktemp -d /tmp/groundwork-base.XXXXXX)"
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror"

# The machine's bundle includes the egress proxy's CA next to the public roots.
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$rootfs/etc/ssl/certs/ca-certificates.crt"

# Match the official image's slimness: no package caches, no docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

# pip vendors certifi and uv ships webpki roots: point both at the system bundle.
# /dev, /proc and /sys stay empty, as in the official image: the runtime mounts them.
tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --message "groundwork stand-in for python:3.11-slim-bookworm (debootstrap minbase)" \
    - "$image"
echo "built $image"
