#!/usr/bin/env bash
# Debian packages through apt-get, as root or through sudo: `apt-install.sh CALLER PACKAGE...`.
# Shared by the install-*.sh scripts, which decide first whether anything is missing.
set -euo pipefail

caller=$1
shift
if ! command -v apt-get >/dev/null; then
    echo "$caller: no apt-get here; install $* with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$@"
