#!/usr/bin/env bash
# The main job: a backward-compatible model update on Fashion-MNIST, end to end.
#   old model (classes 0-4)  ->  new model with BCT (classes 0-9, another backbone)
#                            ->  new model trained independently, for contrast
#   then the retrieval matrix old/old, new/old, new/new with the BCT verdict, and a Markdown report.
# COMPAT_QUICK=1 runs 2 epochs instead of 10; COMPAT_DEMO_OUT sets the output folder (runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${COMPAT_DEMO_OUT:-runs/demo}
epochs=10
[ "${COMPAT_QUICK:-0}" = 1 ] && epochs=2
old_backbone=${COMPAT_OLD_BACKBONE:-test_resnet}
new_backbone=${COMPAT_NEW_BACKBONE:-test_efficientnet}
compat=.venv/bin/compat
common=(--data fashion-mnist --embedding-dim 128 --image-size 32 --batch-size 128 --lr 0.1
        --epochs "$epochs" --device auto --overwrite)
start=$(date +%s)

echo "== 1/4 old model: $old_backbone on classes 0-4"
$compat train baseline "${common[@]}" --backbone "$old_backbone" --classes 0-4 --seed 1 --out "$out/old"
echo "== 2/4 new model with BCT: $new_backbone on classes 0-9, influence loss through the old classifier"
$compat train bct "${common[@]}" --backbone "$new_backbone" --seed 2 --old "$out/old" --out "$out/new-bct"
echo "== 3/4 new model trained independently: $new_backbone on classes 0-9"
$compat train baseline "${common[@]}" --backbone "$new_backbone" --seed 2 --out "$out/new-independent"
echo "== 4/4 retrieval matrix on the 10,000 test images (leave-one-out, cosine)"
$compat eval matrix "$out/old" "$out/new-bct" "$out/new-independent" --data fashion-mnist --split test \
    --json "$out/matrix.json"
.venv/bin/python scripts/demo_report.py "$out/matrix.json" "$out/report.md" "$(( $(date +%s) - start ))"
echo "report: $out/report.md"
