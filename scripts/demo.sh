#!/usr/bin/env bash
# Set up the environment (idempotent) and run the main job on built-in synthetic data (CPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec "${MMTOK_VENV:-$root/.venv}/bin/mmtok" demo "$@"
