#!/usr/bin/env bash
# The paper's comparison in miniature, on the built-in synthetic shapes set:
# MAE pre-training, then fine-tuning from scratch and from the MAE encoder,
# a linear probe, and the layer-reservation curve (--keep-blocks):
#   bench/shapes_transfer.sh [OUT=runs/shapes_transfer] [KEEP="3 6 9"]
# Every downstream run reads the images the MAE run generated (OUT/mae/data)
# with finetune_shapes_tiny's recipe, and prints its held-out top-1; the
# table at the end collects them. A run that exists already is skipped, so
# an interrupted script continues where it stopped.
#   SEEDS="1 2"  also fine-tunes from scratch and from the MAE encoder with
#                these train.seed values (initialisation and augmentation;
#                the images stay the same), as OUT/{scratch,mae_finetune}_sN.
#   VITDET_BIN=path/to/vitdet  skips the build and uses that binary.
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-runs/shapes_transfer}
keep=${2:-3 6 9}
mkdir -p "$out"
data=$out/mae/data
encoder=$out/mae/model.safetensors

run() { # NAME ARGS...: one command into OUT/NAME unless it finished before
    local name=$1
    shift
    if [ -f "$out/$name/model.safetensors" ]; then
        echo "$name: done before"
    else
        "$bin" "$@" --out "$out/$name"
    fi
}

run mae pretrain --method mae --config configs/pretrain_mae_shapes_tiny.toml
ft=(finetune --config configs/finetune_shapes_tiny.toml --data "$data")
run scratch "${ft[@]}" --backbone scratch
run mae_finetune "${ft[@]}" --backbone "$encoder"
run mae_probe "${ft[@]}" --backbone "$encoder" --linear-probe
run scratch_probe "${ft[@]}" --backbone scratch --linear-probe
for k in $keep; do
    run "mae_keep$k" "${ft[@]}" --backbone "$encoder" --keep-blocks "$k"
done
for seed in ${SEEDS:-}; do
    recipe=$out/finetune_shapes_tiny_seed$seed.toml
    sed "s/^seed = 0/seed = $seed/" configs/finetune_shapes_tiny.toml > "$recipe"
    seeded=(finetune --config "$recipe" --data "$data")
    run "scratch_s$seed" "${seeded[@]}" --backbone scratch
    run "mae_finetune_s$seed" "${seeded[@]}" --backbone "$encoder"
done

echo
echo "| run | top-1 (%) final | best |"
echo "|---|---|---|"
for dir in "$out"/*/; do
    [ -f "$dir/metrics.jsonl" ] || continue
    name=$(basename "$dir")
    [ "$name" = mae ] && continue
    grep -h '"top1"' "$dir/metrics.jsonl" | python3 -c '
import json, sys
rows = [json.loads(l)["top1"] for l in sys.stdin]
print(f"| {sys.argv[1]} | {rows[-1]:.1f} | {max(rows):.1f} |")' "$name"
done
