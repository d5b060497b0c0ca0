#!/usr/bin/env bash
# nginx for bench/scale_reads.py (the static-server reference it compares reads with), from Debian's
# packages. Only the benchmark needs it, not the tests. Idempotent: does nothing when nginx is present.
set -euo pipefail

if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    echo "nginx already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-bench.sh: no apt-get here; install nginx with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends nginx
