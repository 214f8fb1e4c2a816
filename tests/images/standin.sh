#!/bin/sh
# Make localhost/python:3.11-slim, a stand-in for Docker Hub's python:3.11-slim, which
# cannot be pulled where the tests run: Debian bookworm (minbase) with its python3,
# venv, pip and CA certificates, imported into podman's storage. Kept between runs:
# nothing is done if the image exists.
#
#   standin.sh [MIRROR]
set -eu

image=localhost/python:3.11-slim
mirror=${1:-http://deb.debian.org/debian}

if podman image exists "$image"; then
    echo "standin.sh: $image exists; kept"
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$mirror"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase bookworm $mirror" \
    - "$image"
