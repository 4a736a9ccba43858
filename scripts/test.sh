#!/usr/bin/env bash
# Set up the environment (idempotent) and run the default CPU test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec "${MMTOK_VENV:-$root/.venv}/bin/python" -m pytest "$@"
