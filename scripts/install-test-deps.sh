#!/usr/bin/env bash
# Installs the Debian packages the test suite drives (registry clients, image builders, PostgreSQL,
# the reference registry for benchmarks). Needs root; without it, only checks and reports.
set -euo pipefail
# rpm: rpmbuild and rpmdb write the real RPM databases tests/unit/scanning/test_rpm.py reads.
# openjdk-17-jdk-headless (jar, javac) builds the Java archives and libcommons-io-java is a jar Maven built,
# for tests/unit/scanning/test_java_detector.py (the machine may ship both: then nothing is installed).
packages=(skopeo podman buildah umoci mmdebstrap postgresql docker-registry uidmap fuse-overlayfs tar gzip zstd golang-go chromium rpm openjdk-17-jdk-headless libcommons-io-java curl)
# npm fetches axe-core for the accessibility checks; Node.js images ship it, Debian packages it apart.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  # Not root: through sudo when it needs no password, else say what is missing.
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n "$0" "$@"
  fi
  echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 1
fi
# Installing docker-registry or postgresql would start system services on public ports: block that.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" -eq 1 ] && rm -f "$policy"
exit 0
