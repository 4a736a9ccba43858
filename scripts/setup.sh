#!/usr/bin/env bash
# Create (or reuse) the project virtual environment in .venv and install mmtok into it.
# Idempotent: a second run finds the environment up to date and installs nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${MMTOK_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.mmtok-install-stamp"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] environment up to date ($venv)"
  exit 0
fi
echo "[setup] installing torch / torchvision / torchaudio (pinned) and mmtok[dev] into $venv"
"$venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
"$venv/bin/pip" install -q -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done"
