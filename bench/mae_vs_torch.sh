#!/usr/bin/env bash
# One MAE-Tiny training step of the released recipe, vitdet next to MAE-Lite's
# models_mae (bench/bench_mae.py), on this machine:
#   ROUNDS=3 bench/mae_vs_torch.sh [BATCH=64] [ITERS=3] [INPUT_SIZE=224] [PYTHON=~/.venvs/fx/bin/python]
# Runs `vitdet bench mae` and bench/bench_mae.py with the same threads (all
# cores), ROUNDS times in turn (default 3), prints each round's JSON lines and
# load average, and each round's speed and memory ratios and their medians.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
batch=${1:-64}
iters=${2:-3}
size=${3:-224}
python=${4:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    echo "round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench mae --batch "$batch" --iters "$iters" --input-size "$size")
    echo "vitdet:  $ours"
    theirs=$("$python" bench/bench_mae.py --batch "$batch" --iters "$iters" --input-size "$size" --threads "$threads")
    echo "pytorch: $theirs"
    results+=("$ours" "$theirs")
done
echo "after the rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$python" bench/ratios.py "${results[@]}"
