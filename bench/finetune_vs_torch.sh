#!/usr/bin/env bash
# One fine-tuning step of the ViT-Tiny classifier, vitdet next to timm, on this machine:
#   bench/finetune_vs_torch.sh [BATCH=32] [ITERS=5] [PYTHON=~/.venvs/fx/bin/python]
# Runs `vitdet bench finetune` and bench/bench_finetune.py with the same
# threads (all cores), ROUNDS times in turn (default 3), and prints each
# round's speed and memory ratios and their medians. Needs torch and timm.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
batch=${1:-32}
iters=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench finetune --batch "$batch" --iters "$iters")
    theirs=$("$python" bench/bench_finetune.py --batch "$batch" --iters "$iters" --threads "$threads")
    echo "round $round"
    echo "vitdet:  $ours"
    echo "pytorch: $theirs"
    results+=("$ours" "$theirs")
done
"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(s) for s in sys.argv[1:]]
pairs = [(runs[i], runs[i + 1]) for i in range(0, len(runs), 2)]
speed = [o["train_img_s"] / t["train_img_s"] for o, t in pairs]
mem = [o["peak_rss_mb"] / t["peak_rss_mb"] for o, t in pairs]
for i, ((o, t), s, m) in enumerate(zip(pairs, speed, mem), 1):
    print(f"round {i}: vitdet {o['train_img_s']:.2f} img/s {o['peak_rss_mb']:.0f} MB, "
          f"pytorch {t['train_img_s']:.2f} img/s {t['peak_rss_mb']:.0f} MB: speed {s:.2f}x, memory {m:.2f}x")
print(f"median ratio vitdet / pytorch: speed {statistics.median(speed):.2f}x, peak memory {statistics.median(mem):.2f}x")
PY
