#!/bin/bash
# Build deploy/docker/Dockerfile with podman, run the image the way deploy/compose does
# (read-only root, no capabilities, a named volume for the state) and prove its HEALTHCHECK:
# healthy while botwatch serves, unhealthy when nothing listens. No registry is needed:
#
#   deploy/docker/build-test.sh                  # base: Debian 12 made here with debootstrap
#   BASE=python:3.11-slim-bookworm deploy/docker/build-test.sh   # a base podman can pull
#
# Needs root, podman and runc (and debootstrap without BASE). Python
# packages come from a wheelhouse built on this host with this host's pip settings, so the
# container build itself runs without network. KEEP=1 keeps the work directory (podman storage
# holding localhost/botwatch-exporter:test) and prints how to use it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=localhost/botwatch-exporter:test
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# conmon (podman's container monitor) daemonizes; where PID 1 does not reap orphans it would
# leave zombies. Run the whole script under a child subreaper that reaps them.
if [ -z "${BUILD_TEST_REAPER:-}" ]; then
  export BUILD_TEST_REAPER=1
  exec python3 -c '
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
code = subprocess.call(sys.argv[1:])
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
sys.exit(code)' "$0" "$@"
fi

say() { printf '[%3ds] %s\n' "$SECONDS" "$*"; }
for tool in podman runc python3; do
  command -v "$tool" >/dev/null || { echo "build-test.sh: needs $tool (apt-get install podman runc)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-test.sh: run it as root" >&2; exit 1; }

# A short path: conmon's socket paths below the run root must fit in 108 bytes.
WORK=$(mktemp -d /tmp/bwbuild.XXXXXX)
cleanup() {
  podman rm --force --time 0 botwatch-build-test botwatch-build-test-down >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $WORK; use it with:"
    echo "  export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf"
  else
    podman volume rm --force botwatch-build-test-state >/dev/null 2>&1 || true
    podman system reset --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# podman's storage and settings in the work directory (this host's defaults need root's
# cgroup manager and raise rlimits, which fails inside some sandboxes).
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
[network]
network_config_dir = "$WORK/net"
EOF
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
  "$WORK" "$WORK" >"$WORK/storage.conf"
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

if [ -z "${BASE:-}" ]; then
  # The base's file tree is cached: debootstrap takes most of the time of a first run.
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/botwatch/debian-$SUITE-python3.tar
  if [ ! -s "$CACHE" ]; then
    command -v debootstrap >/dev/null || { echo "build-test.sh: needs debootstrap, or BASE=IMAGE" >&2; exit 1; }
    say "debootstrap: Debian $SUITE (minbase) with python3 and python3-venv"
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$WORK/rootfs" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/* \
      "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/usr/share/locale/*
    mkdir -p "$(dirname "$CACHE")"
    tar -C "$WORK/rootfs" -cf "$CACHE.new" . && mv "$CACHE.new" "$CACHE"
    rm -rf "$WORK/rootfs"
  else
    say "base: $CACHE (delete it to debootstrap afresh)"
  fi
  BASE=localhost/botwatch-base:$SUITE
  podman import --quiet "$CACHE" "$BASE" >/dev/null
  PULL=never
else
  PULL=missing
fi

say "wheelhouse: botwatch and its dependencies, with this host's pip"
PIP=$REPO/.venv/bin/pip # make's venv, if there is one
if [ ! -x "$PIP" ]; then
  python3 -m venv "$WORK/pip"
  PIP=$WORK/pip/bin/pip
fi
"$PIP" wheel --quiet --wheel-dir "$WORK/wheels" "$REPO" 'setuptools>=77' wheel \
  >"$WORK/wheel.log" 2>&1 || { tail -20 "$WORK/wheel.log"; exit 1; }

say "podman build (base $BASE)"
podman build --quiet --format=docker --pull="$PULL" --network=none \
  --volume "$WORK/wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_NO_INDEX=1 \
  --build-arg BASE="$BASE" --file "$REPO/deploy/docker/Dockerfile" --tag "$IMAGE" "$REPO" >/dev/null
podman image inspect --format '{{.Size}}' "$IMAGE" |
  awk '{ printf "image size: %.0f MB\n", $1 / 1e6 }'

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/-/healthy
say "run: read-only root, no capabilities, no new privileges, state in a named volume"
# The timers of podman's healthchecks are systemd's: run the check by hand instead.
podman run --detach --name botwatch-build-test --network=host --read-only \
  --cap-drop=ALL --security-opt=no-new-privileges --health-interval=disable \
  --volume botwatch-build-test-state:/var/lib/botwatch \
  --env BOTWATCH_HEALTHCHECK_URL="$URL" \
  "$IMAGE" run --web.listen-address="127.0.0.1:$PORT" >/dev/null 2>"$WORK/run.log" ||
  { cat "$WORK/run.log"; exit 1; }

healthy=""
for _ in $(seq 1 100); do # up to ~20 s
  if podman healthcheck run botwatch-build-test >/dev/null 2>&1; then healthy=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' botwatch-build-test)" = true ] || break
  sleep 0.2
done
if [ -z "$healthy" ]; then
  podman logs botwatch-build-test 2>&1 | tail -20
  echo "FAIL: the HEALTHCHECK never passed" >&2
  exit 1
fi
say "healthcheck: healthy"
podman exec botwatch-build-test python -c \
  'import urllib.request as r; body = r.urlopen("'"http://127.0.0.1:$PORT/metrics"'").read().decode(); assert "botwatch_collector_up" in body; print("metrics:", len(body.splitlines()), "lines")'
if podman logs botwatch-build-test 2>&1 | grep -q 'checkpoint.*failed\|Read-only file system'; then
  podman logs botwatch-build-test 2>&1 | grep 'checkpoint\|Read-only' | head -5
  echo "FAIL: botwatch cannot write its state directory" >&2
  exit 1
fi
[ "$(podman exec botwatch-build-test id -u)" = 9877 ] || { echo "FAIL: not uid 9877" >&2; exit 1; }

# The same check with nothing listening: botwatch gone, the image running `sleep` instead.
podman rm --force --time 0 botwatch-build-test >/dev/null 2>&1
podman run --detach --name botwatch-build-test-down --network=host --health-interval=disable \
  --env BOTWATCH_HEALTHCHECK_URL="$URL" --entrypoint sleep "$IMAGE" infinity >/dev/null 2>"$WORK/run.log" ||
  { cat "$WORK/run.log"; exit 1; }
if podman healthcheck run botwatch-build-test-down >/dev/null 2>&1; then
  echo "FAIL: the HEALTHCHECK passed with nothing listening" >&2
  exit 1
fi
say "healthcheck with nothing listening: unhealthy"
say "PASS"
