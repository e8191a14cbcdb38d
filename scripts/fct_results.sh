#!/usr/bin/env bash
# compat-fct's Fashion-MNIST table: FCT / FastFill on the demo's old (test_resnet, classes 0-4) and
# independent new (test_efficientnet, classes 0-9) models, with backfilling curves.
#   1. side-information model: baseline test_resnet on classes 0-9, another seed, few epochs
#   2. fct (no side info), fct --side-info, fastfill (no side info)
#   3. retrieval old/old, new/new, new/old, new/h(old); backfilling curves and their AUC
#   4. the Markdown table in $out/results.md (JSON of every measurement beside it)
# Needs the demo's runs: $FCT_OLD and $FCT_NEW (default runs/demo-v1/old and runs/demo-v1/new-independent,
# as `make demo` trains them into runs/demo); they are copied, never modified.
# FCT_EPOCHS (default 4) sets the transformation's epochs, FCT_OUT (runs/fct) the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
out=${FCT_OUT:-runs/fct}
epochs=${FCT_EPOCHS:-4}
src_old=${FCT_OLD:-runs/demo-v1/old}
src_new=${FCT_NEW:-runs/demo-v1/new-independent}
compat=.venv/bin/compat
data=(--data fashion-mnist --device auto)
start=$(date +%s)
mkdir -p "$out"
for pair in "old:$src_old" "new:$src_new"; do
    name=${pair%%:*}; src=${pair#*:}
    if [ ! -f "$out/$name/model.json" ]; then
        [ -f "$src/model.json" ] || { echo "missing $src: run 'make demo' (or set FCT_OLD / FCT_NEW)" >&2; exit 2; }
        cp -r "$src" "$out/$name"
    fi
done

echo "== 1/4 side-information model: test_resnet, classes 0-9, seed 3, 2 epochs"
[ -f "$out/side/model.json" ] || $compat train baseline "${data[@]}" --backbone test_resnet --embedding-dim 128 \
    --image-size 32 --batch-size 128 --lr 0.1 --epochs 2 --seed 3 --out "$out/side" --overwrite

echo "== 2/4 transformations ($epochs epochs each)"
fct=("${data[@]}" --old "$out/old" --new "$out/new" --image-size 32 --batch-size 256 --optimizer adamw --lr 1e-3
     --weight-decay 3.05e-5 --warmup-epochs 1 --epochs "$epochs" --seed 0 --overwrite)
[ -f "$out/fct/model.json" ] || $compat train fct "${fct[@]}" --out "$out/fct"
[ -f "$out/fct-side/model.json" ] || $compat train fct "${fct[@]}" --side-info "$out/side" --out "$out/fct-side"
[ -f "$out/fastfill/model.json" ] || $compat train fastfill "${fct[@]}" --out "$out/fastfill"

echo "== 3/4 retrieval on the 10,000 test images (leave-one-out, cosine)"
$compat eval matrix "$out/old" "$out/new" "${data[@]}" --json "$out/matrix.json" > /dev/null
for run in fct fct-side fastfill; do
    $compat eval retrieval --query "$out/new" --gallery "$out/$run" "${data[@]}" --json "$out/new-$run.json" > /dev/null
done
plot=()
for curve in "fct random" "fastfill random" "fastfill uncertainty" "fastfill distance"; do
    set -- $curve
    .venv/bin/python -c "import matplotlib" 2>/dev/null && plot=(--plot "$out/backfill-$1-$2.png")
    $compat eval backfill --query "$out/new" --transformed "$out/$1" --new "$out/new" --old "$out/old" --order "$2" \
        --steps 20 --seed 0 "${data[@]}" --json "$out/backfill-$1-$2.json" "${plot[@]}" > /dev/null
done

echo "== 4/4 table"
.venv/bin/python - "$out" "$(( $(date +%s) - start ))" <<'EOF'
import json
import sys
from pathlib import Path

out, seconds = Path(sys.argv[1]), int(sys.argv[2])
load = lambda name: json.loads((out / name).read_text())  # noqa: E731
matrix = {(r["query"].split("/")[-1], r["gallery"].split("/")[-1]): r for r in load("matrix.json")["results"]}
pct = lambda r: " | ".join(f"{100 * r[k]:.2f}" for k in ("top1", "top5", "mAP"))  # noqa: E731
lines = ["| case | side info | top-1 | top-5 | mAP |", "|---|---|---|---|---|",
         f"| old/old | - | {pct(matrix['old', 'old'])} |", f"| new/new | - | {pct(matrix['new', 'new'])} |",
         f"| new/old (independent, no transformation) | - | {pct(matrix['new', 'old'])} |"]
for run, side in (("fct", "no"), ("fct-side", "yes"), ("fastfill", "no")):
    lines.append(f"| new/h(old), {run.split('-')[0]} | {side} | {pct(load(f'new-{run}.json'))} |")
lines += ["", "| backfilling (21 points, 0-100%) | AUC mean top-1 | top-5 | mAP | AUC trapezoid top-1 | top-5 | mAP |",
          "|---|---|---|---|---|---|---|"]
for name in ("fct-random", "fastfill-random", "fastfill-uncertainty", "fastfill-distance"):
    auc = load(f"backfill-{name}.json")["auc"]
    lines.append(f"| {name.replace('-', ', ')} order | {pct(auc['mean'])} | {pct(auc['trapezoid'])} |")
lines.append(f"\n({seconds} s for this script on this machine)")
(out / "results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
