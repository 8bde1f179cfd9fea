#!/usr/bin/env bash
# Debian packages the tests need (the guest collector's BPF toolchain, the
# dashboard's browser). Safe to run again: apt skips what is installed.
set -euo pipefail
packages=(
  postgresql-client
  # The guest collector builds its BPF object with these (see guest_lsm/install-deps.sh).
  clang-14 libbpf-dev bpftool
  # The dashboard tests drive this browser headless.
  chromium
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
