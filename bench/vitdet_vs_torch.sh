#!/usr/bin/env bash
# The CPU demo detector's speed (vitdet bench vitdet), vitdet next to the same
# model in PyTorch + torchvision (bench/torch_vitdet.py), in one run:
#   bench/vitdet_vs_torch.sh [ITERS=10] [CLASSES=5] [PYTHON=~/.venvs/fx/bin/python]
# Needs a Python with torch, torchvision and timm. Prints every JSON line, each
# round's ratios (vitdet images/s over PyTorch's: above 1, vitdet is faster)
# and their medians.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 3)       runs vitdet and PyTorch in turn N times, so both
#                              see the same mix of load on a shared machine.
#   OBJECTS=N (default 3)      random objects an image (32: a trained model's
#                              mask-head load late in the demo's training).
set -euo pipefail
iters=${1:-10}
classes=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
objects=${OBJECTS:-3}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench vitdet --batch 4 --iters "$iters" --classes "$classes" --objects "$objects")
    echo "vitdet:  $ours"
    theirs=$("$python" bench/torch_vitdet.py --batch 4 --iters "$iters" --classes "$classes" --objects "$objects" --threads "$threads")
    echo "pytorch: $theirs"
    results+=("$ours" "$theirs")
done
"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(s) for s in sys.argv[1:]]
rounds = [runs[i:i + 2] for i in range(0, len(runs), 2)]
ratios = {k: [r[0][k] / r[1][k] for r in rounds] for k in ("train_img_s", "infer_img_s")}
for i, r in enumerate(rounds):
    print(f"round {i + 1}: training {r[0]['train_img_s']:.2f} / {r[1]['train_img_s']:.2f} img/s ({ratios['train_img_s'][i]:.3f}x), "
          f"inference {r[0]['infer_img_s']:.2f} / {r[1]['infer_img_s']:.2f} img/s ({ratios['infer_img_s'][i]:.3f}x)")
print(f"median vitdet / PyTorch: training {statistics.median(ratios['train_img_s']):.3f}x, "
      f"inference {statistics.median(ratios['infer_img_s']):.3f}x")
PY
