#!/usr/bin/env bash
# The main job: an old model, a new model, and how compatible they are, on Fashion-MNIST.
#   COMPAT_QUICK=1  fewer epochs (a few minutes instead of ~10)
#   COMPAT_DEMO_OUT folder for the runs and the report (default runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${COMPAT_DEMO_OUT:-runs/demo}
epochs=10
[ "${COMPAT_QUICK:-0}" = 1 ] && epochs=2
compat=.venv/bin/compat
common=(--data fashion-mnist --embedding-dim 128 --image-size 32 --batch-size 128 --lr 0.1
        --epochs "$epochs" --device auto --overwrite)

echo "== 1/3 old model: test_resnet on classes 0-4 (seed 1)"
$compat train baseline "${common[@]}" --backbone test_resnet --classes 0-4 --seed 1 --out "$out/old"
echo "== 2/3 new model, trained independently: test_resnet on classes 0-9 (seed 2)"
$compat train baseline "${common[@]}" --backbone test_resnet --seed 2 --out "$out/new-independent"
echo "== 3/3 compatibility matrix on the 10,000 test images (leave-one-out, cosine)"
$compat eval matrix "$out/old" "$out/new-independent" --data fashion-mnist --split test \
    --json "$out/matrix.json"
.venv/bin/python scripts/demo_report.py "$out/matrix.json" "$out/report.md"
echo "report: $out/report.md"
