#!/usr/bin/env bash
# Headless Chromium and its driver for the web interface's browser tests (tests/service/web), from
# Debian's packages: no browser download at test time. Idempotent: does nothing when both are present.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-browser.sh: no apt-get here; install chromium and chromedriver with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
