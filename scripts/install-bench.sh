#!/usr/bin/env bash
# nginx for bench/scale_reads.py (the static-server reference it compares reads with), from Debian's
# packages. Only the benchmark needs it, not the tests. Idempotent: does nothing when nginx is present.
set -euo pipefail

if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    echo "nginx already installed"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" install-bench.sh nginx
