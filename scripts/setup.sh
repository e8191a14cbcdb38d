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
# The plot, index and export extras too: the tests draw the plots, build faiss indexes and check ONNX exports
# instead of skipping them.
packages=(-e "core[plot,index,export]" -e cli)
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] || continue
    if grep -q '^plot *=' "$plugin/pyproject.toml"; then
        packages+=(-e "${plugin%/}[plot]")
    else
        packages+=(-e "$plugin")
    fi
done
"${PIP[@]}" "${packages[@]}" pytest ruff
touch .venv/.installed
echo "compat: environment ready in .venv ($(.venv/bin/compat --version))"
