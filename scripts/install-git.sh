#!/usr/bin/env bash
# git and git-lfs from Debian's packages, for the git-over-HTTP tests (tests/service/test_git*.py):
# clone, fetch and push against a real server. Idempotent: does nothing when both are present.
set -euo pipefail

if command -v git >/dev/null && command -v git-lfs >/dev/null; then
    echo "git and git-lfs already installed: $(git --version), $(git-lfs --version)"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" install-git.sh git git-lfs
git-lfs --version
