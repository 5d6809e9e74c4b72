#!/usr/bin/env bash
# Install the Debian packages listed in the given files that are not installed yet.
# Runs apt-get update only when something is missing, and waits for a held dpkg lock.
set -euo pipefail
missing=()
for pkg in $(grep -hv '^\s*#' "$@" | tr -s ' \n' '\n' | sed '/^$/d'); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages (run as root or install them): ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get -o DPkg::Lock::Timeout=600 update -q
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
