#!/usr/bin/env bash
# The main job: a backward-compatible model update on Fashion-MNIST, end to end.
#   old model (classes 0-4)  ->  new model with BCT (classes 0-9, another backbone)
#                            ->  new model trained independently (the update gain's reference)
#   then the retrieval matrix old/old, new/old, new/new with the BCT verdict, and a Markdown report that
#   puts this run next to the committed multi-seed study of the same protocol (studies/results/).
# The protocol is the study's seed pair (old seed 1, new seed 2): train on the official train split less
# a stratified 10% validation holdout (`compat data split --validation 0.1 --seed 0`), report on test.
# COMPAT_QUICK=1 runs 2 epochs instead of 10 (a smoke run: not comparable with the study);
# COMPAT_DEMO_OUT sets the output folder (runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${COMPAT_DEMO_OUT:-runs/demo}
epochs=10
[ "${COMPAT_QUICK:-0}" = 1 ] && epochs=2
old_backbone=${COMPAT_OLD_BACKBONE:-test_resnet}
new_backbone=${COMPAT_NEW_BACKBONE:-test_efficientnet}
study=studies/results/fashion-mnist-5to10.test.json
study_method=bct-s4   # the study entry that `compat train bct` with its defaults reproduces
compat=.venv/bin/compat
mkdir -p "$out"
$compat data split fashion-mnist --validation 0.1 --seed 0 --out "$out/split.json"
# --val-split none: per-epoch validation would add about 3 s an epoch per model; the demo's verdict comes from
# the matrix on test, and its 15-minute budget on a 2-core CPU has no room for it
common=(--data fashion-mnist --split "@$out/split.json:train" --embedding-dim 128 --image-size 32
        --batch-size 128 --lr 0.1 --epochs "$epochs" --device auto --overwrite --val-split none)
start=$(date +%s)

echo "== 1/4 old model: $old_backbone on classes 0-4"
$compat train baseline "${common[@]}" --backbone "$old_backbone" --classes 0-4 --seed 1 --out "$out/old"
echo "== 2/4 new model with BCT: $new_backbone on classes 0-9, influence loss through the old classifier"
$compat train bct "${common[@]}" --backbone "$new_backbone" --seed 2 --old "$out/old" --out "$out/new-bct"
echo "== 3/4 new model trained independently: $new_backbone on classes 0-9 (the gain's reference)"
$compat train baseline "${common[@]}" --backbone "$new_backbone" --seed 2 --out "$out/new-independent"
echo "== 4/4 retrieval matrix on the 10,000 test images (leave-one-out, cosine)"
$compat eval matrix "$out/old" "$out/new-bct" "$out/new-independent" --reference "$out/new-independent" \
    --data fashion-mnist --split test --json "$out/matrix.json"
.venv/bin/python scripts/demo_report.py "$out/matrix.json" "$out/report.md" "$(( $(date +%s) - start ))" \
    --study "$study" --study-method "$study_method" --epochs "$epochs"
echo "report: $out/report.md"
