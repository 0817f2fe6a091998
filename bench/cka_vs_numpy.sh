#!/usr/bin/env bash
# The CKA estimator (`vitdet bench cka`) beside the same estimator in NumPy and
# PyTorch (bench/cka_numpy.py) on one features file: ROUNDS (default 3)
# interleaved rounds, each side's median seconds and the checksum CKA(first,
# last layer), which must agree. Then, unless SKIP_E2E=1, the end-to-end
# `vitdet analyze cka` on 1,024 synthetic images at 224 px (two random
# timm ViT-Tiny checkpoints, batch 128), timed once.
#
#   PYTHON=~/.venvs/fx/bin/python bench/cka_vs_numpy.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python=${PYTHON:-python3}
dir=${BENCH_DIR:-/tmp/vitdet-bench-cka}
mkdir -p "$dir"
features=$dir/features.safetensors
[ -f "$features" ] || "$python" bench/cka_numpy.py --write "$features" --images "${IMAGES:-256}" --layers "${LAYERS:-7}"
ours=() numpy=() torch=()
for round in $(seq "${ROUNDS:-3}"); do
    echo "round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    o=$(RAYON_NUM_THREADS=$threads "$bin" bench cka --features "$features" --batch 128); echo "vitdet: $o"; ours+=("$o")
    n=$("$python" bench/cka_numpy.py --time "$features" --impl numpy --batch 128); echo "numpy:  $n"; numpy+=("$n")
    t=$("$python" bench/cka_numpy.py --time "$features" --impl torch --batch 128); echo "torch:  $t"; torch+=("$t")
done
"$python" - "${#ours[@]}" "${ours[@]}" "${numpy[@]}" "${torch[@]}" <<'PY'
import json, statistics, sys
k = int(sys.argv[1]); rest = [json.loads(s) for s in sys.argv[2:]]
ours, numpy, torch = rest[:k], rest[k:2 * k], rest[2 * k:]
med = lambda runs, key: statistics.median(r[key] for r in runs)
o, n, t = med(ours, "median_seconds"), med(numpy, "seconds"), med(torch, "seconds")
print(f"median seconds: vitdet {o:.2f}, numpy {n:.2f} ({n / o:.2f}x vitdet's time), torch {t:.2f} ({t / o:.2f}x)")
print("checksum CKA(first, last):", ours[0]["cka_first_last"], numpy[0]["cka_first_last"], torch[0]["cka_first_last"])
PY
if [ "${SKIP_E2E:-0}" != 1 ]; then
    [ -f "$dir/vit_tiny_seed1.safetensors" ] || "$python" bench/cka_numpy.py --write-vit "$dir"
    start=$(date +%s.%N)
    RAYON_NUM_THREADS=$threads "$bin" analyze cka --arch tiny3 --a "$dir/vit_tiny_seed0.safetensors" --b "$dir/vit_tiny_seed1.safetensors" \
        --max-images 1024 --batch 128 --out "$dir/analyze_cka"
    end=$(date +%s.%N)
    "$python" -c "print(f'vitdet analyze cka, 1024 images at 224 px, 2 checkpoints: {($end - $start) / 60:.2f} min')"
fi
