#!/usr/bin/env bash
# Create .venv at the repository root and install everything: torch (pip, from this machine's disk
# where available), then every compat distribution in editable mode, then the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
packages=(-e core -e cli)
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
done
"${PIP[@]}" "${packages[@]}" pytest ruff
touch .venv/.installed
echo "compat: environment ready in .venv ($(.venv/bin/compat --version))"
