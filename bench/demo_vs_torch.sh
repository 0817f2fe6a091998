#!/usr/bin/env bash
# The demo's training on real data, vitdet next to the same detector in
# PyTorch (bench/torch_vitdet_train.py), same dataset, same recipe, in turn:
#   bench/demo_vs_torch.sh DATA [ITERS=600] [PYTHON=~/.venvs/fx/bin/python]
# DATA is a shapes dataset such as `vitdet demo` writes to OUT/shapes. Each
# side trains ITERS steps from scratch and evaluates the validation split;
# the script prints both result lines and the training images/s ratio
# (vitdet over PyTorch: above 1, vitdet is faster).
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 1)       runs the two in turn N times.
set -euo pipefail
data=$(realpath "$1")
iters=${2:-600}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-1}
source "$(dirname "$0")/common.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
    echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
    rm -rf "$out/run"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" train --config vitdet_tiny_shapes --data "$data" --out "$out/run" --max-iter "$iters" 2>/dev/null \
        | grep -E '^training:|IoU=0.50 ' | tr '\n' ' ')
    echo "vitdet:  $ours"
    theirs=$(cd bench && "$python" torch_vitdet_train.py "$data" --iters "$iters" --threads "$threads" 2>/dev/null | tail -1)
    echo "pytorch: $theirs"
    "$python" - "$ours" "$theirs" <<'PY'
import json, re, sys
ours, theirs = sys.argv[1], json.loads(sys.argv[2])
img_s = float(re.search(r"training: ([0-9.]+) images/s", ours).group(1))
ap50 = [float(v) for v in re.findall(r"IoU=0.50 .*?= ([0-9.]+)", ours)]
print(f"training {img_s:.2f} / {theirs['train_img_s']:.2f} img/s ({img_s / theirs['train_img_s']:.3f}x); "
      f"bbox AP50 {ap50[0]:.3f} / {theirs['bbox_AP50']:.3f}, segm AP50 {ap50[1]:.3f} / {theirs['segm_AP50']:.3f}")
PY
done
