#!/usr/bin/env bash
# Headless Chromium and its driver for the web interface's browser tests (tests/service/web), from
# Debian's packages: no browser download at test time. Idempotent: does nothing when both are present.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" install-browser.sh chromium chromium-driver
/usr/bin/chromium --version
