#!/usr/bin/env bash
# The one test command (README "Run the tests"; .ci/run calls exactly this).
# Installs what the tests need into the current Python, then runs the whole suite.
# Servers the tests need (an S3 server) are started by the tests themselves on 127.0.0.1;
# PostgreSQL and Redis are expected at 127.0.0.1:5432 / :6379 (DELTAHUB_TEST_PG_URL, DELTAHUB_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first, and pinned: the tests that load models through transformers/safetensors.torch need it,
# and this exact version is the CPU build the machines carry locally (no CUDA download).
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
# Debian's headless Chromium and its driver, for the web interface's browser tests (skipped when present).
bash scripts/install-browser.sh
# Debian's git and git-lfs, for the git clone / fetch / push tests (skipped when present).
bash scripts/install-git.sh
# The real-model tests need the dev corpus; build it (PyPI downloads, cached) when shared/ is beside us.
if [ -z "${DELTAHUB_CORPUS:-}" ] && [ -f ../shared/corpus/build_dev_corpus.py ]; then
    export DELTAHUB_CORPUS="${XDG_CACHE_HOME:-$HOME/.cache}/deltahub-dev-corpus"
    python3 ../shared/corpus/build_dev_corpus.py "$DELTAHUB_CORPUS"
fi
python3 -m ruff check .
# The layers and what may import what (pyproject.toml [tool.importlinter], docs/architecture.md).
lint-imports --no-cache
# Types: strict over storage/, workers/ and service/ (pyproject.toml [tool.mypy]).
python3 -m mypy
python3 -m pytest -q "$@"
