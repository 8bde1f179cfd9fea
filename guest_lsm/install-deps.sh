#!/bin/sh
# Install the Debian packages the BPF collector needs to build its object at
# first start: clang-14 compiles it, bpftool dumps vmlinux.h from the running
# kernel's BTF, libbpf-dev brings the BPF headers (libbpf1 is the runtime).
set -eu
export DEBIAN_FRONTEND=noninteractive
if command -v clang-14 >/dev/null && command -v bpftool >/dev/null \
    && [ -f /usr/include/bpf/bpf_helpers.h ]; then
    exit 0
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends clang-14 libbpf-dev bpftool
