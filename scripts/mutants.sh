#!/usr/bin/env bash
# Each breakage of issue #15 applied to a temporary copy, its guarding tests run: killed or survived.
# Arguments go to scripts/mutants.py (names to filter, --list). Shares the CPU lock with other test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock -s /tmp/edge-sr-quiet.lock .venv/bin/python scripts/mutants.py "$@"
