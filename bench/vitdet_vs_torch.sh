#!/usr/bin/env bash
# A recipe's detector speed (vitdet bench vitdet; by default the CPU demo's),
# vitdet next to the same model in PyTorch + torchvision
# (bench/torch_vitdet.py), in one run:
#   bench/vitdet_vs_torch.sh [ITERS=10] [CLASSES=5] [PYTHON=~/.venvs/fx/bin/python]
# Needs a Python with torch, torchvision and timm. Prints every JSON line, each
# round's ratios (vitdet images/s over PyTorch's: above 1, vitdet is faster)
# and their medians.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 3)       runs vitdet and PyTorch in turn N times, so both
#                              see the same mix of load on a shared machine.
#   OBJECTS=N (default 3)      random objects an image (32: a trained model's
#                              mask-head load late in the demo's training).
#   RECIPE=paper               the paper's model at 640 px (vitdet_tiny_coco)
#                              instead of the demo's; BATCH=N (default 4) images
#                              a step, e.g. RECIPE=paper BATCH=2 ... 2 80.
set -euo pipefail
iters=${1:-10}
classes=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
objects=${OBJECTS:-3}
recipe=${RECIPE:-demo}
batch=${BATCH:-4}
case "$recipe" in
    demo) config=vitdet_tiny_shapes ;;
    paper) config=vitdet_tiny_coco ;;
    *) echo "RECIPE must be demo or paper, not '$recipe'" >&2; exit 2 ;;
esac
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench vitdet --config "$config" --batch "$batch" --iters "$iters" --classes "$classes" --objects "$objects")
    echo "vitdet:  $ours"
    theirs=$("$python" bench/torch_vitdet.py --recipe "$recipe" --batch "$batch" --iters "$iters" --classes "$classes" --objects "$objects" --threads "$threads")
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
