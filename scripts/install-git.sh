#!/usr/bin/env bash
# git and git-lfs from Debian's packages, for the git-over-HTTP tests (tests/service/test_git*.py):
# clone, fetch and push against a real server. Idempotent: does nothing when both are present.
set -euo pipefail

if command -v git >/dev/null && command -v git-lfs >/dev/null; then
    echo "git and git-lfs already installed: $(git --version), $(git-lfs --version)"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-git.sh: no apt-get here; install git and git-lfs with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends git git-lfs
git-lfs --version
